"""SSRF from admin-defined endpoints (issue 12 §3): every outbound URL goes through one policy."""

from __future__ import annotations

import json
import logging
import socket

import httpx
import pytest
from pydantic import ValidationError
from support.broker import ADMIN_TOKEN

from broker.chain.alerts import WebhookAlerter
from broker.config import Settings
from broker.errors import InvalidInput
from broker.logging import configure_logging
from broker.netpolicy import OutboundPolicy

from .conftest import resolves_non_global

STRICT = OutboundPolicy()
DEV = OutboundPolicy(allow_loopback=True)
VPC = OutboundPolicy.from_config(False, ["10.20.0.0/16"])

# (url, policy, accepted)
URLS = [
    ("https://s3.amazonaws.com", STRICT, True),
    ("https://iam.amazonaws.com:443/path", STRICT, True),
    ("http://s3.amazonaws.com", STRICT, False),  # plain http off loopback
    ("http://169.254.169.254/latest/meta-data/", DEV, False),
    ("https://169.254.169.254/", VPC, False),
    ("https://[fd00:ec2::254]/", STRICT, False),
    ("https://[::ffff:169.254.169.254]/", STRICT, False),
    ("https://2852039166/", STRICT, False),  # 169.254.169.254 as one decimal number
    ("https://0xA9FEA9FE/", STRICT, False),
    ("https://metadata.google.internal/", STRICT, False),
    ("gopher://127.0.0.1:6379/_INFO", DEV, False),
    ("file:///etc/passwd", DEV, False),
    ("ftp://example.com/", STRICT, False),
    ("https://ghp_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@github.com/org/repo.git", STRICT, False),
    ("https://user:secret@s3.example.com", STRICT, False),
    ("https://user@s3.example.com", STRICT, False),
    ("http://127.0.0.1:9000", STRICT, False),
    ("http://127.0.0.1:9000", DEV, True),
    ("http://127.1:9000", STRICT, False),
    ("http://0x7f.1:9000", STRICT, False),
    ("http://localhost:9000", STRICT, False),
    ("http://localhost:9000", DEV, True),
    ("https://[::1]/", STRICT, False),
    ("https://10.20.3.4/", STRICT, False),
    ("https://10.20.3.4/", VPC, True),
    ("https://10.21.3.4/", VPC, False),
    ("https://192.168.1.1/", STRICT, False),
    ("https://0.0.0.0/", DEV, False),
    ("https://s3 .example.com/", STRICT, False),
    ("https://s3.example.com/\x00", STRICT, False),
    ("https://", STRICT, False),
]


@pytest.mark.parametrize(("url", "policy", "accepted"), URLS)
def test_outbound_policy_accepts_only_safe_urls(url: str, policy: OutboundPolicy, accepted: bool) -> None:
    if accepted:
        assert policy.check_url(url, field="endpoint_url") == url
    else:
        with pytest.raises(InvalidInput, match=r"^endpoint_url: ") as err:
            policy.check_url(url, field="endpoint_url")
        assert "secret" not in err.value.message and "ghp_" not in err.value.message


def test_outbound_policy_lets_ssh_git_urls_name_a_plain_user_but_not_a_token() -> None:
    assert STRICT.check_url("ssh://git@github.com/org/repo.git", field="repo", schemes=("https", "ssh"))
    with pytest.raises(InvalidInput):
        STRICT.check_url("ssh://git:hunter2@github.com/org/repo.git", field="repo", schemes=("https", "ssh"))
    with pytest.raises(InvalidInput, match="scheme"):
        STRICT.check_url("ssh://git@github.com/org/repo.git", field="repo")  # ssh only where asked for


def test_outbound_policy_refuses_a_name_that_resolves_to_a_non_global_address() -> None:
    name = socket.gethostname()
    assert resolves_non_global(name), f"this test needs {name!r} to resolve to a private/loopback address"
    STRICT.check_url(f"https://{name}/", field="endpoint_url")  # the name alone looks fine
    with pytest.raises(InvalidInput, match=r"endpoint_url: .*not allowed"):
        STRICT.check_resolved(f"https://{name}/", field="endpoint_url")


def test_allow_networks_cannot_open_the_metadata_range() -> None:
    with pytest.raises(ValueError, match=r"outbound\.allow_networks"):
        OutboundPolicy.from_config(False, ["169.254.0.0/16"])
    with pytest.raises(ValueError, match=r"outbound\.allow_networks"):
        OutboundPolicy.from_config(False, ["0.0.0.0/0"])


@pytest.mark.parametrize("setting", ["alert_webhook_url", "approval_webhook_url"])
@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/hook",
        "https://hooks:tok@example.com/x",
        "gopher://example.com/",
        "http://127.0.0.1:9/hook",
    ],
)
def test_webhook_and_endpoint_settings_are_refused_at_start_up(setting: str, url: str) -> None:
    with pytest.raises(ValidationError, match=setting):
        Settings(dev_mode=False, admin_token="a" * 32, openbao={"token": "b" * 32}, **{setting: url})


def test_jwks_url_with_credentials_or_metadata_host_is_refused_at_start_up() -> None:
    for url in ("https://u:p@issuer.example.com/jwks", "https://169.254.169.254/jwks"):
        with pytest.raises(ValidationError, match=r"issuers\[0\].jwks_url"):
            Settings(
                dev_mode=True, issuers=[{"issuer": "https://issuer.example.com", "audiences": ["a"], "jwks_url": url}]
            )


def test_webhook_is_not_delivered_when_its_name_resolves_to_a_refused_address() -> None:
    name = socket.gethostname()
    assert resolves_non_global(name)
    alerter = WebhookAlerter(f"https://{name}:9/hook", policy=STRICT, attempts=1, backoff=0)
    try:
        with httpx.Client() as client:
            alerter._deliver(client, {"task_id": "t"})
        assert alerter.failed == 1 and alerter.sent == 0
    finally:
        alerter.close()


def _put_job(broker, name: str, source: dict) -> httpx.Response:
    return httpx.put(
        f"{broker.url}/v1/admin/scan-jobs/{name}",
        json={"source": source, "schedule": {"every_seconds": 300}},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )


@pytest.mark.openbao
@pytest.mark.parametrize(
    ("source", "field"),
    [
        ({"kind": "s3", "bucket": "logs", "endpoint_url": "http://169.254.169.254"}, "source.s3.endpoint_url"),
        ({"kind": "s3", "bucket": "logs", "endpoint_url": "gopher://127.0.0.1:6379/_x"}, "source.s3.endpoint_url"),
        ({"kind": "s3", "bucket": "logs", "endpoint_url": "file:///etc/passwd"}, "source.s3.endpoint_url"),
        (
            {"kind": "s3", "bucket": "logs", "endpoint_url": "https://AKIAX:s3cr3t-v4lue@s3.example.com"},
            "source.s3.endpoint_url",
        ),
        ({"kind": "s3", "bucket": "logs", "endpoint_url": "http://127.0.0.1:9000"}, "source.s3.endpoint_url"),
        (
            {"kind": "git", "repo": "https://ghp_s3cr3tT0kenValue0000000000000000000@github.com/o/r.git"},
            "source.git.repo",
        ),
        ({"kind": "git", "repo": "file:///etc"}, "source.git.repo"),
        ({"kind": "git", "repo": "https://10.0.0.5/o/r.git"}, "source.git.repo"),
    ],
)
def test_scan_job_with_a_refused_endpoint_is_422_and_nothing_is_stored(strict_broker, source, field) -> None:
    r = _put_job(strict_broker, "ssrf-probe", source)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == field
    assert "s3cr3t" not in r.text and "ghp_" not in r.text
    assert (
        httpx.get(
            f"{strict_broker.url}/v1/admin/scan-jobs/ssrf-probe", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        ).status_code
        == 404
    )
    audit = json.dumps(strict_broker.admin().audit())
    assert "s3cr3t" not in audit and "ghp_s3" not in audit


@pytest.mark.openbao
@pytest.mark.parametrize(
    "endpoint",
    [
        "http://169.254.169.254/",
        "gopher://127.0.0.1:1/",
        "file:///etc/passwd",
        "https://AKIAX:s3cr3t@iam.example.com",
        "LOOPBACK",
    ],
)
def test_iam_key_managed_secret_never_contacts_a_refused_endpoint(strict_broker, hostile, endpoint) -> None:
    url = hostile.url if endpoint == "LOOPBACK" else endpoint
    r = httpx.put(
        f"{strict_broker.url}/v1/admin/managed-secrets/ssrf-iam",
        json={
            "kind": "aws_iam_key",
            "kv": {"mount": "secret", "path": "ssrf/iam"},
            "settings": {"user": "bot", "endpoint_url": url},
        },
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == "settings.endpoint_url"
    assert hostile.hits == 0 and "s3cr3t" not in r.text


@pytest.mark.openbao
def test_iam_endpoint_answer_is_never_logged_or_echoed(broker, hostile, capfd, monkeypatch) -> None:
    """An allowed endpoint (loopback in dev) is called once, bounded; whatever it answers stays out
    of the API answer, the audit trail and the logs, even with debug logging on."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    configure_logging("json", "DEBUG")
    logging.basicConfig(level=logging.DEBUG, force=True)
    try:
        r = httpx.put(
            f"{broker.url}/v1/admin/managed-secrets/hostile-iam",
            json={
                "kind": "aws_iam_key",
                "kv": {"mount": "secret", "path": "hostile/iam"},
                "settings": {"user": "bot", "endpoint_url": hostile.url},
            },
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=30,
        )
    finally:
        logging.basicConfig(level=logging.WARNING, force=True)
        configure_logging("json", "INFO")
    assert r.status_code in (422, 502, 503), r.text
    assert hostile.hits >= 1
    out = capfd.readouterr()
    for text in (r.text, out.out, out.err, json.dumps(broker.admin().audit())):
        assert "BODY-MARKER-7f3a9c" not in text and "AKIAHOSTILEBODY0001" not in text


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://169.254.169.254",
        "https://AKIAX:s3cr3t@sts.example.com",
        "gopher://127.0.0.1:1/",
        "https://[fd00:ec2::254]/",
    ],
)
def test_aws_resource_endpoint_is_checked_before_the_role_is_looked_up(endpoint: str, hostile) -> None:
    from broker.backends.aws_sts import AwsStsBackend

    backend = AwsStsBackend(outbound=STRICT)
    with pytest.raises(InvalidInput, match=r"^aws\.endpoint_url: ") as err:
        backend.validate_settings({"aws": {"role_arn": "arn:aws:iam::123456789012:role/r", "endpoint_url": endpoint}})
    assert "s3cr3t" not in err.value.message
    with pytest.raises(InvalidInput, match=r"^aws\.endpoint_url: "):  # loopback only where allowed
        backend.validate_settings(
            {"aws": {"role_arn": "arn:aws:iam::123456789012:role/r", "endpoint_url": hostile.url}}
        )
    assert hostile.hits == 0


def test_jwks_url_that_resolves_to_a_refused_address_is_not_fetched(capfd) -> None:
    from broker.errors import UpstreamUnavailable
    from broker.identity.keys import RemoteJwks

    name = socket.gethostname()
    assert resolves_non_global(name)
    configure_logging("json", "INFO")
    jwks = RemoteJwks("https://issuer.example", f"https://{name}:9/jwks", cache_seconds=60, policy=STRICT)
    with pytest.raises(UpstreamUnavailable, match="could not be fetched"):
        jwks.key_for("kid")
    assert "loopback addresses are not allowed" in capfd.readouterr().err  # refused, not a failed connect
