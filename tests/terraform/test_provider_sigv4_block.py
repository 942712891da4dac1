"""The provider's ``http`` block carries an AWS SigV4 ``http_api`` resource: the attributes go to
the broker as the API takes them, and the broker's answer (with its derived ``aws`` settings)
reads back as the same state (no drift)."""

from __future__ import annotations

from terraform.provider.resources.resource import HTTP, ResourceResource

SIGV4 = {
    "base_url": "http://127.0.0.1:4566/reports",
    "auth": "sigv4",
    "source": "aws_sts",
    "role_arn": "arn:aws:iam::123456789012:role/reports-reader",
    "region": "eu-west-1",
    "service": "s3",
    "sts_endpoint_url": "http://127.0.0.1:4566",
    "resources": ["arn:aws:s3:::reports/*"],
    "rules": ["GET /* storage.read"],
}


def _state() -> dict:
    return {
        "name": "reports",
        "kind": "http_api",
        "sensitivity": "internal",
        "environment": "dev",
        "external": False,
        "description": "",
        "vault": None,
        "aws": None,
        "http": {a.name: SIGV4.get(a.name) for a in HTTP},
    }


def test_the_http_block_sends_the_sigv4_settings_and_reads_them_back_without_drift():
    resource = ResourceResource.__new__(ResourceResource)  # the mapping needs no provider connection
    state = _state()
    body = resource.to_body(state)
    assert body["http"] == SIGV4
    echoed = {**body, "name": "reports", "http": {**body["http"], "aws": {"role_name": "reports-reader"}}}
    back = resource.from_body(echoed, state)
    assert back["http"] == state["http"]
