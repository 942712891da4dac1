"""Claim bindings compare types; control characters are refused naming the field; agent free
text is scanned like event text (issue 12 §3)."""

from __future__ import annotations

import json

import httpx
import pytest
from support.broker import ADMIN_TOKEN

from broker.services.authn import claim_matches

pytestmark = pytest.mark.openbao
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
DEV_ISS = "urn:nhi-broker:dev"


@pytest.mark.parametrize(
    ("value", "expected", "matches"),
    [
        ("main", "main", True),
        (None, "None", False),
        (True, "True", False),
        (False, "False", False),
        (123, "123", True),
        (1.0, "1.0", False),
        (["main"], "['main']", False),
        ({"a": 1}, "{'a': 1}", False),
        ("None", "None", True),
        ("main ", "main", False),
    ],
)
def test_claim_binding_compares_types(value, expected, matches) -> None:
    assert claim_matches(value, expected) is matches


def test_a_missing_claim_never_matches_a_binding_to_the_string_none(broker) -> None:
    broker.admin().put(
        "agents",
        "claim-bot",
        {
            "owner": "sec",
            "profiles": ["demo"],
            "identities": [{"issuer": DEV_ISS, "subject": "claim-bot", "claims": {"environment": "None"}}],
        },
    )

    def open_with(**claims) -> httpx.Response:
        token = broker.dev_issuer.mint("claim-bot", claims=claims)
        return httpx.post(
            f"{broker.url}/v1/tasks",
            json={"profile": "demo", "purpose": "claims"},
            headers={"Authorization": f"Bearer {token}"},
        )

    assert open_with().status_code == 401  # str(None) == "None" used to let this in
    assert open_with(environment=None).status_code == 401
    assert open_with(environment="None").status_code == 201


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("PUT", "/v1/admin/agents/ctl-bot", {"owner": "a\x00b"}, "owner"),
        ("PUT", "/v1/admin/agents/ctl-bot", {"owner": "sec", "description": "invoice\u202egnp.exe"}, "description"),
        (
            "PUT",
            "/v1/admin/agents/ctl-bot",
            {"owner": "sec", "identities": [{"issuer": DEV_ISS, "subject": "bot\x00"}]},
            "identities[0].subject",
        ),
        (
            "PUT",
            "/v1/admin/agents/ctl-bot",
            {"owner": "sec", "identities": [{"issuer": DEV_ISS, "subject": "bot", "claims": {"ref": "main\u2066"}}]},
            "identities[0].claims",
        ),
        ("PUT", "/v1/admin/agents/ctl-bot", {"owner": "line\nbreak"}, "owner"),
        ("PUT", "/v1/admin/profiles/ctl", {"allowed_actions": ["db.read\x1b[2J"]}, "allowed_actions"),
        (
            "PUT",
            "/v1/admin/managed-secrets/ctl",
            {"kind": "kv_generated", "kv": {"mount": "secret", "path": "a"}, "settings": {"field": "v\x00"}},
            "settings",
        ),
        (
            "PUT",
            "/v1/admin/scan-jobs/ctl",
            {"source": {"kind": "files", "path": "/tmp/a\x00b"}, "schedule": {"every_seconds": 60}},
            "source.files.path",
        ),
        ("POST", "/v1/admin/tasks/t/revoke", {"reason": "because\u202e"}, "reason"),
        ("GET", "/v1/audit?kind=task.opened%00", None, "kind"),
        ("GET", "/v1/audit?task_id=%E2%80%AEabc", None, "task_id"),
        ("GET", "/v1/admin/agents/demo-agent%00", None, "path"),
    ],
)
def test_control_and_bidi_characters_are_422_naming_the_field(broker, method, path, body, field) -> None:
    r = httpx.request(method, f"{broker.url}{path}", json=body, headers=ADMIN)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == field
    assert "U+" in r.json()["error"]["message"]


def test_agent_purpose_with_control_characters_is_422_but_line_breaks_are_free_text(broker) -> None:
    def open_(purpose: str) -> httpx.Response:
        return httpx.post(
            f"{broker.url}/v1/tasks",
            json={"profile": "demo", "purpose": purpose},
            headers={"Authorization": f"Bearer {broker.token()}"},
        )

    bad = open_("rotate keys\u202e")
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "purpose"
    assert open_("line one\nline two\ttabbed").status_code == 201


def test_event_text_may_hold_anything_it_is_scanned_not_stored(broker) -> None:
    agent = broker.agent()
    info = agent.open_task("demo", "odd bytes")
    body = agent.report_event(info["task_id"], "output", text="binary\x00junk \u202e reversed")
    assert body["findings"] == []


def test_a_live_broker_token_in_a_purpose_is_a_leak_and_never_stored(broker) -> None:
    agent = broker.agent()
    victim = agent.open_task("demo", "holds a token")
    token = agent.request_credential(victim["task_id"], "db.read", "demo-data").secret("token")
    r = httpx.post(
        f"{broker.url}/v1/tasks",
        json={"profile": "demo", "purpose": f"continue with {token} please"},
        headers={"Authorization": f"Bearer {broker.token()}"},
    )
    assert r.status_code == 201, r.text
    opened = r.json()
    assert opened["leaks"] == [{"action": "task_escalated"}]
    assert any(f["grant"] for f in opened["findings"]) and token not in r.text
    assert broker.admin().task(victim["task_id"])["task"]["state"] == "quarantined"
    stored = broker.admin().task(opened["task_id"])["task"]
    assert token not in json.dumps(stored) and stored["purpose"].startswith("continue with ")
    audit = json.dumps(broker.admin().audit())
    assert token not in audit
    assert any(e["data"].get("source") == "purpose" for e in broker.admin().audit(kind="finding.detected"))
