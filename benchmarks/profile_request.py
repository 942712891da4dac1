"""Where the milliseconds of one credential request go: py-spy against a real `nhi-broker up`.

A load thread drives one request at a time (a single agent, like `issue_latency.py`) while py-spy
samples the server process twice: once for the flame graph (SVG, on-CPU samples) and once in raw
form with idle samples included, which this script folds into stages (HTTP, JWT, replay guard,
store, Cedar, chain detectors, audit, backend call, commit) and prints as milliseconds per request
(share of the wall-clock samples of request work times the mean request time measured meanwhile).

    .venv/bin/python benchmarks/profile_request.py --tier monitor --out docs/perf/before-monitor.svg
    .venv/bin/python benchmarks/profile_request.py --tier inline --out docs/perf/before-inline.svg
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "benchmarks")]

from _harness import BIN, broker_up  # noqa: E402
from issue_latency import BrokerCaller  # noqa: E402

from broker.identity import DevIssuer  # noqa: E402

TIERS = {  # tier: (action, resource, steps per task)
    "monitor": ("db.read", "demo-data", 10),
    "inline": ("secrets.read", "demo-kv", 1),
}

# (stage, markers): the first stage whose marker appears anywhere in a stack owns the sample, so a
# commit inside the audit append counts as commit and the SQL an adapter runs counts as its stage
STAGES: list[tuple[str, tuple[str, ...]]] = [
    ("commit", ("commit (sqlalchemy", "_commit_impl", "do_commit")),
    ("replay guard", ("broker/identity/replay.py",)),
    ("audit", ("broker/audit/",)),
    ("chain detectors", ("broker/chain/",)),
    ("Cedar", ("cedarpy", "broker/policy/")),
    ("risk model", ("broker/risk/", "broker/decisions.py")),
    ("backend call", ("broker/backends/", "hvac/")),
    ("JWT + identity", ("broker/identity/", "jwt/", "cryptography/", "broker/services/authn.py")),
    ("store", ("broker/store/", "sqlalchemy/", "sqlite3", "psycopg")),
    ("thread hops (anyio worker threads)", ("run_sync_in_worker_thread", "CapacityLimiter", "Condition.notify")),
    ("live scanner (issued-hook)", ("broker/services/scanning.py", "scanners/")),
    ("broker other", ("broker/",)),
    ("HTTP (uvicorn/starlette/fastapi)", ("uvicorn/", "starlette/", "fastapi/", "h11/", "httptools", "pydantic")),
]
# parked threads (the event loop in epoll, idle pool workers) and the background workers are not
# request work
# (an idle ThreadPoolExecutor worker, e.g. the chain's post-issuance pool, shows its blocking
# queue get as the `_worker` frame itself)
PARKED = (
    "Runner.run (",
    "WorkerThread.run (",
    "Condition.wait (",
    "select (selectors.py",
    "Queue.get (",
    "_worker (concurrent/futures/thread.py",
)
BACKGROUND = ("PeriodicWorker._loop", "apscheduler/", "policy/holder.py")


def stage_of(stack: str) -> str | None:
    """The stage a collapsed stack belongs to; None when it is not request work."""
    leaf = stack.rsplit(";", 1)[-1]
    if any(m in leaf for m in PARKED) or any(m in stack for m in BACKGROUND):
        return None
    for stage, markers in STAGES:
        if any(m in stack for m in markers):
            return stage
    return "other"


def fold(raw: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        stage = stage_of(stack)
        if stage is not None and n.isdigit():
            counts[stage] += int(n)
    return counts


def spy(pid: int, out: Path, seconds: int, fmt: str, idle: bool) -> subprocess.Popen[bytes]:
    args = [str(BIN / "py-spy"), "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "250"]
    args += ["--format", fmt, "--output", str(out), "--nonblocking"]
    if idle:
        args.append("--idle")
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def drive(caller: BrokerCaller, seconds: int) -> tuple[int, float]:
    """Sequential requests for `seconds`; returns (count, mean seconds)."""
    caller.samples.clear()
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        caller()
    return len(caller.samples), sum(caller.samples) / max(1, len(caller.samples))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tier", choices=sorted(TIERS), default="monitor")
    ap.add_argument("--out", type=Path, required=True, help="the SVG flame graph")
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--cpu", action="store_true", help="the table from on-CPU samples only (no idle)")
    args = ap.parse_args()
    action, resource, steps = TIERS[args.tier]
    with broker_up() as up:
        pid = int(up["pid"])
        issuer = DevIssuer.load(Path(up["data_dir"]))
        n = 4000
        caller = BrokerCaller(up, issuer, action, resource, "demo", n, steps_per_task=steps)
        for _ in range(20):
            caller()  # warm-up
        args.out.parent.mkdir(parents=True, exist_ok=True)
        result: dict[str, Any] = {}
        for fmt, idle, target in (("flamegraph", False, args.out), ("raw", not args.cpu, None)):
            raw = target or Path(tempfile.mkstemp(suffix=".txt", dir="/tmp")[1])
            proc = spy(pid, raw, args.seconds, fmt, idle)
            loader = threading.Thread(target=lambda: result.update(load=drive(caller, args.seconds)))
            loader.start()
            loader.join()
            _, err = proc.communicate(timeout=120)
            if proc.returncode != 0:
                raise SystemExit(f"py-spy failed: {err.decode()[-400:]}")
            if target is None:
                result["raw"] = raw
        count, mean = result["load"]
        counts = fold(result["raw"])
        total = sum(counts.values())
    print(f"\n{args.tier} tier: {action} on {resource}; {count} requests, mean {mean * 1000:.2f} ms")
    print(f"flame graph: {args.out}")
    print("| stage | share | ms per request |")
    print("| --- | --- | --- |")
    for stage, k in counts.most_common():
        print(f"| {stage} | {100 * k / total:.1f} % | {mean * 1000 * k / total:.2f} |")


if __name__ == "__main__":
    main()
