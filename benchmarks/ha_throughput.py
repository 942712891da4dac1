"""Credential throughput through HAProxy with 1, 2 and 3 replicas, at 8 and 32 concurrent agents,
side by side with raw OpenBao token create against the same raft cluster, in the same run.

Each agent opens a task and asks for `db.read` on `demo-data` (an OpenBao child token, low tier)
in a loop, a fresh identity JWT per request (the replay guard accepts each once). Replica counts
are changed by putting servers in HAProxy maintenance (stats socket), so everything else stays
the same. Raw: `POST /v1/auth/token/create` (ttl 60s) through the same OpenBao load balancer.

    .venv/bin/python benchmarks/ha_throughput.py [--seconds 10] [--database-url URL]
"""

from __future__ import annotations

import argparse
import json
import socket
import threading
import time
from typing import Any

import httpx
from _ha import AgentClient, ha_stack, ms

from broker.topology.stack import HAStack


def set_replicas(stack: HAStack, n: int) -> None:
    assert stack.haproxy is not None
    for i, _ in enumerate(stack.replicas):
        for backend in ("replicas", "replicas_live"):
            state = "ready" if i < n else "maint"
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(str(stack.haproxy.stats_socket))
                s.sendall(f"set server {backend}/r{i} state {state}\n".encode())
                s.recv(4096)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        states = stack.haproxy.server_states()
        if sum(1 for v in states.values() if v == "UP") == n:
            return
        time.sleep(0.1)
    raise RuntimeError(f"HAProxy did not reach {n} replicas UP: {stack.haproxy.server_states()}")


def broker_load(stack: HAStack, agents: int, seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    errors: dict[int, int] = {}
    lock = threading.Lock()
    start = threading.Barrier(agents + 1)
    stop = threading.Event()

    def agent() -> None:
        client = AgentClient(stack)
        task_id = client.open_task().json()["task_id"]
        mine: list[float] = []
        start.wait()
        n = 0
        while not stop.is_set():
            t0 = time.perf_counter()
            r = client.credential(task_id, "db.read", "demo-data")
            dt = time.perf_counter() - t0
            if r.status_code == 200:
                mine.append(dt)
            else:
                with lock:
                    errors[r.status_code] = errors.get(r.status_code, 0) + 1
            n += 1
            if n % 50 == 0:  # fresh task now and then (a task is a unit of work, not a session)
                client.http.delete(f"/v1/tasks/{task_id}", headers=client.h())
                task_id = client.open_task().json()["task_id"]
        with lock:
            latencies.extend(mine)
        client.close()

    threads = [threading.Thread(target=agent) for _ in range(agents)]
    for th in threads:
        th.start()
    start.wait()
    t0 = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    elapsed = time.perf_counter() - t0
    for th in threads:
        th.join(120)
    return {"per_s": round(len(latencies) / elapsed, 1), **ms(latencies), "errors": errors}


def raw_load(stack: HAStack, agents: int, seconds: float) -> dict[str, Any]:
    assert stack.openbao is not None
    latencies: list[float] = []
    lock = threading.Lock()
    start = threading.Barrier(agents + 1)
    stop = threading.Event()
    token = stack.openbao.root_token.reveal()

    def worker() -> None:
        mine: list[float] = []
        with httpx.Client(base_url=stack.openbao_addr, headers={"X-Vault-Token": token}, timeout=30) as c:
            start.wait()
            while not stop.is_set():
                t0 = time.perf_counter()
                r = c.post("/v1/auth/token/create", json={"ttl": "60s", "policies": ["default"]})
                if r.status_code == 200:
                    mine.append(time.perf_counter() - t0)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(agents)]
    for th in threads:
        th.start()
    start.wait()
    t0 = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    elapsed = time.perf_counter() - t0
    for th in threads:
        th.join(60)
    return {"per_s": round(len(latencies) / elapsed, 1), **ms(latencies), "errors": {}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--database-url", default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows: list[dict[str, Any]] = []
    with ha_stack(3, args.database_url) as stack:
        for agents in (8, 32):
            for n in (1, 2, 3):
                set_replicas(stack, n)
                rows.append(
                    {
                        "target": f"broker via HAProxy, {n} replica(s)",
                        "agents": agents,
                        **broker_load(stack, agents, args.seconds),
                    }
                )
            rows.append(
                {
                    "target": "raw OpenBao token create (same cluster)",
                    "agents": agents,
                    **raw_load(stack, agents, args.seconds),
                }
            )
        set_replicas(stack, 3)
    if args.json:
        print(json.dumps(rows, indent=2))
    print(f"\ncredential throughput, {args.seconds:.0f} s per row (db.read on demo-data = OpenBao child token)")
    print(f"{'target':45} {'agents':>6} {'per s':>8} {'p50 ms':>8} {'p99 ms':>8}  errors")
    for r in rows:
        errors = r["errors"] or ""
        print(f"{r['target']:45} {r['agents']:>6} {r['per_s']:>8} {r['p50_ms']:>8} {r['p99_ms']:>8}  {errors}")


if __name__ == "__main__":
    main()
