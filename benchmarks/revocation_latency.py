"""Revocation latency: a task holding 1, 10 and 100 OpenBao grants escalates; how long from the
triggering request until every grant is verified dead at OpenBao?

Real everything: an OpenBao dev server, the broker over HTTP on loopback (SQLite store, demo seed,
default bundle, revocation worker running). Per run: open a task, take N grants (N-1 ``db.read``
on ``demo-data`` and one ``secrets.read`` on ``demo-secrets``), then send ``data.export`` on
``demo-data`` — the ``dangerous_sequence`` detector escalates inline. The clock starts before that
request is sent and stops when every grant has been checked dead at OpenBao: ``lookup-self`` with
each multi-use token (403 = dead), ``lookup-accessor`` for the single-use one (so the check does
not consume it). The checks are pipelined HTTP/1.1 requests over 8 keep-alive connections (a
Python thread pool adds ~1 ms per check and would measure itself), repeated until all fail.

    .venv/bin/python benchmarks/revocation_latency.py [--runs 30] [--sizes 1,10,100] [--openbao-floor]

``--openbao-floor`` also measures OpenBao alone in the same run: a parent token with N children
revoked with one ``revoke-accessor`` call (the call the broker makes), from the call to its
answer — the part of the figure that is OpenBao's own work.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from pipelined_checker import PipelinedChecker
from support.broker import start_broker

from broker.client import CredentialDenied
from broker.openbao_server import start_dev_server


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s) + 0.5) - 1))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--sizes", default="1,10,100")
    ap.add_argument("--openbao-floor", action="store_true")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        bao = start_dev_server(log_path=Path(tmp) / "bao.log")
        running = start_broker(Path(tmp) / "broker", bao)
        root = bao.root_token.reveal()
        checker = PipelinedChecker(bao.address, root)
        try:
            agent = running.agent()
            print(
                f"# revocation latency — OpenBao {bao.address} (dev server), broker {running.url}, "
                f"SQLite; {platform.processor() or platform.machine()}, python {platform.python_version()}"
            )
            print(f"# {args.runs} runs per size; latency = triggering request sent -> every grant verified dead")
            print(
                f"{'grants':>6} {'runs':>5} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8}"
                f" {'403 p50 ms':>11} {'verify p50 ms':>14}"
            )
            for n in sizes:
                total, response, verify = [], [], []
                for _ in range(args.runs):
                    task_id = agent.open_task("demo", f"bench {n}")["task_id"]
                    checks = [
                        ("token", agent.request_credential(task_id, "db.read", "demo-data").secret("token"))
                        for _ in range(n - 1)
                    ]
                    secret = agent.request_credential(task_id, "secrets.read", "demo-secrets")
                    checks.append(("accessor", secret.fields["accessor"]))
                    assert not any(checker.dead(checks)), "a grant was dead before escalation"
                    t0 = time.perf_counter()
                    try:
                        agent.request_credential(task_id, "data.export", "demo-data")
                        raise SystemExit("expected the chain to escalate")
                    except CredentialDenied as exc:
                        assert exc.code == "task_escalated", exc
                    t1 = time.perf_counter()
                    while not all(checker.dead(checks)):
                        pass
                    t2 = time.perf_counter()
                    total.append((t2 - t0) * 1000)
                    response.append((t1 - t0) * 1000)
                    verify.append((t2 - t1) * 1000)
                print(
                    f"{n:>6} {len(total):>5} {statistics.median(total):>8.1f} {pct(total, 95):>8.1f} "
                    f"{pct(total, 99):>8.1f} {max(total):>8.1f} {statistics.median(response):>11.1f} "
                    f"{statistics.median(verify):>14.1f}"
                )
            if args.openbao_floor:
                openbao_floor(bao.address, root, sizes, args.runs)
        finally:
            checker.close()
            running.stop()
            bao.stop()


def openbao_floor(address: str, root: str, sizes: list[int], runs: int) -> None:
    """OpenBao alone: revoke a parent token holding N children (one call), as the broker does."""
    import hvac

    admin = hvac.Client(url=address, token=root)
    print(f"{'children':>8} {'runs':>5} {'p50 ms':>8} {'p99 ms':>8}  (OpenBao alone: revoke-accessor of the parent)")
    for n in sizes:
        took = []
        for _ in range(runs):
            parent = admin.auth.token.create(policies=["root"], ttl="1h")["auth"]
            child_client = hvac.Client(url=address, token=parent["client_token"])
            for _ in range(n):
                child_client.auth.token.create(policies=["default"], ttl="30m")
            t0 = time.perf_counter()
            admin.auth.token.revoke_accessor(parent["accessor"])
            took.append((time.perf_counter() - t0) * 1000)
        print(f"{n:>8} {runs:>5} {statistics.median(took):>8.1f} {pct(took, 99):>8.1f}")


if __name__ == "__main__":
    main()
