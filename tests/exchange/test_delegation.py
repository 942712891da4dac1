"""Delegation to sub-agents: narrower sub-tasks, nested act chains, and one escalation killing the
whole tree at OpenBao and PostgreSQL."""

from __future__ import annotations

import httpx
import hvac
import jwt
import psycopg
import pytest
from support.broker import start_broker
from support.issuers import id_token, kubernetes_sa

from tests.chain.conftest import token_is_dead
from tests.exchange.conftest import AUDIENCE, HUMAN_CLIENT
from tests.exchange.test_token_exchange import ID_TOKEN, Key, call, exchange, svid

pytestmark = [pytest.mark.openbao, pytest.mark.postgres]


@pytest.fixture(scope="module")
def dbroker(openbao, pg_server, issuers, tmp_path_factory):
    running = start_broker(
        tmp_path_factory.mktemp("delegation"),
        openbao,
        postgres=pg_server,
        issuers=[issuers.spiffe.settings(AUDIENCE, require_jti=False), issuers.k8s.settings(AUDIENCE)],
        human_issuers=[issuers.people.settings(HUMAN_CLIENT)],
    )
    admin = running.admin()
    admin.put(
        "agents",
        "planner",
        {
            "owner": "platform-team",
            "profiles": ["demo"],
            "identities": [
                {"issuer": issuers.spiffe.issuer, "subject": "spiffe://example.org/ns/agents/sa/summarizer"}
            ],
        },
    )
    admin.put(
        "agents",
        "worker",
        {
            "owner": "platform-team",
            "profiles": ["demo"],
            "identities": [{"issuer": issuers.k8s.issuer, "subject": "system:serviceaccount:agents:reporter"}],
        },
    )
    yield running
    running.stop()


class Session:
    """One agent's DPoP-bound access token and key."""

    def __init__(self, broker, subject: str, **form: str) -> None:
        self.broker, self.key = broker, Key()
        r = exchange(broker, subject, key=self.key, **form)
        assert r.status_code == 200, r.text
        self.token = r.json()["access_token"]
        self.claims = jwt.decode(self.token, options={"verify_signature": False})

    def __call__(self, method: str, path: str, json: dict | None = None) -> httpx.Response:
        return call(self.broker, method, path, self.token, self.key, json)


def worker_identity(issuers) -> str:
    return issuers.k8s.mint(kubernetes_sa(issuers.k8s, "agents", "reporter", AUDIENCE))


def open_parent(dbroker, issuers, *, person: bool = False) -> tuple[Session, str]:
    form = {}
    if person:
        form = {
            "actor_token": issuers.people.mint(
                id_token(issuers.people, "alice", HUMAN_CLIENT, email="alice@example.test", groups=["ops"])
            ),
            "actor_token_type": ID_TOKEN,
        }
    planner = Session(dbroker, svid(issuers), **form)
    task = planner("POST", "/v1/tasks", {"profile": "demo", "purpose": "plan the report"})
    assert task.status_code == 201, task.text
    return planner, task.json()["task_id"]


def delegate(planner: Session, task_id: str, **over) -> httpx.Response:
    body = {"agent": "worker", "actions": ["db.read"], "ceiling": "medium", "purpose": "read the numbers", **over}
    return planner("POST", f"/v1/tasks/{task_id}/delegations", body)


@pytest.mark.parametrize(
    ("over", "why"),
    [
        ({"actions": ["db.read", "iam.modify"]}, "not allowed"),
        ({"actions": ["payments.refund", "made.up"]}, "not allowed"),
        ({"ceiling": "critical", "actions": ["db.read"]}, None),
        ({"lifetime_seconds": 86400}, "remaining"),
    ],
)
def test_widening_a_delegation_is_refused_with_the_reason(dbroker, issuers, over, why):
    admin = dbroker.admin()
    admin.put("profiles", "narrow-high", {"allowed_actions": ["db.read", "logs.read"], "ceiling": "high"})
    admin.put(
        "agents",
        "planner",
        {
            "owner": "platform-team",
            "profiles": ["demo", "narrow-high"],
            "identities": [
                {"issuer": issuers.spiffe.issuer, "subject": "spiffe://example.org/ns/agents/sa/summarizer"}
            ],
        },
    )
    planner = Session(dbroker, svid(issuers))
    task_id = planner("POST", "/v1/tasks", {"profile": "narrow-high", "purpose": "narrow"}).json()["task_id"]
    r = delegate(planner, task_id, **over)
    assert r.status_code == 403, r.text
    message = r.json()["error"]["message"]
    assert message.startswith("delegation refused") and (why is None or why in message)
    assert "ceiling" in message or "actions" in message or "lifetime" in message


def test_a_delegation_to_an_unknown_agent_or_to_itself_is_422(dbroker, issuers):
    planner, task_id = open_parent(dbroker, issuers)
    assert delegate(planner, task_id, agent="nobody").status_code == 422
    assert delegate(planner, task_id, agent="planner").status_code == 422


def test_the_sub_agent_gets_a_token_for_its_sub_task_only_with_a_nested_act_chain(dbroker, issuers):
    planner, task_id = open_parent(dbroker, issuers, person=True)
    child = delegate(planner, task_id)
    assert child.status_code == 201, child.text
    child_id = child.json()["task_id"]
    assert child.json()["parent_task_id"] == task_id and child.json()["agent"] == "worker"
    assert child.json()["acting_for"]["subject"] == "alice"  # the verified person carries down
    # another agent cannot claim the delegation
    refused = exchange(dbroker, svid(issuers), delegation=child_id)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    worker = Session(dbroker, worker_identity(issuers), delegation=child_id)
    assert worker.claims["task"] == child_id and worker.claims["sub"] == "alice"
    assert worker.claims["act"] == {"sub": "agent:worker", "act": {"sub": "agent:planner"}}
    # the sub-task is decided under the narrowed scope
    ok = worker("POST", f"/v1/tasks/{child_id}/credentials", {"action": "db.read", "resource": "demo-data"})
    assert ok.status_code == 200, ok.text
    beyond = worker("POST", f"/v1/tasks/{child_id}/credentials", {"action": "logs.read", "resource": "demo-data"})
    assert beyond.status_code == 403
    # the token works on its task only
    assert worker("POST", "/v1/tasks", {"profile": "demo", "purpose": "escape"}).status_code == 403
    assert worker("GET", f"/v1/tasks/{task_id}").status_code == 403
    # the chain view shows the tree
    view = dbroker.admin().task(task_id)
    assert [d["task_id"] for d in view["delegations"]] == [child_id]
    assert view["delegations"][0]["actions"] == ["db.read"]


def test_a_sub_tasks_token_stops_working_the_moment_its_task_ends(dbroker, issuers):
    planner, task_id = open_parent(dbroker, issuers)
    child_id = delegate(planner, task_id).json()["task_id"]
    worker = Session(dbroker, worker_identity(issuers), delegation=child_id)
    assert worker("GET", f"/v1/tasks/{child_id}").status_code == 200
    assert planner("DELETE", f"/v1/tasks/{task_id}").status_code == 200  # the parent ends: cascade
    r = worker("GET", f"/v1/tasks/{child_id}")
    assert r.status_code == 401 and "ended" in r.json()["error"]["message"]


def test_parent_escalation_kills_every_descendants_grants_at_openbao_and_postgresql(dbroker, issuers, pg_server):
    planner, task_id = open_parent(dbroker, issuers)
    child_id = delegate(planner, task_id, actions=["db.read"]).json()["task_id"]
    worker = Session(dbroker, worker_identity(issuers), delegation=child_id)
    grandchild = worker(
        "POST",
        f"/v1/tasks/{child_id}/delegations",
        {"agent": "planner", "actions": ["db.read"], "ceiling": "low", "purpose": "sub-sub"},
    )
    assert grandchild.status_code == 201, grandchild.text
    grandchild_id = grandchild.json()["task_id"]
    bao = worker("POST", f"/v1/tasks/{child_id}/credentials", {"action": "db.read", "resource": "demo-data"})
    pg = worker("POST", f"/v1/tasks/{child_id}/credentials", {"action": "db.read", "resource": "demo-db"})
    assert bao.status_code == pg.status_code == 200, (bao.text, pg.text)
    planner2 = Session(dbroker, svid(issuers), delegation=grandchild_id)
    deep = planner2("POST", f"/v1/tasks/{grandchild_id}/credentials", {"action": "db.read", "resource": "demo-data"})
    assert deep.status_code == 200, deep.text
    pg_cred = pg.json()["credential"]
    conninfo = pg_server.conninfo(user=pg_cred["username"], password=pg_cred["password"])
    psycopg.connect(conninfo).close()  # alive before
    # one escalation of the root (admin revoke) and the whole tree is dead
    dbroker.admin().revoke_task(task_id, "incident drill")
    assert token_is_dead(dbroker.openbao.address, bao.json()["credential"]["token"])
    assert token_is_dead(dbroker.openbao.address, deep.json()["credential"]["token"])
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(conninfo)
    for tid in (child_id, grandchild_id):
        assert dbroker.admin().task(tid)["task"]["state"] == "quarantined"


def test_a_descendants_escalation_is_reported_on_and_escalates_the_parent(dbroker, issuers):
    planner, task_id = open_parent(dbroker, issuers)
    mine = planner("POST", f"/v1/tasks/{task_id}/credentials", {"action": "db.read", "resource": "demo-data"})
    assert mine.status_code == 200
    child_id = delegate(planner, task_id, actions=["secrets.read", "data.export"], ceiling="high").json()["task_id"]
    worker = Session(dbroker, worker_identity(issuers), delegation=child_id)
    assert (
        worker(
            "POST", f"/v1/tasks/{child_id}/credentials", {"action": "secrets.read", "resource": "demo-secrets"}
        ).status_code
        == 200
    )
    escalated = worker("POST", f"/v1/tasks/{child_id}/credentials", {"action": "data.export", "resource": "demo-data"})
    assert escalated.status_code == 403 and escalated.json()["error"]["code"] == "task_escalated"
    parent = dbroker.admin().task(task_id)
    assert parent["task"]["state"] == "quarantined"
    kinds = [s.get("kind") for s in parent["chain"]["steps"]]
    assert "delegation" in kinds and "delegate_escalated" in kinds
    assert token_is_dead(dbroker.openbao.address, mine.json()["credential"]["token"])
    audit = dbroker.admin().audit(task_id=task_id, kind="task.escalated")
    assert audit and audit[-1]["data"]["detector"] == "delegate_escalated"
    with pytest.raises(hvac.exceptions.Forbidden):
        hvac.Client(url=dbroker.openbao.address, token=mine.json()["credential"]["token"]).auth.token.lookup_self()


def test_a_live_broker_token_in_a_delegation_purpose_is_a_leak_and_never_stored(dbroker, issuers):
    planner, holder = open_parent(dbroker, issuers)
    grant = planner("POST", f"/v1/tasks/{holder}/credentials", {"action": "db.read", "resource": "demo-data"})
    assert grant.status_code == 200, grant.text
    token = grant.json()["credential"]["token"]
    other = planner("POST", "/v1/tasks", {"profile": "demo", "purpose": "hand work over"}).json()["task_id"]
    r = delegate(planner, other, purpose=f"use {token} for the numbers")
    assert r.status_code == 201, r.text
    assert r.json()["leaks"] == [{"action": "task_escalated"}] and token not in r.text
    admin = dbroker.admin()
    assert admin.task(holder)["task"]["state"] == "quarantined"
    child = admin.task(r.json()["task_id"])["task"]
    assert token not in str(child) and child["purpose"].startswith("use ")
    assert token not in str(admin.audit())
