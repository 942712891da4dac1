"""Scheduled-scan sources: throughput (MB/s) and peak memory.

    .venv/bin/python benchmarks/scan_sources.py [--mb 200] [--commits 5000]

1. a log directory of ``--mb`` MB (20 files, realistic lines, one AWS key per ~256 KiB) scanned by
   a ``files`` job — first run (everything) and a second run after appending 1 MB (incremental);
2. a git repository of ``--commits`` commits (built with ``git fast-import``; each commit adds a
   few lines to one of 50 files, every 100th adds an AWS key) scanned by a ``git`` job.

Both go through the real runner (SQLite store, findings and state committed per checkpoint).
Peak memory: the process's max RSS before and after each scan (``ru_maxrss``), so the figure is
what the scan added on top of the compiled scanner.
"""

from __future__ import annotations

import argparse
import random
import resource
import secrets
import string
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from broker.audit import AuditLog, LocalAuditKey
from broker.netpolicy import OutboundPolicy
from broker.pathpolicy import ScanRoots
from broker.services.findings import FindingsService, NoManagedSecrets
from broker.services.source_guard import SourceGuard
from broker.store.db import make_engine, migrate
from broker.store.repo import Store
from broker.store.scan_jobs import ScanStore
from scanners.jobs.runner import ScanRunner, SourceEnv
from scanners.jobs.spec import ScanJobSpec
from scanners.known import KnownSecretIndex

KEY = b"b" * 32
LEVELS = ["INFO", "DEBUG", "WARN", "ERROR"]


def aws_key(rng: random.Random) -> str:
    return "AKIA" + "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16))


def log_line(rng: random.Random, i: int) -> str:
    words = " ".join(
        "".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 9))) for _ in range(rng.randint(6, 14))
    )
    return (
        f"2026-11-24T12:{i % 60:02d}:{i % 60:02d}.{i % 1000:03d}Z {rng.choice(LEVELS)} agent-{i % 17} "
        f"task=tsk_{i:08x} req={rng.getrandbits(48):012x} {words} latency_ms={rng.randint(1, 900)}\n"
    )


def make_logs(root: Path, mb: int, rng: random.Random) -> int:
    root.mkdir(parents=True)
    block_lines = [log_line(rng, i) for i in range(4000)]
    block = "".join(block_lines)
    per_file = mb * (1 << 20) // 20
    planted = 0
    for f in range(20):
        with (root / f"agent-{f:02d}.log").open("w") as fh:
            written = 0
            while written < per_file:
                chunk = block[: min(len(block), per_file - written)]
                cut = chunk.rfind("\n") + 1 or len(chunk)
                fh.write(chunk[:cut])
                fh.write(f"DEBUG boto3 using aws_access_key_id={aws_key(rng)}\n")
                planted += 1
                written += cut + 60
    return planted


def make_repo(root: Path, commits: int, rng: random.Random) -> int:
    """Stream a history into ``git fast-import`` (nothing accumulates in this process)."""
    root.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(root)], check=True)
    proc = subprocess.Popen(["git", "fast-import", "--quiet"], cwd=root, stdin=subprocess.PIPE)
    assert proc.stdin is not None
    contents: dict[int, list[str]] = {}
    planted = 0
    for c in range(1, commits + 1):
        n = c % 50
        lines = contents.setdefault(n, [])
        lines.extend(log_line(rng, c * 10 + k).replace("Z ", "Z cfg ", 1) for k in range(rng.randint(2, 6)))
        if c % 100 == 0:
            lines.append(f"aws_access_key_id = {aws_key(rng)}\n")
            planted += 1
        data = "".join(lines).encode()
        msg = f"commit {c}\n".encode()
        proc.stdin.write(
            b"commit refs/heads/main\n"
            + f"mark :{c}\n".encode()
            + f"committer bench <b@example.test> {1700000000 + c} +0000\n".encode()
            + f"data {len(msg)}\n".encode()
            + msg
            + (f"from :{c - 1}\n".encode() if c > 1 else b"")
            + f"M 100644 inline src/file{n:02d}.cfg\n".encode()
            + f"data {len(data)}\n".encode()
            + data
            + b"\n"
        )
    proc.stdin.close()
    if proc.wait() != 0:
        raise SystemExit("git fast-import failed")
    subprocess.run(["git", "checkout", "-q", "main"], cwd=root, check=True)
    return planted


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def runner(tmp: Path) -> tuple[ScanRunner, ScanStore]:
    engine = make_engine(f"sqlite:///{tmp / 'bench.db'}")
    migrate(engine)
    store = Store(engine)
    audit = AuditLog(store, LocalAuditKey(secrets.token_bytes(32)))
    findings = FindingsService(store, audit, lambda *_: {}, NoManagedSecrets(), alert=None)
    scans = ScanStore(store)
    index = KnownSecretIndex(KEY)
    # the planted logs and repo are the scan root; the scan cache is the data dir (never scanned)
    guard = SourceGuard(ScanRoots.build([tmp], data_dir=tmp / "scan-cache"), OutboundPolicy())
    return ScanRunner(
        scans,
        findings,
        KEY,
        SourceEnv(cache_dir=tmp / "scan-cache", policy=guard),
        holder="bench",
        grants_index=lambda: index,
    ), scans


def timed(r: ScanRunner, name: str) -> tuple[dict[str, Any], float, float]:
    before = rss_mb()
    t0 = time.perf_counter()
    result = r.run(name)
    elapsed = time.perf_counter() - t0
    assert isinstance(result, dict) and result["status"] == "ok", result
    return result, elapsed, rss_mb() - before


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--commits", type=int, default=5000)
    args = ap.parse_args()
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        r, scans = runner(tmp)
        r.scanner.scan("warm up AKIAABCDEFGHIJKLMNOP\n")
        print(f"baseline max RSS (scanner compiled): {rss_mb():.0f} MB")

        t0 = time.perf_counter()
        planted = make_logs(tmp / "logs", args.mb, rng)
        size = sum(f.stat().st_size for f in (tmp / "logs").iterdir())
        print(
            f"\nlog directory: {size / 1e6:.0f} MB in 20 files, {planted} keys planted "
            f"(generated in {time.perf_counter() - t0:.1f} s)"
        )
        scans.put_job(
            "logs",
            ScanJobSpec.load(
                {"source": {"kind": "files", "path": str(tmp / "logs")}, "schedule": {"every_seconds": 300}}
            ).dump(),
        )
        result, elapsed, grown = timed(r, "logs")
        print(
            f"  first run:  {result['bytes'] / 1e6:.0f} MB in {elapsed:.2f} s = "
            f"{result['bytes'] / 1e6 / elapsed:.1f} MB/s; findings {result['findings']}; "
            f"max RSS +{grown:.0f} MB"
        )
        with (tmp / "logs" / "agent-00.log").open("a") as fh:
            fh.write("".join(log_line(rng, i) for i in range(6000)))
        result, elapsed, grown = timed(r, "logs")
        print(f"  after appending {result['bytes'] / 1e6:.2f} MB: {elapsed * 1000:.0f} ms (only the new bytes read)")

        t0 = time.perf_counter()
        planted = make_repo(tmp / "repo", args.commits, rng)
        print(
            f"\ngit history: {args.commits} commits, {planted} keys planted (built in {time.perf_counter() - t0:.1f} s)"
        )
        scans.put_job(
            "repo",
            ScanJobSpec.load(
                {"source": {"kind": "git", "repo": str(tmp / "repo")}, "schedule": {"every_seconds": 300}}
            ).dump(),
        )
        result, elapsed, grown = timed(r, "repo")
        print(
            f"  first run:  {args.commits} commits, {result['bytes'] / 1e6:.1f} MB added lines "
            f"in {elapsed:.2f} s"
            f" = {args.commits / elapsed:.0f} commits/s, {result['bytes'] / 1e6 / elapsed:.1f} MB/s; "
            f"findings {result['findings']}; max RSS +{grown:.0f} MB"
        )
        result, elapsed, _ = timed(r, "repo")
        print(f"  second run (no new commits): {elapsed * 1000:.0f} ms")
        print(f"\npeak max RSS of the process: {rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
