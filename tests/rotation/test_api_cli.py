"""Admin API and ``nhi-broker rotate`` against a running broker (real OpenBao, uvicorn on loopback)."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from support.broker import ADMIN_TOKEN, RunningBroker
from support.wait import HTTP_TIMEOUT
from typer.testing import CliRunner

from broker.cli.main import app

pytestmark = [pytest.mark.openbao]


def _admin(broker: RunningBroker) -> httpx.Client:
    return httpx.Client(base_url=broker.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=HTTP_TIMEOUT)


def test_managed_secret_is_registered_rotated_by_the_cli_and_never_shows_its_value(
    broker: RunningBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, path = f"web-{uuid.uuid4().hex[:8]}", f"apps/{uuid.uuid4().hex[:8]}/token"
    body = {
        "kind": "kv_generated",
        "kv": {"mount": "secret", "path": path},
        "settings": {"generator": {"format": "hex", "length": 64}},
        "max_age_seconds": 86400,
        "overlap_seconds": 600,
    }
    with _admin(broker) as http:
        assert http.put(f"/v1/admin/managed-secrets/{name}", json=body).status_code == 201
        assert http.put(f"/v1/admin/managed-secrets/{name}", json=body).status_code == 200
        assert http.get(f"/v1/admin/managed-secrets/{name}").json()["state"] == "pending"
        monkeypatch.setenv("NHI_BROKER_ADDR", broker.url)
        monkeypatch.setenv("NHI_BROKER_ADMIN_TOKEN", ADMIN_TOKEN)
        out = CliRunner().invoke(app, ["rotate", name, "--json"])
        assert out.exit_code == 0, out.output
        result = json.loads(out.output[out.output.index("{\n") :])  # the in-process broker logs to stdout too
        assert result["outcome"] == "rotated" and result["kv_version"] == 1
        with broker.bao().client() as c:
            value = c.adapter.get(f"/v1/secret/data/{path}")["data"]["data"]["value"]
        view = http.get(f"/v1/admin/managed-secrets/{name}")
        assert view.json()["state"] == "active"
        assert view.json()["fingerprints"]["current"] == [broker.container.fingerprint(value)]
        assert broker.container.rotation.match_fingerprint(broker.container.fingerprint(value)) == name
        leak = http.post(f"/v1/admin/managed-secrets/{name}/rotate", json={"reason": "leak"})
        assert leak.status_code == 200 and leak.json()["retired"] is True
        audit = http.get("/v1/audit", params={"limit": 10000}).text
        everything = out.output + view.text + leak.text + audit
        assert value not in everything
        assert http.delete(f"/v1/admin/managed-secrets/{name}").status_code == 204
        assert http.get(f"/v1/admin/managed-secrets/{name}").status_code == 404


def test_admin_api_refuses_bad_input_unknown_names_and_missing_token(broker: RunningBroker) -> None:
    with _admin(broker) as http:
        bad = http.put("/v1/admin/managed-secrets/x1", json={"kind": "ssh_key", "settings": {}})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "kind"
        bad = http.put(
            "/v1/admin/managed-secrets/x1",
            json={
                "kind": "kv_generated",
                "kv": {"mount": "secret", "path": "a"},
                "settings": {"generator": {"format": "hex", "length": 3}},
            },
        )
        assert bad.status_code == 422 and "settings.generator.length" in bad.json()["error"]["message"]
        assert http.post("/v1/admin/managed-secrets/nope/rotate").status_code == 404
    assert httpx.get(f"{broker.url}/v1/admin/managed-secrets", timeout=HTTP_TIMEOUT).status_code == 401


def test_cli_rotate_exits_non_zero_with_the_message_when_the_secret_is_unknown(
    broker: RunningBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NHI_BROKER_ADDR", broker.url)
    monkeypatch.setenv("NHI_BROKER_ADMIN_TOKEN", ADMIN_TOKEN)
    out = CliRunner().invoke(app, ["rotate", "no-such-secret"])
    assert out.exit_code == 1 and 'managed secret "no-such-secret" does not exist' in out.output
