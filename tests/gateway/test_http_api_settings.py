"""``http_api`` resources are validated when registered: the upstream URL policy, the credential
placement and source (checked at OpenBao), and the request rules (actions from the catalog)."""

from __future__ import annotations

import pytest

from broker.backends.http_api import Rule, parse_rule
from broker.errors import InvalidInput
from broker.netpolicy import check_outbound_url

pytestmark = pytest.mark.openbao

KV_PATH = "gateway/crm"  # written by this directory's conftest


def body(upstream_url: str, **http: object) -> dict:
    base = {
        "base_url": upstream_url,
        "auth": "bearer",
        "source": "vault_kv",
        "mount": "secret",
        "path": KV_PATH,
        "field": "api_key",
        "rules": ["GET /v1/customers/* db.read"],
    }
    base.update(http)
    return {"kind": "http_api", "sensitivity": "internal", "environment": "dev", "http": base}


@pytest.mark.parametrize(
    ("override", "field", "message"),
    [
        ({"base_url": "https://crm.example.com/api"}, "http.base_url", "neither loopback nor in gateway.allowed_hosts"),
        ({"base_url": "http://user:pw@127.0.0.1:1/api"}, "http.base_url", "must not carry user info"),
        ({"base_url": "ftp://127.0.0.1/api"}, "http.base_url", "must be an http:// or https:// URL"),
        ({"base_url": "http://127.0.0.1:1/api?x=1"}, "http.base_url", "must not carry a query"),
        ({"auth": "cookie"}, "http.auth", "is not one of"),
        ({"auth": "header"}, "http.auth_name", "required for auth header"),
        ({"auth": "basic"}, "http.username", "required for auth basic"),
        (
            {"rules": ["GET /v1/customers/* crm.read"]},
            "http.rules[0]",
            'action "crm.read" is not in the action catalog',
        ),
        ({"rules": ["FETCH /x db.read"]}, "http.rules[0]", 'method "FETCH"'),
        ({"rules": ["GET /v1/../x db.read"]}, "http.rules[0]", "must be absolute, with plain segments"),
        ({"rules": []}, "http.rules", "required"),
        ({"field": "nope"}, "http.field", 'has no string field "nope"'),
        ({"path": "gateway/missing"}, "http.path", "no secret the broker can read"),
        ({"source": "vault_token", "policies": ["no-such-policy"]}, "http.policies", ""),
        ({"source": "env"}, "http.source", "one of"),
        ({"extra": 1}, "http.extra", "unknown setting"),
    ],
)
def test_http_api_resource_is_refused_naming_the_field(api, upstream, override, field, message):
    resp = api.admin("PUT", "/v1/admin/resources/bad-api", body(upstream.base_url, **override))
    assert resp.status_code == 422, resp.text
    err = resp.json()["error"]
    assert err.get("field") == field or field in err["message"], err
    assert message in err["message"]


def test_http_api_resource_round_trips_through_the_admin_api(api, upstream):
    resp = api.admin(
        "PUT", "/v1/admin/resources/good-api", body(upstream.base_url + "/", auth="query", auth_name="api_key")
    )
    assert resp.status_code in (200, 201), resp.text
    got = api.admin("GET", "/v1/admin/resources/good-api").json()
    assert got["http"]["base_url"] == upstream.base_url and got["http"]["kv_version"] == 2
    assert api.admin("DELETE", "/v1/admin/resources/good-api").status_code in (200, 204)


def test_allow_listed_host_must_use_https_and_loopback_may_use_http():
    assert check_outbound_url("u", "https://crm.example.com/api/", ["crm.example.com"]) == "https://crm.example.com/api"
    assert check_outbound_url("u", "http://localhost:8080") == "http://localhost:8080"
    assert check_outbound_url("u", "http://[::1]:8080/x") == "http://[::1]:8080/x"
    with pytest.raises(InvalidInput, match="over https"):
        check_outbound_url("u", "http://crm.example.com/api", ["crm.example.com"])
    with pytest.raises(InvalidInput, match="neither loopback"):
        check_outbound_url("u", "https://127.0.0.1.nip.io/api")


@pytest.mark.parametrize(
    ("rule", "method", "path", "matches"),
    [
        ("GET /v1/customers/* db.read", "GET", "/v1/customers/42", True),
        ("GET /v1/customers/* db.read", "GET", "/v1/customers/42/orders", False),
        ("GET /v1/customers/* db.read", "POST", "/v1/customers/42", False),
        ("GET /v1/customers/* db.read", "GET", "/v1/customers", False),
        ("* /v1/admin/** db.read", "DELETE", "/v1/admin/a/b/c", True),
        ("* /v1/admin/** db.read", "GET", "/v1/admin", True),
        ("POST /v1/charges payments.charge", "POST", "/v1/charges", True),
        ("POST /v1/charges payments.charge", "POST", "/v1/charges/x", False),
    ],
)
def test_request_rule_matching(rule, method, path, matches):
    parsed = parse_rule("r", rule)
    assert isinstance(parsed, Rule) and parsed.matches(method, path) is matches
