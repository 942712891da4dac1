"""The chaos soak on the HA topology: concurrent agents through HAProxy while replicas are SIGKILLed
and restarted and the OpenBao leader is stopped and restarted; then checks against OpenBao itself.

Used by ``tests/ha/test_soak.py`` (bounded) and ``benchmarks/ha_soak.py --minutes N``.

Agent mix (each iteration one scenario, chosen at random):
  routine   monitor read (db.read demo-data) + review write (db.write demo-data), task ended
  secret    inline secret read (secrets.read demo-secrets), task ended
  stepup    payments.charge prod-payments → 202, approved by a test approver, collected, task ended
  escalate  secrets.read then data.export → 403 task_escalated; time until the read token is dead
  leak      db.read, then the token reported in an output event → escalation; time until dead
"""

from __future__ import annotations

import random
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import create_engine, text

from broker.errors import BrokerError
from broker.identity import DevIssuer
from broker.topology.stack import HAStack

SCENARIOS = ("routine", "routine", "secret", "stepup", "escalate", "leak")


@dataclass
class SoakReport:
    seconds: float = 0.0
    statuses: Counter[int] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    scenarios: Counter[str] = field(default_factory=Counter)
    bad_5xx: list[tuple[float, int, str]] = field(default_factory=list)
    connection_errors: list[tuple[float, str]] = field(default_factory=list)
    failovers: list[tuple[str, float, float]] = field(default_factory=list)  # (what, start, end)
    escalation_to_dead: list[float] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    audit: str = ""
    grants_checked: int = 0

    def in_window(self, t: float, slack: float = 5.0) -> bool:
        return any(start - 0.5 <= t <= end + slack for _, start, end in self.failovers)

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies)
        p99 = lat[min(len(lat) - 1, round(0.99 * (len(lat) - 1)))] if lat else float("nan")
        dead = sorted(self.escalation_to_dead)
        dead99 = dead[min(len(dead) - 1, round(0.99 * (len(dead) - 1)))] if dead else float("nan")
        total = sum(self.statuses.values())
        return {
            "seconds": round(self.seconds, 1),
            "requests": total,
            "per_s": round(total / self.seconds, 1),
            "p50_ms": round(statistics.median(lat) * 1000, 1) if lat else None,
            "p99_ms": round(p99 * 1000, 1),
            "status_counts": dict(sorted(self.statuses.items())),
            "count_503": self.statuses.get(503, 0),
            "connection_errors": len(self.connection_errors),
            "connection_error_kinds": dict(Counter(w.split(" ")[0] for _, w in self.connection_errors)),
            "failovers": [(w, round(e - s, 2)) for w, s, e in self.failovers],
            "longest_failover_s": round(max((e - s for _, s, e in self.failovers), default=0.0), 2),
            "escalation_to_all_dead_p99_ms": round(dead99 * 1000, 1),
            "escalations_measured": len(dead),
            "scenarios": dict(self.scenarios),
            "grants_checked_at_openbao": self.grants_checked,
            "violations": self.violations,
            "bad_5xx": self.bad_5xx[:5],
            "audit": self.audit,
        }


class _Agent:
    def __init__(self, stack: HAStack, report: SoakReport, lock: threading.Lock, rng: random.Random) -> None:
        self.issuer = DevIssuer.load_or_create(stack.data_dir)
        self.http = httpx.Client(base_url=stack.url, timeout=60)
        self.admin = {"Authorization": f"Bearer {stack.admin_token.reveal()}"}
        self.stack = stack
        self.report = report
        self.lock = lock
        self.rng = rng

    def call(self, method: str, path: str, *, admin: bool = False, json: Any = None) -> httpx.Response | None:
        headers = self.admin if admin else {"Authorization": f"Bearer {self.issuer.mint('demo-agent')}"}
        t0 = time.monotonic()
        try:
            r = self.http.request(method, path, headers=headers, json=json)
        except httpx.HTTPError as exc:  # when it failed (a request in flight at a kill fails at the kill)
            with self.lock:
                self.report.connection_errors.append((time.monotonic(), f"{type(exc).__name__} {method} {path}"))
            return None
        with self.lock:
            self.report.statuses[r.status_code] += 1
            if r.status_code < 500:
                self.report.latencies.append(time.monotonic() - t0)
            elif r.status_code != 503:
                self.report.bad_5xx.append((t0, r.status_code, r.text[:200]))
        return r

    def cred(self, task_id: str, action: str, resource: str, approval_id: str | None = None) -> httpx.Response | None:
        body: dict[str, Any] = {"action": action, "resource": resource}
        if approval_id:
            body["approval_id"] = approval_id
        return self.call("POST", f"/v1/tasks/{task_id}/credentials", json=body)

    def token_dead(self, token: str) -> bool:
        try:
            r = httpx.get(
                f"{self.stack.openbao_addr}/v1/auth/token/lookup-self", headers={"X-Vault-Token": token}, timeout=5
            )
        except httpx.HTTPError:
            return False
        return r.status_code == 403

    def wait_dead(self, token: str, since: float) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.token_dead(token):
                with self.lock:
                    self.report.escalation_to_dead.append(time.monotonic() - since)
                return
            time.sleep(0.01)

    def run_one(self) -> None:
        scenario = self.rng.choice(SCENARIOS)
        r = self.call("POST", "/v1/tasks", json={"profile": "demo", "purpose": f"soak {scenario}"})
        if r is None or r.status_code != 201:
            return
        task_id = r.json()["task_id"]
        with self.lock:
            self.report.scenarios[scenario] += 1
        end = True
        if scenario == "routine":
            self.cred(task_id, "db.read", "demo-data")
            self.cred(task_id, "db.write", "demo-data")
        elif scenario == "secret":
            self.cred(task_id, "secrets.read", "demo-secrets")
        elif scenario == "stepup":
            r = self.cred(task_id, "payments.charge", "prod-payments")
            if r is not None and r.status_code == 202:
                approval = r.json().get("approval_id")
                a = self.call(
                    "POST",
                    f"/v1/approvals/{approval}/approve",
                    admin=True,
                    json={"approver": "soak-approver", "reason": "soak"},
                )
                if a is not None and a.status_code == 200:
                    self.cred(task_id, "payments.charge", "prod-payments", approval)
        elif scenario == "escalate":
            r = self.cred(task_id, "secrets.read", "demo-secrets")
            if r is not None and r.status_code == 200:
                token = r.json()["credential"]["token"]
                x = self.cred(task_id, "data.export", "demo-data")
                if x is not None and x.status_code == 403 and x.json()["error"]["code"] == "task_escalated":
                    self.wait_dead(token, time.monotonic())
                    end = False
        elif scenario == "leak":
            r = self.cred(task_id, "db.read", "demo-data")
            if r is not None and r.status_code == 200:
                token = r.json()["credential"]["token"]
                e = self.call(
                    "POST",
                    f"/v1/tasks/{task_id}/events",
                    json={"kind": "output", "text": f"debug: using token {token} now"},
                )
                if e is not None and e.status_code == 201:
                    self.wait_dead(token, time.monotonic())
                    end = False
        if end:
            self.call("DELETE", f"/v1/tasks/{task_id}")


def _chaos(stack: HAStack, report: SoakReport, stop: threading.Event, rng: random.Random, period: float) -> None:
    assert stack.openbao is not None
    turn = 0
    while not stop.wait(period * (0.7 + 0.6 * rng.random())):
        start = time.monotonic()
        try:
            if turn % 2 == 0:
                replica = rng.choice(stack.replicas)
                replica.kill()
                time.sleep(1.0)
                replica.start()
                replica.wait_ready()
                what = f"replica {replica.name} SIGKILL+restart"
            else:
                leader = stack.openbao.wait_leader(60)
                stack.openbao.stop_node(leader, sigkill=True)
                try:
                    stack.openbao.wait_leader(60)
                    stack.wait_lb_ready(120)
                    what = f"OpenBao leader {leader.node_id} SIGKILL"
                finally:
                    end = time.monotonic()
                    stack.openbao.start_node(leader)
                report.failovers.append((what, start, end))
                stack.openbao.wait_healthy(180)
                turn += 1
                continue
        except Exception as exc:  # a chaos step that does not recover is a finding, not a crash
            report.violations.append(f"chaos step {turn} did not recover: {type(exc).__name__}: {exc}"[:800])
            report.failovers.append((f"chaos step {turn} (failed)", start, time.monotonic()))
            turn += 1
            continue
        report.failovers.append((what, start, time.monotonic()))
        turn += 1


def run_soak(
    stack: HAStack, seconds: float, *, agents: int = 8, chaos_period: float = 20.0, seed: int = 1
) -> SoakReport:
    report = SoakReport()
    lock = threading.Lock()
    stop = threading.Event()
    rng = random.Random(seed)

    def agent_loop(i: int) -> None:
        agent = _Agent(stack, report, lock, random.Random(seed * 100 + i))
        while not stop.is_set():
            try:
                agent.run_one()
            except Exception as exc:  # a scenario must not kill the agent; count it as a violation
                with lock:
                    report.violations.append(f"agent {i}: {type(exc).__name__}: {exc}"[:300])
        agent.http.close()

    threads = [threading.Thread(target=agent_loop, args=(i,)) for i in range(agents)]
    chaos = threading.Thread(target=_chaos, args=(stack, report, stop, rng, chaos_period))
    t0 = time.monotonic()
    for th in threads:
        th.start()
    chaos.start()
    time.sleep(seconds)
    stop.set()
    chaos.join(300)
    for th in threads:
        th.join(300)
    report.seconds = time.monotonic() - t0
    try:
        stack.wait_lb_ready(120)
    except BrokerError as exc:  # reported, and the checks still run against OpenBao and the store
        report.violations.append(f"not ready after the soak: {exc.message}"[:1500])
    check(stack, report)
    return report


def check(stack: HAStack, report: SoakReport) -> None:
    """The end checks, against OpenBao itself and the store."""
    assert stack.database_url is not None and stack.openbao is not None
    for t, status, body in report.bad_5xx:
        report.violations.append(f"{status} outside 503 at t={t:.1f}: {body}")
    for t, what in report.connection_errors:
        if not report.in_window(t):
            report.violations.append(f"connection error outside a failover window at t={t:.1f}: {what}")
    engine = create_engine(stack.database_url)
    deadline = time.monotonic() + 120
    with engine.connect() as conn:  # the outbox drains once everything is back
        while (
            time.monotonic() < deadline
            and conn.execute(text("SELECT count(*) FROM revocations WHERE state = 'pending'")).scalar()
        ):
            conn.rollback()
            time.sleep(0.5)
        grants = conn.execute(
            text(
                "SELECT g.grant_id, g.backend, g.accessor, g.issued_at, t.state, t.task_id FROM grants g "
                "JOIN tasks t ON t.task_id = g.task_id WHERE t.state <> 'active'"
            )
        ).all()
        escalations = dict(
            conn.execute(
                text("SELECT task_id, min(created_at) FROM chain_events WHERE kind = 'escalation' GROUP BY task_id")
            ).all()
        )
    engine.dispose()
    root = {"X-Vault-Token": stack.openbao.root_token.reveal()}
    stack.openbao.wait_leader(120)
    with httpx.Client(base_url=stack.openbao_addr, headers=root, timeout=10) as bao:
        deadline = time.monotonic() + 60  # for all lookups together

        def lookup(accessor: str) -> int:
            while True:  # through the OpenBao load balancer: ride out a late leader change
                try:
                    code = bao.post("/v1/auth/token/lookup-accessor", json={"accessor": accessor}).status_code
                    if code < 500:
                        return code
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError("OpenBao did not answer lookups for 60 s after the soak")
                time.sleep(0.2)

        for g in grants:
            if g.accessor and g.backend in ("vault_token", "vault_kv"):
                report.grants_checked += 1
                if lookup(g.accessor) == 200:
                    report.violations.append(f"live credential {g.grant_id} of {g.state} task {g.task_id}")
            esc = escalations.get(g.task_id)
            if esc is not None and g.issued_at > esc:
                report.violations.append(f"grant {g.grant_id} issued after task {g.task_id} escalated")
    audit = subprocess.run(
        [
            sys.executable,
            "-m",
            "broker.cli",
            "audit",
            "verify",
            "--data-dir",
            str(stack.data_dir),
            "--database-url",
            stack.database_url,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    report.audit = (audit.stdout or audit.stderr).strip()[:300]
    if audit.returncode != 0:
        report.violations.append(f"audit verify failed: {report.audit}")
