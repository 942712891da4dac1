"""Post-issuance detection bound: a monitor-tier credential completes a dangerous sequence, is
issued without waiting for the chain, and the detectors run right after; how long from the issuing
response until every grant of the task is verified dead at OpenBao? (Bound: 50 ms.)

Real everything: an OpenBao dev server, the broker over HTTP on loopback (SQLite, demo seed, the
default bundle plus one sequence ``secrets.read`` → ``db.read``, so the monitor-tier ``db.read``
completes it; ``chain.yaml`` ``detection`` at its default: monitor checked after issuance). Per
run: open a task, take N-2 ``db.read`` grants and one ``secrets.read`` (inline, checked before
issuance); the clock starts at the response of a final ``db.read`` (issued, monitor, checked
after) and stops when every one of the N grants is dead at OpenBao (pipelined lookups,
benchmarks/pipelined_checker.py: the new grant is polled alone until it fails, then all N are
looked up, until all fail).

    PYTHONPATH=. .venv/bin/python benchmarks/post_issuance_latency.py [--runs 30] [--sizes 3,10,100]
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from pipelined_checker import PipelinedChecker
from support.broker import start_broker

from broker.openbao_server import start_dev_server
from policies import DEFAULT_BUNDLE


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s) + 0.5) - 1))]


def bundle(tmp: Path) -> Path:
    out = tmp / "bundle"
    shutil.copytree(DEFAULT_BUNDLE, out, ignore=shutil.ignore_patterns("tests", "__pycache__"))
    raw = yaml.safe_load((out / "chain.yaml").read_text())
    raw["detectors"]["dangerous_sequence"]["sequences"].append(
        {"name": "secret_then_read", "first": {"actions": ["secrets.read"]}, "then": {"actions": ["db.read"]}}
    )
    (out / "chain.yaml").write_text(yaml.safe_dump(raw))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--sizes", default="3,10,100")
    args = ap.parse_args()
    sizes = [max(3, int(s)) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        bao = start_dev_server(log_path=Path(tmp) / "bao.log")
        running = start_broker(Path(tmp) / "broker", bao, policy_dir=bundle(Path(tmp)))
        checker = PipelinedChecker(bao.address, bao.root_token.reveal())
        try:
            agent = running.agent()
            print(
                f"# post-issuance detection — OpenBao {bao.address} (dev server), broker {running.url}, "
                f"SQLite; {platform.processor() or platform.machine()}, python {platform.python_version()}"
            )
            print(f"# {args.runs} runs per size; latency = issuing response received -> every grant verified dead")
            print(f"{'grants':>6} {'runs':>5} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8}  bound 50 ms")
            for n in sizes:
                total = []
                for _ in range(args.runs):
                    task_id = agent.open_task("demo", f"bench {n}")["task_id"]
                    checks = [
                        ("token", agent.request_credential(task_id, "db.read", "demo-data").secret("token"))
                        for _ in range(n - 2)
                    ]
                    secret = agent.request_credential(task_id, "secrets.read", "demo-secrets")
                    checks.append(("accessor", secret.fields["accessor"]))
                    assert not any(checker.dead(checks)), "a grant was dead before the completing read"
                    late = agent.request_credential(task_id, "db.read", "demo-data")
                    t0 = time.perf_counter()
                    if not late.issued or late.decision.get("detection") != "post_issuance":
                        raise SystemExit(f"expected a post-issuance monitor grant, got {late.decision}")
                    last = ("token", late.secret("token"))
                    checks.append(last)
                    # poll the new grant alone (a full sweep of N lookups in a tight loop would take
                    # the CPU the revocation needs), then confirm every grant; repeat until all dead
                    while not (checker.dead([last])[0] and all(checker.dead(checks))):
                        pass
                    total.append((time.perf_counter() - t0) * 1000)
                within = sum(t <= 50 for t in total)
                print(
                    f"{n:>6} {len(total):>5} {statistics.median(total):>8.1f} {pct(total, 95):>8.1f} "
                    f"{pct(total, 99):>8.1f} {max(total):>8.1f}  {within}/{len(total)} within"
                )
        finally:
            checker.close()
            running.stop()
            bao.stop()


if __name__ == "__main__":
    main()
