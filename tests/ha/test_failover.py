"""Failover on the real topology (``broker.topology.HAStack``: HAProxy, 3 ``serve`` replicas,
PostgreSQL, a 3-node OpenBao raft cluster).

- A replica SIGKILLed in the middle of ending a task: the other replicas complete its revocations;
  HAProxy takes it out; restarted, it rejoins.
- The OpenBao leader stopped: requests during the election get 503, never a credential on a guess;
  they succeed once a new leader is elected.
- OpenBao without quorum: ending a task still works and queues the revocations; they complete
  when OpenBao is back.
"""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import hvac
import psycopg
import pytest
from sqlalchemy import create_engine, text

from broker.identity import DevIssuer
from broker.topology.ports import free_block
from broker.topology.stack import HAStack

pytestmark = [pytest.mark.ha, pytest.mark.openbao, pytest.mark.postgres, pytest.mark.slow]


class Agent:
    def __init__(self, stack: HAStack) -> None:
        self.issuer = DevIssuer.load_or_create(stack.data_dir)
        self.client = httpx.Client(timeout=60)
        self.url = stack.url

    def h(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.issuer.mint('demo-agent')}"}

    def open_task(self, url: str | None = None) -> str:
        r = self.client.post(
            f"{url or self.url}/v1/tasks", headers=self.h(), json={"profile": "demo", "purpose": "failover"}
        )
        assert r.status_code == 201, r.text
        return str(r.json()["task_id"])

    def credential(self, task_id: str, resource: str = "demo-data", url: str | None = None) -> httpx.Response:
        return self.client.post(
            f"{url or self.url}/v1/tasks/{task_id}/credentials",
            headers=self.h(),
            json={"action": "db.read", "resource": resource},
        )


def wait_until(predicate: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} not reached in {timeout}s")


@pytest.fixture(scope="module")
def stack(pg_server) -> Iterator[HAStack]:
    name = "nhi_test_ha_" + uuid.uuid4().hex[:10]
    with psycopg.connect(pg_server.conninfo(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://{pg_server.superuser}@{pg_server.host}:{pg_server.port}/{name}"
    data_dir = Path("/tmp") / f"nhi-ha-{uuid.uuid4().hex[:8]}"
    s = HAStack(data_dir=data_dir, port=free_block(), replica_count=3, database_url=url)
    try:
        s.start()  # stops what it started when it fails
        yield s
    finally:
        s.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
        with psycopg.connect(pg_server.conninfo(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _bao(stack: HAStack, token: str | None = None) -> hvac.Client:
    assert stack.openbao is not None
    return hvac.Client(url=stack.openbao_addr, token=token or stack.openbao.root_token.reveal(), timeout=5)


def _token_alive(stack: HAStack, token: str) -> bool:
    """False only when OpenBao answers that the token is gone (unreachable counts as alive)."""
    try:
        _bao(stack, token).auth.token.lookup_self()
        return True
    except hvac.exceptions.Forbidden:
        return False
    except (hvac.exceptions.VaultError, OSError, ConnectionError):
        return True


def _lease_alive(stack: HAStack, lease_id: str) -> bool:
    try:
        _bao(stack).sys.read_lease(lease_id)
        return True
    except hvac.exceptions.InvalidRequest:
        return False


def test_replica_killed_while_ending_a_task_has_its_revocations_completed_by_the_others(stack) -> None:
    assert stack.database_url is not None and stack.haproxy is not None
    victim = stack.replicas[1]
    agent = Agent(stack)
    engine = create_engine(stack.database_url)
    try:
        task_id = agent.open_task(victim.url)
        leases = []
        for _ in range(15):  # per-lease revocations (dynamic database logins): a long in-flight window
            r = agent.credential(task_id, "demo-db", url=victim.url)
            assert r.status_code == 200, r.text
            leases.append(r.json()["credential"]["lease_id"])
        assert all(_lease_alive(stack, lease) for lease in leases)

        def state() -> str:
            with engine.connect() as conn:
                return str(conn.execute(text("SELECT state FROM tasks WHERE task_id = :t"), {"t": task_id}).scalar())

        outcome: dict[str, Any] = {}

        def end() -> None:
            try:
                outcome["response"] = agent.client.delete(f"{victim.url}/v1/tasks/{task_id}", headers=agent.h())
            except httpx.HTTPError as exc:
                outcome["error"] = type(exc).__name__

        th = threading.Thread(target=end)
        th.start()
        wait_until(lambda: state() == "ended", 30, "task ended in the store")
        victim.kill()  # mid-request: the task is ended, its revocations are being attempted
        th.join(30)
        with engine.connect() as conn:
            pending_at_kill = conn.execute(
                text("SELECT count(*) FROM revocations WHERE task_id = :t AND state = 'pending'"), {"t": task_id}
            ).scalar()
        print(
            f"\nreplica killed mid-request: {pending_at_kill} of {len(leases)} revocations still pending; "
            f"client saw {outcome.get('error') or outcome['response'].status_code}"
        )
        assert "error" in outcome, "the request finished before the kill: nothing was in flight"
        # the survivors' revocation workers finish the job, at OpenBao and in PostgreSQL
        wait_until(lambda: not any(_lease_alive(stack, lease) for lease in leases), 60, "every lease revoked")

        def left() -> int:  # a survivor marks a row done just after OpenBao confirms its revocation
            with engine.connect() as conn:
                return int(
                    conn.execute(
                        text("SELECT count(*) FROM revocations WHERE task_id = :t AND state <> 'done'"), {"t": task_id}
                    ).scalar()
                )

        wait_until(lambda: left() == 0, 60, "every revocation recorded done")
        # HAProxy takes the dead replica out; the API keeps answering through it meanwhile
        wait_until(lambda: stack.haproxy.server_states()["r1"] == "DOWN", 30, "r1 marked DOWN")
        for _ in range(6):
            t2 = agent.open_task()
            assert agent.credential(t2).status_code == 200
        # restarted, it rejoins
        victim.start()
        victim.wait_ready()
        wait_until(lambda: stack.haproxy.server_states()["r1"] == "UP", 30, "r1 back UP")
    finally:
        if not victim.child.alive():
            victim.start()
            victim.wait_ready()
        agent.client.close()
        engine.dispose()


def test_openbao_leader_stop_answers_503_during_the_election_never_a_guess_then_succeeds(stack) -> None:
    assert stack.openbao is not None
    agent = Agent(stack)
    results: list[tuple[float, int, str | None]] = []  # (time, status, token)
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=60) as c:
            while not stop.is_set():
                try:
                    r = c.post(f"{stack.url}/v1/tasks", headers=agent.h(), json={"profile": "demo", "purpose": "x"})
                    if r.status_code != 201:
                        results.append((time.monotonic(), r.status_code, r.text[:300]))
                        continue
                    task_id = r.json()["task_id"]
                    r = c.post(
                        f"{stack.url}/v1/tasks/{task_id}/credentials",
                        headers=agent.h(),
                        json={"action": "db.read", "resource": "demo-data"},
                    )
                    cred = r.json().get("credential") if r.status_code == 200 else None
                    results.append((time.monotonic(), r.status_code, cred["token"] if cred else r.text[:300]))
                except httpx.HTTPError as exc:
                    results.append((time.monotonic(), -1, type(exc).__name__))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for th in threads:
        th.start()
    try:
        wait_until(lambda: sum(1 for r in results if r[1] == 200) >= 10, 60, "10 credentials before the stop")
        leader = stack.openbao.leader()
        assert leader is not None
        stopped_at = time.monotonic()
        stack.openbao.stop_node(leader, sigkill=True)
        new_leader = stack.openbao.wait_leader(60)
        elected_at = time.monotonic()
        assert new_leader.node_id != leader.node_id
        wait_until(
            lambda: sum(1 for r in results if r[1] == 200 and r[0] > elected_at) >= 10,
            90,
            "10 credentials after the election",
        )
    finally:
        stop.set()
        for th in threads:
            th.join(60)
    statuses = {r[1] for r in results}
    during = [r for r in results if r[1] != 200]
    window = (max(r[0] for r in during) - min(r[0] for r in during)) if during else 0.0
    print(
        f"\nOpenBao leader SIGKILL: election {elected_at - stopped_at:.2f}s; {len(results)} requests, "
        f"{sum(1 for r in results if r[1] == 503)} answered 503, longest non-200 span {window:.2f}s"
    )
    odd = [r for r in results if r[1] not in (200, 503)]
    assert statuses <= {200, 503}, f"only credentials or 503: {sorted(statuses)} {odd[:5]}"
    # every credential handed out is real: it exists in OpenBao (none was issued on a guess)
    for _, status, token in results:
        if status == 200:
            assert token is not None and _token_alive(stack, token)
    # the stopped node restarts and rejoins as a voter
    stack.openbao.start_node(leader)
    stack.openbao.wait_healthy(120)
    agent.client.close()


def test_revocations_queued_while_openbao_has_no_quorum_complete_when_it_returns(stack) -> None:
    assert stack.openbao is not None
    agent = Agent(stack)
    task_id = agent.open_task()
    tokens = []
    for _ in range(3):
        r = agent.credential(task_id)
        assert r.status_code == 200, r.text
        tokens.append(r.json()["credential"]["token"])
    leader = stack.openbao.leader()
    assert leader is not None
    others = [n for n in stack.openbao.nodes if n is not leader]
    stopped = [leader, others[0]]
    for node in stopped:  # one node of three left: no quorum, no leader
        stack.openbao.stop_node(node)
    try:
        wait_until(lambda: stack.openbao is not None and stack.openbao.leader() is None, 30, "no leader")
        t2 = agent.open_task()
        assert agent.credential(t2).status_code == 503  # no credential while OpenBao cannot answer
        r = agent.client.delete(f"{stack.url}/v1/tasks/{task_id}", headers=agent.h())
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["state"] == "ended" and body["revocations_pending"] >= 1, body
    finally:
        for node in stopped:
            stack.openbao.start_node(node)
    stack.openbao.wait_leader(60)
    wait_until(lambda: not any(_token_alive(stack, t) for t in tokens), 90, "queued revocations completed")
    stack.openbao.wait_healthy(120)
    stack.wait_lb_ready()
    agent.client.close()
