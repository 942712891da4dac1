"""Two waits from issue 12's walk-through, measured against a real broker and OpenBao:

1. ``/readyz`` while OpenBao accepts connections and never answers (a black-hole proxy in front
   of it): wall time per probe against the readiness budget (default 2 s; the checks used to run
   one after the other, 3 x the 5 s client timeout).
2. The approval long-poll: from an approver's decision to the waiting agent's answer, when the
   decision is taken in the same process (in-process wake-up) and by another "replica" sharing
   the store (the waiter finds it by polling the store with backoff, at most 2 s apart).

    .venv/bin/python benchmarks/walkthrough_latency.py [--probes 5] [--polls 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from support.broker import start_broker

from broker.approvals.service import ApprovalService
from broker.openbao_server import start_dev_server
from broker.people.model import Caller, Role
from tests.chain.tcp_proxy import BlackholeProxy


def readyz(probes: int, base: Path) -> None:
    bao = start_dev_server(log_path=base / "bao-readyz.log")
    proxy = BlackholeProxy("127.0.0.1", int(bao.address.rsplit(":", 1)[1]))
    running = start_broker(base / "readyz", SimpleNamespace(address=proxy.address, root_token=bao.root_token))  # type: ignore[arg-type]
    try:
        with httpx.Client(base_url=running.url, timeout=60) as http:
            healthy = []
            for _ in range(probes):
                t = time.perf_counter()
                assert http.get("/readyz").status_code == 200
                healthy.append(time.perf_counter() - t)
            proxy.hold.set()
            hanging = []
            for _ in range(probes):
                t = time.perf_counter()
                assert http.get("/readyz").status_code == 503
                hanging.append(time.perf_counter() - t)
        budget = running.container.settings.readiness_budget_seconds
        print(f"/readyz healthy:        median {statistics.median(healthy) * 1000:.1f} ms over {probes} probes")
        print(
            f"/readyz OpenBao hangs:  median {statistics.median(hanging):.2f} s, max {max(hanging):.2f} s "
            f"(budget {budget:g} s, OpenBao client timeout {running.container.settings.openbao.timeout_seconds:g} s)"
        )
    finally:
        proxy.hold.clear()
        running.stop()
        proxy.close()
        bao.stop()


def long_poll(polls: int, base: Path) -> None:
    bao = start_dev_server(log_path=base / "bao-poll.log")
    running = start_broker(base / "poll", bao)
    c = running.container
    other_replica = ApprovalService(c.store, c.audit, ttl_seconds=600, parties=c.people.parties)
    # the approver is an authenticated person (docs/people.md), not a typed name
    c.people.put(
        "alice", display_name="", roles=[Role.APPROVER], identities=(), disabled=False, actor=Caller.system("bench")
    )
    token, _ = c.people.create_token("alice", ttl_seconds=3600, description="bench", actor=Caller.system("bench"))
    alice = c.people.authenticate(f"Bearer {token.reveal()}", source="bench")
    try:
        with httpx.Client(base_url=running.url, timeout=60) as http:

            def agent(method: str, path: str, body: dict | None = None) -> httpx.Response:
                return http.request(method, path, json=body, headers={"Authorization": f"Bearer {running.token()}"})

            for label, decide in (
                ("same process", lambda a: c.approvals.approve(a, alice, "ok")),
                ("other replica", lambda a: other_replica.approve(a, alice, "ok")),
            ):
                lat = []
                for _ in range(polls):
                    task = agent("POST", "/v1/tasks", {"profile": "demo", "purpose": "bench"}).json()["task_id"]
                    approval = agent(
                        "POST",
                        f"/v1/tasks/{task}/credentials",
                        {"action": "payments.charge", "resource": "prod-payments"},
                    ).json()["approval_id"]
                    answered: dict[str, float] = {}
                    before = c.approvals.signals.waiting()

                    def wait(task: str = task, approval: str = approval, answered: dict = answered) -> None:
                        agent("GET", f"/v1/tasks/{task}/approvals/{approval}?wait=30")
                        answered["at"] = time.perf_counter()

                    th = threading.Thread(target=wait)
                    th.start()
                    while c.approvals.signals.waiting() <= before:
                        time.sleep(0.005)
                    time.sleep(0.3)  # let the waiter settle into its backoff
                    decided = time.perf_counter()
                    decide(approval)
                    th.join()
                    lat.append(answered["at"] - decided)
                    agent("DELETE", f"/v1/tasks/{task}")
                print(
                    f"approval long-poll, decided in {label:13s}: decision → answer median "
                    f"{statistics.median(lat) * 1000:.0f} ms, max {max(lat) * 1000:.0f} ms over {polls}"
                )
    finally:
        running.stop()
        bao.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--probes", type=int, default=5)
    parser.add_argument("--polls", type=int, default=10)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="walk-bench-", dir="/tmp"))
    readyz(args.probes, base)
    long_poll(args.polls, base)


if __name__ == "__main__":
    main()
