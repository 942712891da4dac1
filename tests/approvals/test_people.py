"""People are identities, not strings (issue 17, item 1): real broker, real OpenBao, real SQLite,
and a local OIDC issuer of people serving its JWKS over HTTP on loopback.

The red team's finding: a request body naming the owner with a Unicode hyphen (U+2010) approved the
owner's own agent's critical ``payments.charge``. Now there is no name to type: the approver is the
authenticated subject of the request, compared with the agent's bound owner.
"""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select

from broker.store import tables as t
from broker.store.repo import utcnow
from tests.approvals.conftest import ACTOR_AUDIENCE, PEOPLE_ISSUER

pytestmark = pytest.mark.openbao


def audit_of(api, kind: str, **params) -> list[dict]:
    resp = api.admin("GET", "/v1/audit", params={"kind": kind, "limit": 10000, **params})
    assert resp.status_code == 200, resp.text
    return resp.json()["items"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_the_homoglyph_owner_cannot_approve_because_there_is_no_name_to_type(api):
    task_id = api.open_task()
    approval_id = api.step_up(task_id)
    red_team = {"approver": "demo\u2010owner", "reason": "approved"}
    # the exact body the red team sent, with the admin token, with an approver's token, with no token
    assert api.admin("POST", f"/v1/approvals/{approval_id}/approve", red_team).status_code in (403, 422)
    resp = api.as_person("alice", "POST", f"/v1/approvals/{approval_id}/approve", red_team)
    assert resp.status_code == 422 and resp.json()["error"]["field"] == "approver"
    assert api.http.post(f"/v1/approvals/{approval_id}/approve", json=red_team).status_code == 401
    # and the owner, authenticated as themselves, is the owner whatever their name looks like
    owner = api.approve(approval_id, "demo-owner")
    assert owner.status_code == 403 and owner.json()["error"]["code"] == "four_eyes_required"
    view = api.admin("GET", f"/v1/approvals/{approval_id}").json()
    assert view["state"] == "pending" and view["votes"] == [] and view["decided_by"] is None
    assert api.credential(task_id, "payments.charge", "prod-payments", approval_id).status_code == 202
    [refused] = [e for e in audit_of(api, "approval.vote_refused", task_id=task_id)]
    assert refused["actor"] == "person:demo-owner" and refused["data"]["subject"]["via"] == "person_token"


def test_an_agent_token_is_refused_on_every_people_route_and_audited(api, approvals_broker):
    task_id = api.open_task()
    approval_id = api.step_up(task_id)
    before = len(audit_of(api, "auth.failed"))
    for method, path, body in (
        ("POST", f"/v1/approvals/{approval_id}/approve", {"reason": "mine"}),
        ("POST", f"/v1/approvals/{approval_id}/deny", {"reason": "mine"}),
        ("GET", "/v1/approvals", None),
        ("GET", "/v1/audit", None),
        ("PUT", "/v1/admin/people/sneaky", {"roles": ["approver"]}),
    ):
        resp = api.agent(method, path, body)
        assert resp.status_code == 401, (path, resp.text)
    failed = audit_of(api, "auth.failed")[before:]
    assert len(failed) == 5 and all(e["data"]["surface"] == "people" for e in failed)
    assert api.admin("GET", f"/v1/approvals/{approval_id}").json()["state"] == "pending"
    assert api.admin("GET", "/v1/admin/people/sneaky").status_code == 404


def test_an_approver_signed_in_with_an_id_token_approves_and_the_agent_collects_once(api, people):
    task_id = api.open_task()
    approval_id = api.step_up(task_id)
    resp = api.http.post(
        f"/v1/approvals/{approval_id}/approve", json={"reason": "invoice 7 checked"}, headers=bearer(people.id_token())
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["state"] == "approved" and body["decided_by"] == "person:olga"
    assert body["decided_by_subject"] == {
        "via": "oidc",
        "issuer": PEOPLE_ISSUER,
        "subject": "olga-0001",
        "person": "olga",
    }
    first = api.credential(task_id, "payments.charge", "prod-payments", approval_id)
    assert first.status_code == 200, first.text
    assert first.json()["credential"]["grant_id"]
    second = api.credential(task_id, "payments.charge", "prod-payments", approval_id)
    assert second.status_code == 403 and second.json()["error"]["code"] == "approval_refused"
    [approved] = audit_of(api, "approval.approved", task_id=task_id)
    assert approved["actor"] == "person:olga" and approved["data"]["subject"]["issuer"] == PEOPLE_ISSUER


def test_id_tokens_sign_in_only_with_the_sign_in_audience_a_known_subject_and_a_valid_signature(api, people):
    me = api.http.get("/v1/people/me", headers=bearer(people.id_token()))
    assert me.status_code == 200 and me.json()["actor"] == "person:olga" and me.json()["roles"] == ["approver"]
    # an actor token (the audience handed to agents at the token exchange) never signs anyone in
    actor = api.http.get("/v1/people/me", headers=bearer(people.id_token(audience=ACTOR_AUDIENCE)))
    assert actor.status_code == 401 and "audience" in actor.json()["error"]["message"]
    stranger = api.http.get("/v1/people/me", headers=bearer(people.id_token(subject="mallory-9")))
    assert stranger.status_code == 401 and "not registered as a person" in stranger.json()["error"]["message"]
    expired = people.id_token(exp=int(utcnow().timestamp()) - 600)
    assert api.http.get("/v1/people/me", headers=bearer(expired)).status_code == 401
    good = people.id_token()
    forged = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    assert api.http.get("/v1/people/me", headers=bearer(forged)).status_code == 401


def test_the_owner_bound_by_issuer_and_subject_is_refused_when_signed_in_with_that_identity(api, people):
    agent = {
        "owner": "Olga's team",
        "profiles": ["demo"],
        "identities": [{"issuer": "nhi-broker-dev", "subject": "olga-agent"}],
        "owner_identity": {"issuer": PEOPLE_ISSUER, "subject": "olga-0001"},
    }
    dev_issuer = api.admin("GET", "/v1/admin/agents/demo-agent").json()["identities"][0]["issuer"]
    agent["identities"][0]["issuer"] = dev_issuer
    assert api.admin("PUT", "/v1/admin/agents/olga-agent", agent).status_code in (200, 201)
    shown = api.admin("GET", "/v1/admin/agents/olga-agent").json()
    assert shown["owner_identity"] == {"issuer": PEOPLE_ISSUER, "subject": "olga-0001"}
    task_id = api.open_task(subject="olga-agent")
    resp = api.credential(task_id, "payments.charge", "prod-payments", subject="olga-agent")
    assert resp.status_code == 202, resp.text
    approval_id = resp.json()["approval_id"]
    own = api.http.post(
        f"/v1/approvals/{approval_id}/approve", json={"reason": "mine"}, headers=bearer(people.id_token())
    )
    assert own.status_code == 403 and own.json()["error"]["code"] == "four_eyes_required"
    assert api.approve(approval_id, "bob").status_code == 200


def test_an_agent_without_a_bound_owner_has_nothing_approvable(api):
    demo = api.admin("GET", "/v1/admin/agents/demo-agent").json()
    unbound = {
        "owner": "someone",
        "profiles": ["demo"],
        "identities": [{"issuer": demo["identities"][0]["issuer"], "subject": "unbound-agent"}],
    }
    assert api.admin("PUT", "/v1/admin/agents/unbound-agent", unbound).status_code in (200, 201)
    task_id = api.open_task(subject="unbound-agent")
    resp = api.credential(task_id, "payments.charge", "prod-payments", subject="unbound-agent")
    approval_id = resp.json()["approval_id"]
    refused = api.approve(approval_id, "alice")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "owner_unbound"
    # saying no needs no owner binding
    assert api.deny(approval_id, "alice").status_code == 200


def test_an_auditor_reads_everything_and_changes_nothing(api):
    task_id = api.open_task()
    approval_id = api.step_up(task_id)
    assert api.credential(task_id, "db.write", "demo-data").status_code == 200
    [review] = api.admin("GET", "/v1/reviews", params={"task_id": task_id}).json()["items"]
    decision_id = review["decision_id"]
    for path in (
        "/v1/approvals",
        f"/v1/approvals/{approval_id}",
        "/v1/reviews",
        f"/v1/reviews/{review['review_id']}",
        f"/v1/decisions/{decision_id}",
        "/v1/audit",
        f"/v1/admin/tasks/{task_id}",
        "/v1/admin/agents",
        "/v1/admin/people",
        "/v1/admin/people/alice/tokens",
        "/v1/admin/policies",
    ):
        resp = api.as_person("audra", "GET", path)
        assert resp.status_code == 200, (path, resp.text)
    before = len(audit_of(api, "auth.forbidden"))
    for method, path, body in (
        ("POST", f"/v1/approvals/{approval_id}/approve", {"reason": "looks fine"}),
        ("POST", f"/v1/approvals/{approval_id}/deny", {"reason": "no"}),
        ("POST", f"/v1/reviews/{review['review_id']}/fine", {"reason": "ok"}),
        ("POST", f"/v1/reviews/{review['review_id']}/flag", {"reason": "bad"}),
        ("PUT", "/v1/admin/people/audra", {"roles": ["auditor", "approver"]}),
        ("POST", "/v1/admin/people/audra/tokens", {"ttl_seconds": 3600}),
        ("POST", f"/v1/admin/tasks/{task_id}/revoke", {"reason": "curious"}),
        ("DELETE", "/v1/admin/agents/demo-agent", None),
    ):
        resp = api.as_person("audra", method, path, body)
        assert resp.status_code == 403 and resp.json()["error"]["code"] == "role_required", (path, resp.text)
    assert len(audit_of(api, "auth.forbidden")[before:]) == 8
    assert api.admin("GET", f"/v1/approvals/{approval_id}").json()["state"] == "pending"
    assert api.admin("GET", f"/v1/reviews/{review['review_id']}").json()["state"] == "pending"
    assert api.admin("GET", "/v1/admin/people/audra").json()["roles"] == ["auditor"]
    assert api.admin("GET", f"/v1/admin/tasks/{task_id}").json()["task"]["state"] == "active"
    assert api.admin("GET", "/v1/admin/agents/demo-agent").status_code == 200


def test_a_revoked_or_expired_person_token_is_401_and_a_wrong_secret_never_passes(api, approvals_broker):
    made = api.admin("POST", "/v1/admin/people/bob/tokens", {"ttl_seconds": 3600, "description": "laptop"})
    assert made.status_code == 201 and made.headers["cache-control"] == "no-store"
    token, token_id = made.json()["token"], made.json()["token_id"]
    assert api.http.get("/v1/people/me", headers=bearer(token)).json()["actor"] == "person:bob"
    # only a salted HMAC is stored; the list never shows a secret
    with approvals_broker.container.store.read() as conn:
        row = conn.execute(select(t.person_tokens).where(t.person_tokens.c.token_id == token_id)).one()
    secret = token[len("nbp_") + 24 + 1 :]  # nbp_<24 hex id>_<secret>
    assert secret not in str(dict(row._mapping)) and len(row.secret_hmac) == 64
    listed = api.admin("GET", "/v1/admin/people/bob/tokens").json()["items"]
    assert token_id in [x["token_id"] for x in listed] and secret not in str(listed)
    wrong = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert api.http.get("/v1/people/me", headers=bearer(wrong)).status_code == 401

    revoked = api.admin("DELETE", f"/v1/admin/people/bob/tokens/{token_id}")
    assert revoked.status_code == 200 and revoked.json()["state"] == "revoked"
    resp = api.http.get("/v1/people/me", headers=bearer(token))
    assert resp.status_code == 401 and "revoked" in resp.json()["error"]["message"]

    short = api.admin("POST", "/v1/admin/people/bob/tokens", {"ttl_seconds": 60}).json()["token"]
    people = approvals_broker.container.people
    people.clock = lambda: utcnow() + timedelta(seconds=61)
    try:
        resp = api.http.get("/v1/people/me", headers=bearer(short))
        assert resp.status_code == 401 and "expired" in resp.json()["error"]["message"]
    finally:
        people.clock = utcnow
    reasons = [e["data"]["reason"] for e in audit_of(api, "auth.failed")]
    assert any("revoked" in r for r in reasons) and any("expired" in r for r in reasons)
    assert not any(
        token in str(e) or secret in str(e)
        for e in api.admin("GET", "/v1/audit", params={"limit": 10000}).json()["items"]
    )
    too_long = api.admin("POST", "/v1/admin/people/bob/tokens", {"ttl_seconds": 400 * 86400})
    assert too_long.status_code == 422 and too_long.json()["error"]["field"] == "ttl_seconds"


def test_a_disabled_or_deleted_person_is_401(api):
    assert api.admin("PUT", "/v1/admin/people/temp", {"roles": ["approver"]}).status_code == 201
    token = api.admin("POST", "/v1/admin/people/temp/tokens", {"ttl_seconds": 3600}).json()["token"]
    assert api.http.get("/v1/people/me", headers=bearer(token)).status_code == 200
    assert api.admin("PUT", "/v1/admin/people/temp", {"roles": ["approver"], "disabled": True}).status_code == 200
    assert api.http.get("/v1/people/me", headers=bearer(token)).status_code == 401
    assert api.admin("DELETE", "/v1/admin/people/temp").status_code == 204
    assert api.http.get("/v1/people/me", headers=bearer(token)).status_code == 401


def test_every_use_of_the_admin_token_is_audited_as_admin_token(api):
    before = len(audit_of(api, "admin_token.used"))
    assert api.admin("GET", "/v1/admin/people").status_code == 200
    assert api.admin("PUT", "/v1/admin/people/carol", {"roles": ["reviewer"]}).status_code in (200, 201)
    used = audit_of(api, "admin_token.used")[before:]
    sources = [e["data"]["source"] for e in used]
    assert "GET /v1/admin/people" in sources and "PUT /v1/admin/people/carol" in sources
    assert all(e["actor"] == "admin-token" for e in used)
    [changed] = [e for e in audit_of(api, "person.changed") if e["data"]["person"] == "carol"][-1:]
    assert changed["actor"] == "admin-token" and changed["data"]["by"]["via"] == "admin_token"
    me = api.admin("GET", "/v1/people/me").json()
    assert me["actor"] == "admin-token" and me["person"] is None and "approver" not in me["roles"]


def test_an_admin_person_administers_people_under_their_own_name(api):
    resp = api.as_person("adam", "PUT", "/v1/admin/people/erin", {"roles": ["auditor"]})
    assert resp.status_code in (200, 201), resp.text
    [changed] = [e for e in audit_of(api, "person.changed") if e["data"]["person"] == "erin"][-1:]
    assert changed["actor"] == "person:adam" and changed["data"]["by"]["via"] == "person_token"
    # an admin is not an approver by virtue of being an admin
    task_id = api.open_task()
    approval_id = api.step_up(task_id)
    assert api.approve(approval_id, "adam").json()["error"]["code"] == "role_required"


def test_person_and_owner_identity_inputs_are_validated_with_the_field_named(api):
    bad = api.admin("PUT", "/v1/admin/people/zed", {"roles": ["superuser"]})
    assert bad.status_code == 422 and "roles" in bad.json()["error"]["field"]
    bad = api.admin(
        "PUT", "/v1/admin/people/zed", {"identities": [{"issuer": "https://elsewhere.test", "subject": "z"}]}
    )
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "identities[0].issuer"
    olgas = {"identities": [{"issuer": PEOPLE_ISSUER, "subject": "olga-0001"}]}
    taken = api.admin("PUT", "/v1/admin/people/zed", olgas)
    assert taken.status_code == 422 and "olga" in taken.json()["error"]["message"]
    assert api.admin("PUT", "/v1/admin/people/Demo\u2010Owner", {"roles": []}).status_code == 422
    demo = api.admin("GET", "/v1/admin/agents/demo-agent").json()
    body = {k: demo[k] for k in ("owner", "trust_level", "description", "profiles")}
    body["identities"] = [{"issuer": i["issuer"], "subject": i["subject"]} for i in demo["identities"]]
    for owner in (
        {"person": "demo-owner", "issuer": PEOPLE_ISSUER, "subject": "x"},
        {"issuer": PEOPLE_ISSUER},
        {"person": "Demo\u2010Owner"},
    ):
        resp = api.admin("PUT", "/v1/admin/agents/demo-agent", {**body, "owner_identity": owner})
        assert resp.status_code == 422 and "owner_identity" in resp.json()["error"]["field"], resp.text
    for owner, field in (
        ({"person": "ghost"}, "owner_identity.person"),
        ({"issuer": "https://elsewhere.test", "subject": "x"}, "owner_identity.issuer"),
    ):
        resp = api.admin("PUT", "/v1/admin/agents/demo-agent", {**body, "owner_identity": owner})
        assert resp.status_code == 422 and resp.json()["error"]["field"] == field, resp.text
    assert api.admin("GET", "/v1/admin/agents/demo-agent").json()["owner_identity"] == {"person": "demo-owner"}


def test_no_route_answers_a_people_request_without_credentials(approvals_broker):
    with httpx.Client(base_url=approvals_broker.url, timeout=15) as http:
        for path in ("/v1/approvals", "/v1/reviews", "/v1/audit", "/v1/admin/people", "/v1/people/me"):
            assert http.get(path).status_code == 401
            assert http.get(path, headers={"Authorization": "Basic YWxpY2U6eA=="}).status_code == 401
            assert http.get(path, headers=bearer("nbp_" + "0" * 24 + "_" + "x" * 43)).status_code == 401


def test_the_owner_may_deny_their_agents_request(api):
    task_id = api.open_task()
    approval_id = api.step_up(task_id)
    denied = api.deny(approval_id, "demo-owner", "I did not ask for this")
    assert denied.status_code == 200 and denied.json()["decided_by"] == "person:demo-owner"
    assert api.credential(task_id, "payments.charge", "prod-payments", approval_id).status_code == 403


def test_an_identity_that_is_also_an_agent_never_signs_in_as_a_person(api, people):
    pat = {"roles": ["approver"], "identities": [{"issuer": PEOPLE_ISSUER, "subject": "pat-1"}]}
    assert api.admin("PUT", "/v1/admin/people/pat", pat).status_code == 201
    assert api.http.get("/v1/people/me", headers=bearer(people.id_token(subject="pat-1"))).status_code == 200
    # the IdP also issues workload identities (it is in `issuers` too), and an admin binds the same
    # (issuer, subject) to an agent: that identity is an agent now
    agent = {
        "owner": "x",
        "profiles": ["demo"],
        "identities": [{"issuer": PEOPLE_ISSUER, "subject": "pat-1"}],
        "owner_identity": {"person": "demo-owner"},
    }
    assert api.admin("PUT", "/v1/admin/agents/pat-agent", agent).status_code == 201
    try:
        task_id = api.open_task()
        approval_id = api.step_up(task_id)
        resp = api.http.post(
            f"/v1/approvals/{approval_id}/approve",
            json={"reason": "ok"},
            headers=bearer(people.id_token(subject="pat-1")),
        )
        assert resp.status_code == 401 and "bound to an agent" in resp.json()["error"]["message"]
        assert api.admin("GET", f"/v1/approvals/{approval_id}").json()["state"] == "pending"
    finally:
        assert api.admin("DELETE", "/v1/admin/agents/pat-agent").status_code == 204
