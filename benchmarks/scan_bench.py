"""Secret-scanner benchmark: nhi-broker's engine vs detect-secrets vs Kingfisher, same input.

    .venv/bin/python benchmarks/scan_bench.py [--mb 2] [--seed 7]

Input: a generated prompt/log/code mix (scanners.synth_corpus) with a planted fake secret every
~4 KB. Reported per scanner: throughput (MB/s), p50/p99 latency for a 4 KB message, recall on the
planted secrets per format, and false positives per MB (finding lines holding no planted secret).
Matching is by line for all three (detect-secrets reports lines only).
Kingfisher runs as a process: its throughput excludes start-up (time on the corpus minus time on an
empty file) and its per-message latency includes start-up, which is what an inline caller would pay.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from scanners import Scanner
from scanners.synth_corpus import FORMATS, build

VENV_BIN = Path(sys.executable).parent


def line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def run_ours(text: str, path: Path) -> tuple[set[int], float, list[float]]:
    scanner = Scanner(key=os.urandom(32))
    scanner.scan(text[:10000])  # warm (scratch, regex caches)
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        found = scanner.scan(text)
        best = min(best, time.perf_counter() - t)
    lines = {f.line for f in found}
    lat = []
    rng = random.Random(1)
    for _ in range(2000):
        start = rng.randrange(0, len(text) - 4096)
        msg = text[start:start + 4096]
        t = time.perf_counter()
        scanner.scan_and_redact(msg)
        lat.append(time.perf_counter() - t)
    return lines, best, lat


def run_detect_secrets(text: str, path: Path) -> tuple[set[int], float, list[float]]:
    from detect_secrets import SecretsCollection
    from detect_secrets.settings import default_settings

    with default_settings():
        col = SecretsCollection()
        t = time.perf_counter()
        col.scan_file(str(path))
        elapsed = time.perf_counter() - t
        lines = {s.line_number for s in col[str(path)]}
        lat = []
        rng = random.Random(1)
        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / "msg.txt"
            for _ in range(20):
                start = rng.randrange(0, len(text) - 4096)
                p.write_text(text[start:start + 4096])
                c = SecretsCollection()
                t = time.perf_counter()
                c.scan_file(str(p))
                lat.append(time.perf_counter() - t)
    return lines, elapsed, lat


def _kingfisher(path: Path) -> tuple[list[dict], float]:
    cmd = [str(VENV_BIN / "kingfisher"), "scan", str(path), "--format", "json", "--no-validate",
           "--no-dedup"]
    t = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - t
    doc = json.loads(out.stdout.splitlines()[0]) if out.stdout.strip() else {"findings": []}
    return doc.get("findings", []), elapsed


def run_kingfisher(text: str, path: Path) -> tuple[set[int], float, list[float]]:
    with tempfile.TemporaryDirectory() as d:
        empty = Path(d) / "empty.txt"
        empty.write_text("\n")
        _kingfisher(empty)  # warm the compiled-rule cache
        _, t_empty = _kingfisher(empty)
        findings, t_full = _kingfisher(path)
        lat = []
        rng = random.Random(1)
        p = Path(d) / "msg.txt"
        for _ in range(5):
            start = rng.randrange(0, len(text) - 4096)
            p.write_text(text[start:start + 4096])
            _, t = _kingfisher(p)
            lat.append(t)
    lines = {int(f["finding"]["line"]) for f in findings}
    return lines, max(t_full - t_empty, 1e-6), lat


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    text, planted = build(random.Random(args.seed), int(args.mb * 1_000_000))
    mb = len(text.encode()) / 1_000_000
    planted_lines: dict[str, list[tuple[int, int]]] = defaultdict(list)
    covered: set[int] = set()
    for s, e, fmt in planted:
        a, b = line_of(text, s), line_of(text, e)
        planted_lines[fmt].append((a, b))
        covered.update(range(a, b + 1))
    print(f"input: {mb:.2f} MB, {len(planted)} planted secrets of {len(FORMATS)} formats", flush=True)
    results = {}
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "corpus.txt"
        path.write_text(text)
        for name, fn in (("nhi-broker", run_ours), ("detect-secrets", run_detect_secrets),
                         ("kingfisher", run_kingfisher)):
            t = time.perf_counter()
            results[name] = fn(text, path)
            print(f"  ran {name} in {time.perf_counter() - t:.1f} s", flush=True)
    names = list(results)
    print()
    print(f"{'scanner':<16}{'MB/s':>10}{'p50 4KB':>12}{'p99 4KB':>12}{'recall':>10}{'FP/MB':>9}")
    recall_by: dict[str, dict[str, float]] = {}
    for name in names:
        lines, elapsed, lat = results[name]
        per = {fmt: sum(1 for a, b in spans if any(x in lines for x in range(a, b + 1))) / len(spans)
               for fmt, spans in planted_lines.items()}
        recall_by[name] = per
        total = sum(sum(1 for a, b in spans if any(x in lines for x in range(a, b + 1)))
                    for spans in planted_lines.values()) / len(planted)
        fp = len(lines - covered) / mb
        q = statistics.quantiles(lat, n=100) if len(lat) >= 2 else [lat[0]] * 99
        print(f"{name:<16}{mb / elapsed:>10.2f}{statistics.median(lat) * 1000:>10.2f}ms"
              f"{q[98] * 1000:>10.2f}ms{total:>10.1%}{fp:>9.1f}")
    print()
    print(f"{'recall per format':<28}" + "".join(f"{n:>16}" for n in names))
    for fmt in FORMATS:
        print(f"{fmt:<28}" + "".join(f"{recall_by[n][fmt]:>16.0%}" for n in names))
    worse = [(fmt, other) for fmt in FORMATS for other in names[1:]
             if recall_by["nhi-broker"][fmt] < recall_by[other][fmt]]
    print()
    print("formats where nhi-broker recall < another scanner:", worse or "none")


if __name__ == "__main__":
    main()
