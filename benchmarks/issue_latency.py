"""Credential issuance through the broker vs the raw backend call, in one run.

Broker: a full `POST /v1/tasks/{id}/credentials` over HTTP (identity JWT verification + replay
guard, chain detectors, Cedar decision, audit writes, backend call, grant record) against a real
`nhi-broker up` process. Raw: the backend call the broker makes, from the same client library in
the same run:

- vault_token: `POST auth/token/create` on the same OpenBao (the broker creates a child token
  under the task's parent via a token role);
- postgres:    `GET database/creds/demo-readonly` (OpenBao creates a PostgreSQL role);
- aws:         `sts:AssumeRole` with the broker's keys on a moto server (no tags/policy).

Sequential latency (tasks of 10 requests) and 8-way concurrent throughput for vault_token.

    .venv/bin/python benchmarks/issue_latency.py [--n 400] [--n-slow 60] [--workers-pg]

``--workers-pg`` adds the multi-process figure: 8 agents against ``serve --workers 2`` on
PostgreSQL next to raw token creates, in the same run (benchmarks/_throughput.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT / "tests")]

from _harness import broker_up, print_table, summarize, timed  # noqa: E402
from support.moto import REGION, start_moto  # noqa: E402

from broker.demo import DEMO_KV_PATH  # noqa: E402
from broker.identity import DevIssuer  # noqa: E402

STEPS_PER_TASK = 10
ACCOUNT = "123456789012"


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


class BrokerCaller:
    """Agent-side caller: tokens minted ahead (that is the agent's cost), tasks of N steps."""

    def __init__(
        self,
        up: dict[str, Any],
        issuer: DevIssuer,
        action: str,
        resource: str,
        profile: str,
        n: int,
        steps_per_task: int = STEPS_PER_TASK,
    ) -> None:
        self.c = httpx.Client(base_url=up["url"], timeout=30)
        self.tokens = iter([issuer.mint("demo-agent", ttl_seconds=3600) for _ in range(5 * n + 200)])
        self.action, self.resource, self.profile = action, resource, profile
        self.per_task = steps_per_task
        self.task, self.steps, self.tasks = "", steps_per_task, []
        self.samples: list[float] = []

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {next(self.tokens)}"}

    def __call__(self) -> None:
        if self.steps >= self.per_task:
            self.task = self.c.post(
                "/v1/tasks", json={"profile": self.profile, "purpose": "bench"}, headers=self._auth()
            ).json()["task_id"]
            self.tasks.append(self.task)
            self.steps = 0
        self.steps += 1
        t0 = time.perf_counter()
        r = self.c.post(
            f"/v1/tasks/{self.task}/credentials",
            json={"action": self.action, "resource": self.resource},
            headers=self._auth(),
        )
        r.raise_for_status()
        self.samples.append(time.perf_counter() - t0)

    def end_all(self) -> None:
        for task in self.tasks:
            self.c.delete(f"/v1/tasks/{task}", headers=self._auth())


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc): what a request costs the broker itself,
    independent of how busy the rest of the machine is."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_per_request(pid: int, fn: Any, n: int) -> float:
    """Milliseconds of the broker process's CPU per call of ``fn`` (sequential)."""
    before = cpu_seconds(pid)
    for _ in range(n):
        fn()
    return (cpu_seconds(pid) - before) * 1000 / n


def single_agent(up: dict[str, Any], issuer: DevIssuer, n: int) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Issue 14's single-agent figures, side by side in one run: the monitor-tier `vault_token`
    credential and the inline-tier `secrets.read` (`vault_kv`, single use, response-wrapped) against
    the raw OpenBao calls, plus the floors of the same server (`/healthz`, an authenticated GET)."""
    root = {"X-Vault-Token": up["openbao_token"]}
    bao = httpx.Client(base_url=up["openbao_addr"], headers=root)
    rows: list[dict[str, Any]] = []

    def raw_token() -> None:
        bao.post("/v1/auth/token/create", json={"policies": ["nhi-demo-data"], "ttl": "3600s"}).raise_for_status()

    def raw_wrapped_kv() -> None:
        bao.get(f"/v1/secret/data/{DEMO_KV_PATH}", headers={"X-Vault-Wrap-TTL": "120s"}).raise_for_status()

    monitor = BrokerCaller(up, issuer, "db.read", "demo-data", "demo", n)
    # one request per task: secrets.read is high tier and `burst` escalates a task after five
    inline = BrokerCaller(up, issuer, "secrets.read", "demo-kv", "demo", n, steps_per_task=1)
    web = httpx.Client(base_url=up["url"], timeout=30)
    tokens = iter([issuer.mint("demo-agent", ttl_seconds=3600) for _ in range(2 * n + 40)])
    monitor()  # opens a task the authenticated GET reads

    def healthz() -> None:
        web.get("/healthz").raise_for_status()

    def auth_get() -> None:
        web.get(f"/v1/tasks/{monitor.task}", headers={"Authorization": f"Bearer {next(tokens)}"}).raise_for_status()

    # interleaved in rounds so drift on this noisy machine hits every path alike
    samples: dict[str, list[float]] = {k: [] for k in ("raw", "kv", "monitor", "inline", "healthz", "get")}
    fns = {
        "raw": raw_token,
        "kv": raw_wrapped_kv,
        "monitor": monitor,
        "inline": inline,
        "healthz": healthz,
        "get": auth_get,
    }
    rounds = 10
    for key, fn in fns.items():  # warm-up
        timed(fn, 0, warmup=10 if key not in ("get",) else 5)
    monitor.samples.clear()
    inline.samples.clear()
    for _ in range(rounds):
        for key, fn in fns.items():
            if key in ("monitor", "inline"):
                timed(fn, n // rounds, warmup=0)
            else:
                samples[key] += timed(fn, n // rounds, warmup=0)
    samples["monitor"], samples["inline"] = list(monitor.samples), list(inline.samples)
    pid = int(up["pid"])
    cpu = {key: cpu_per_request(pid, fns[key], max(50, n // 2)) for key in ("monitor", "inline", "get", "healthz")}
    monitor.end_all()
    inline.end_all()
    stats = {k: summarize(v) for k, v in samples.items()}
    labels = {
        "raw": ("vault_token", "raw auth/token/create"),
        "monitor": ("vault_token", "broker credential (monitor tier)"),
        "kv": ("vault_kv", "raw wrapped KV read"),
        "inline": ("vault_kv", "broker secrets.read (inline, single use)"),
        "healthz": ("floor", "broker GET /healthz"),
        "get": ("floor", "broker authenticated GET /v1/tasks/{id}"),
    }
    for key, (backend, path) in labels.items():
        rows.append({"backend": backend, "path": path, **stats[key], "broker CPU ms": cpu.get(key)})
    ratios = {
        "monitor median / raw token": stats["monitor"]["median_ms"] / stats["raw"]["median_ms"],
        "monitor p99 / raw token p99": stats["monitor"]["p99_ms"] / stats["raw"]["p99_ms"],
        "inline median / raw token": stats["inline"]["median_ms"] / stats["raw"]["median_ms"],
        "inline median / raw wrapped KV": stats["inline"]["median_ms"] / stats["kv"]["median_ms"],
    }
    return rows, ratios


def print_single(rows: list[dict[str, Any]], ratios: dict[str, float]) -> None:
    print_table(
        "Single agent, sequential, interleaved rounds (issue 14 targets)",
        rows,
        ["backend", "path", "n", "median_ms", "p90_ms", "p99_ms", "mean_ms", "broker CPU ms"],
    )
    print()
    for name, value in ratios.items():
        print(f"ratio {name:32s} {value:.2f}x")
    print("targets: monitor median <= 2x raw token create, p99 <= 3x; inline median <= 3x raw")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--n-slow", type=int, default=60, help="samples for postgres and aws")
    ap.add_argument("--single", action="store_true", help="only the single-agent figures of issue 14")
    ap.add_argument(
        "--workers-pg",
        action="store_true",
        help="also: 8 agents against `serve --workers 2` on PostgreSQL vs raw token create (benchmarks/_throughput.py)",
    )
    args = ap.parse_args()
    if args.single:
        with broker_up() as up:
            print_single(*single_agent(up, DevIssuer.load(Path(up["data_dir"])), args.n))
        return
    rows: list[dict[str, Any]] = []
    workdir = Path(tempfile.mkdtemp(prefix="nhi-bench-moto-", dir="/tmp"))
    moto = start_moto(workdir)
    keys = moto.admin
    assert keys is not None
    env = {
        "NHI_BROKER_AWS__ENABLED": "true",
        "NHI_BROKER_AWS__ENDPOINT_URL": moto.endpoint,
        "AWS_ACCESS_KEY_ID": keys.access_key_id,
        "AWS_SECRET_ACCESS_KEY": keys.secret_access_key,
        "AWS_DEFAULT_REGION": REGION,
    }
    try:
        with broker_up(env=env) as up:
            issuer = DevIssuer.load(Path(up["data_dir"]))
            root = {"X-Vault-Token": up["openbao_token"]}
            admin = httpx.Client(base_url=up["url"], headers={"Authorization": f"Bearer {up['admin_token']}"})
            bao = httpx.Client(base_url=up["openbao_addr"], headers=root)
            single = single_agent(up, issuer, args.n)

            # -- vault_token -------------------------------------------------------------------
            def raw_token_factory() -> Any:
                c = httpx.Client(base_url=up["openbao_addr"], headers=root)
                return lambda: c.post(
                    "/v1/auth/token/create", json={"policies": ["nhi-demo-data"], "ttl": "3600s"}
                ).raise_for_status()

            raw = summarize(timed(raw_token_factory(), args.n))
            caller = BrokerCaller(up, issuer, "db.read", "demo-data", "demo", args.n)
            timed(caller, args.n)
            brk = summarize(caller.samples[-args.n :])
            raw_tp = concurrent(raw_token_factory, args.n)
            brk_tp = concurrent(lambda: BrokerCaller(up, issuer, "db.read", "demo-data", "demo", args.n), args.n)
            rows.append({"backend": "vault_token", "path": "raw auth/token/create", **raw, "8-way req/s": raw_tp})
            rows.append({"backend": "vault_token", "path": "broker credential", **brk, "8-way req/s": brk_tp})
            ratios = {"vault_token": (brk["median_ms"] / raw["median_ms"], brk["p99_ms"] / raw["p99_ms"])}

            # -- postgres (demo-db, configured by `up` when PostgreSQL answers) ---------------
            names = {r["name"] for r in admin.get("/v1/admin/resources").json()["items"]}
            if "demo-db" in names:
                raw_pg = summarize(
                    timed(lambda: bao.get("/v1/database/creds/demo-readonly").raise_for_status(), args.n_slow, warmup=5)
                )
                bao.put("/v1/sys/leases/revoke-prefix/database/creds/demo-readonly").raise_for_status()
                pg = BrokerCaller(up, issuer, "db.read", "demo-db", "demo", args.n_slow)
                timed(pg, args.n_slow, warmup=5)
                pg.end_all()
                brk_pg = summarize(pg.samples[-args.n_slow :])
                rows.append({"backend": "postgres", "path": "raw database/creds", **raw_pg})
                rows.append({"backend": "postgres", "path": "broker credential", **brk_pg})
                ratios["postgres"] = (brk_pg["median_ms"] / raw_pg["median_ms"], brk_pg["p99_ms"] / raw_pg["p99_ms"])
            else:
                print("postgres rows skipped: `up` found no PostgreSQL at 127.0.0.1:5432")

            # -- aws (moto, IAM enforcement on) ----------------------------------------------
            iam = keys.client("iam", moto.endpoint)
            trust = {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/nhi-broker"},
                        "Action": ["sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"],
                    }
                ],
            }
            iam.create_role(
                RoleName="bench-reader", AssumeRolePolicyDocument=json.dumps(trust), MaxSessionDuration=7200
            )
            admin.put(
                "/v1/admin/resources/bench-s3",
                json={
                    "kind": "aws",
                    "sensitivity": "internal",
                    "environment": "dev",
                    "aws": {
                        "role_arn": f"arn:aws:iam::{ACCOUNT}:role/bench-reader",
                        "region": REGION,
                        "endpoint_url": moto.endpoint,
                    },
                },
            ).raise_for_status()
            admin.put(
                "/v1/admin/profiles/bench-cloud", json={"allowed_actions": ["storage.read"], "ceiling": "high"}
            ).raise_for_status()
            me = admin.get("/v1/admin/agents/demo-agent").json()
            admin.put(
                "/v1/admin/agents/demo-agent",
                json={
                    "owner": me["owner"],
                    "identities": me["identities"],
                    "profiles": sorted({*me["profiles"], "bench-cloud"}),
                },
            ).raise_for_status()
            sts = keys.client("sts", moto.endpoint)
            arn = f"arn:aws:iam::{ACCOUNT}:role/bench-reader"
            raw_aws = summarize(
                timed(
                    lambda: sts.assume_role(RoleArn=arn, RoleSessionName="raw", DurationSeconds=900),
                    args.n_slow,
                    warmup=5,
                )
            )
            aws = BrokerCaller(up, issuer, "storage.read", "bench-s3", "bench-cloud", args.n_slow)
            timed(aws, args.n_slow, warmup=5)
            brk_aws = summarize(aws.samples[-args.n_slow :])
            rows.append({"backend": "aws", "path": "raw sts:AssumeRole", **raw_aws})
            rows.append({"backend": "aws", "path": "broker credential", **brk_aws})
            ratios["aws"] = (brk_aws["median_ms"] / raw_aws["median_ms"], brk_aws["p99_ms"] / raw_aws["p99_ms"])
    finally:
        moto.stop()
    print_table(
        f"Issuance latency (sequential; tasks of {STEPS_PER_TASK} requests); 8-way throughput for vault_token",
        rows,
        ["backend", "path", "n", "median_ms", "p90_ms", "p99_ms", "mean_ms", "8-way req/s"],
    )
    print()
    for backend, (med, p99) in ratios.items():
        print(f"ratio broker/raw {backend:12s} median {med:.2f}x  p99 {p99:.2f}x")
    print("targets (vault_token): median <= 2x raw, broker p99 < 25 ms")
    print_single(*single)
    if args.workers_pg:
        from _throughput import print_throughput, workers_pg_throughput

        print_throughput(workers_pg_throughput(workers=2, agents=8, requests=args.n))


if __name__ == "__main__":
    main()
