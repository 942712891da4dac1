"""Shared benchmark helpers: start `nhi-broker up` as a real process, percentiles, tables."""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def broker_up(extra_args: list[str] | None = None, env: dict[str, str] | None = None) -> Iterator[dict[str, Any]]:
    """Run `nhi-broker up` in its own process (the real thing, its own GIL) and yield up.json."""
    data_dir = Path(tempfile.mkdtemp(prefix="nhi-bench-", dir="/tmp"))
    port = free_port()
    proc = subprocess.Popen(
        [
            str(BIN / "nhi-broker"),
            "up",
            "--data-dir",
            str(data_dir),
            "--port",
            str(port),
            "--log-format",
            "json",
            *(extra_args or []),
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(data_dir / "broker.log", "wb"),  # noqa: SIM115
        env={**os.environ, **(env or {})},
    )
    try:
        deadline = time.monotonic() + 60
        while not (data_dir / "up.json").exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nhi-broker up failed; see {data_dir}/broker.log")
            time.sleep(0.1)
        info = json.loads((data_dir / "up.json").read_text())
        info["data_dir"] = str(data_dir)
        yield info
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def summarize(samples_s: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in samples_s]
    return {
        "n": len(ms),
        "median_ms": statistics.median(ms),
        "p90_ms": pct(ms, 90),
        "p99_ms": pct(ms, 99),
        "mean_ms": statistics.fmean(ms),
    }


def timed(fn: Callable[[], Any], n: int, warmup: int = 20) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def print_table(title: str, rows: list[dict[str, Any]], columns: list[str]) -> None:
    print(f"\n{title}")
    widths = {c: max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    print("  ".join("-" * widths[c] for c in columns))
    for r in rows:
        print("  ".join(_fmt(r.get(c)).ljust(widths[c]) for c in columns))


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.2f}"
    return "" if v is None else str(v)


os.environ.setdefault("PYTHONUNBUFFERED", "1")
