"""No 500 from an unbounded number (issue 12 §3): every integer is bounded at the schema, and a
validly signed token whose times are not dates is a 401 with an audit row."""

from __future__ import annotations

import time
import uuid

import httpx
import jwt
import pytest
from support.broker import ADMIN_TOKEN

pytestmark = pytest.mark.openbao
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.mark.parametrize(
    "query", ["after_seq=99999999999999999999999", "after_seq=-1", "limit=99999999999999999999", "after_seq=1e20"]
)
def test_audit_query_numbers_out_of_range_are_422(broker, query: str) -> None:
    r = httpx.get(f"{broker.url}/v1/audit?{query}", headers=ADMIN)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == query.split("=")[0]


@pytest.mark.parametrize("field", ["max_age_seconds", "overlap_seconds"])
@pytest.mark.parametrize("value", [1e20, 10**12, 2**63])
def test_managed_secret_intervals_out_of_range_are_422_and_listing_keeps_working(broker, field, value) -> None:
    body = {"kind": "kv_generated", "kv": {"mount": "secret", "path": "bounds/x"}, field: value}
    r = httpx.put(f"{broker.url}/v1/admin/managed-secrets/huge-interval", json=body, headers=ADMIN)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == field
    assert httpx.get(f"{broker.url}/v1/admin/managed-secrets", headers=ADMIN).status_code == 200
    assert httpx.get(f"{broker.url}/v1/admin/managed-secrets/huge-interval", headers=ADMIN).status_code == 404


def _claims(**over: object) -> dict[str, object]:
    now = int(time.time())
    c: dict[str, object] = {
        "iss": "urn:nhi-broker:dev",
        "aud": "nhi-broker",
        "sub": "demo-agent",
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
    }
    c.update(over)
    return c


@pytest.mark.parametrize(
    "over",
    [
        {"exp": 1e20},
        {"exp": 10**30},
        {"exp": float("nan")},
        {"iat": float("nan")},
        {"nbf": float("nan")},
        {"exp": float("inf")},
        {"exp": 253402300800},
    ],
)
def test_validly_signed_token_with_times_that_are_no_dates_is_401_and_audited(broker, over) -> None:
    kid = broker.dev_issuer.kid
    token = jwt.encode(_claims(**over), broker.dev_issuer._private_key, algorithm="EdDSA", headers={"kid": kid})
    r = httpx.post(
        f"{broker.url}/v1/tasks",
        json={"profile": "demo", "purpose": "time travel"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 401, r.text
    reason = r.json()["error"]["message"]
    assert "identity token" in reason
    # audited: the first failure of each reason is a row at once (repeats are counted, see test_limits)
    assert reason in {e["data"]["reason"] for e in broker.admin().audit(kind="auth.failed")}
