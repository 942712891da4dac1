"""Credential issuance through the broker vs the raw backend call, in one run.

Broker: a full `POST /v1/tasks/{id}/credentials` over HTTP (identity JWT verification + replay
guard, decision, audit writes, OpenBao child token under the task's parent) against a real
`nhi-broker up` process. Raw: `POST /v1/auth/token/create` straight to the same OpenBao from the
same HTTP client library. Sequential latency and 8-way concurrent throughput.

    .venv/bin/python benchmarks/issue_latency.py [--n 400]
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from _harness import broker_up, print_table, summarize, timed
from broker.identity import DevIssuer

STEPS_PER_TASK = 10


def concurrent(fn_factory: Any, total: int, workers: int = 8) -> float:
    per = total // workers
    barrier = threading.Barrier(workers + 1)

    def run() -> None:
        fn = fn_factory()
        barrier.wait()
        for _ in range(per):
            fn()

    threads = [threading.Thread(target=run) for _ in range(workers)]
    for th in threads:
        th.start()
    barrier.wait()
    t0 = time.perf_counter()
    for th in threads:
        th.join()
    return per * workers / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=400)
    args = ap.parse_args()
    rows: list[dict[str, Any]] = []
    with broker_up() as up:
        issuer = DevIssuer.load_or_create(Path(up["data_dir"]))
        root = {"X-Vault-Token": up["openbao_token"]}

        def raw_factory() -> Any:
            c = httpx.Client(base_url=up["openbao_addr"], headers=root)
            return lambda: c.post("/v1/auth/token/create",
                                  json={"policies": ["nhi-demo-data"], "ttl": "3600s"}).raise_for_status()

        def broker_factory() -> Any:
            c = httpx.Client(base_url=up["url"])
            # identity tokens are single-use: mint them before timing (that is the agent's cost)
            tokens = iter([issuer.mint("demo-agent", ttl_seconds=3600) for _ in range(2 * args.n + 200)])
            state = {"task": "", "steps": STEPS_PER_TASK}

            def call() -> None:
                if state["steps"] >= STEPS_PER_TASK:  # a task of STEPS_PER_TASK credential requests
                    state["task"] = c.post("/v1/tasks", json={"profile": "demo", "purpose": "bench"},
                                           headers={"Authorization": f"Bearer {next(tokens)}"}).json()["task_id"]
                    state["steps"] = 0
                state["steps"] += 1
                t0 = time.perf_counter()
                r = c.post(f"/v1/tasks/{state['task']}/credentials",
                           json={"action": "db.read", "resource": "demo-data"},
                           headers={"Authorization": f"Bearer {next(tokens)}"})
                r.raise_for_status()
                samples.append(time.perf_counter() - t0)
            return call

        raw = summarize(timed(raw_factory(), args.n))
        samples: list[float] = []
        timed(broker_factory(), args.n)
        brk = summarize(samples[-args.n:])  # the credential request only, not the task opening
        raw_tp = concurrent(raw_factory, args.n)
        brk_tp = concurrent(broker_factory, args.n)
        rows.append({"path": "raw OpenBao token create", **raw, "8-way req/s": raw_tp})
        rows.append({"path": "broker credential (vault_token)", **brk, "8-way req/s": brk_tp})
    print_table(f"Issuance latency, sequential n={args.n}; throughput 8 threads",
                rows, ["path", "n", "median_ms", "p90_ms", "p99_ms", "mean_ms", "8-way req/s"])
    print(f"\nratio broker/raw: median {brk['median_ms'] / raw['median_ms']:.2f}x, "
          f"p99 {brk['p99_ms'] / raw['p99_ms']:.2f}x  (target: median <= 2x, broker p99 < 25 ms)")


if __name__ == "__main__":
    main()
