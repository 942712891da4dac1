"""AWS STS sessions against a moto server on loopback with IAM authorization on.

moto does not enforce session policies, expiry, tags or SourceIdentity, and any Deny with a
condition blocks every session of the role. So: the session policy and tags are asserted on the
AssumeRole request the broker *sent* (moto's recorder), the tag-deny statement on the policy it
*attached* (read back with IAM), and hard revocation is proven end to end in per-task-role mode.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from support.backend_requests import make_request, make_resource, make_task
from support.moto import REGION, MotoServer

from broker.backends import _aws_policy as pol
from broker.backends.aws_sts import AwsClientSettings, AwsRevocationMode, AwsStsBackend
from broker.backends.port import IssuedCredential
from broker.errors import InvalidInput, UpstreamUnavailable
from broker.secrets import Secret

pytestmark = pytest.mark.aws
ACCOUNT = "123456789012"
OBJECT = b"id,total\n1,42\n"


@dataclass
class AwsEnv:
    moto: MotoServer
    bucket: str
    role_name: str

    @property
    def role_arn(self) -> str:
        return f"arn:aws:iam::{ACCOUNT}:role/{self.role_name}"

    def admin(self, service: str) -> Any:
        assert self.moto.admin is not None
        return self.moto.admin.client(service, self.moto.endpoint)

    def backend(self, mode: AwsRevocationMode = AwsRevocationMode.TAG_DENY) -> AwsStsBackend:
        assert self.moto.admin is not None
        return AwsStsBackend(
            AwsClientSettings(
                region=REGION,
                endpoint_url=self.moto.endpoint,
                access_key_id=self.moto.admin.access_key_id,
                secret_access_key=Secret(self.moto.admin.secret_access_key),
            ),
            mode=mode,
            role_ready_timeout=0,
        )


@pytest.fixture
def aws_env(moto_server: MotoServer) -> Iterator[AwsEnv]:
    """A bucket with an object and a fresh role allowed to use it (fresh per test: moto makes a
    conditional Deny block every session of the role)."""
    suffix = uuid.uuid4().hex[:8]
    env = AwsEnv(moto=moto_server, bucket=f"nhi-data-{suffix}", role_name=f"nhi-agent-data-{suffix}")
    s3, iam = env.admin("s3"), env.admin("iam")
    s3.create_bucket(Bucket=env.bucket)
    s3.put_object(Bucket=env.bucket, Key="report.csv", Body=OBJECT)
    iam.create_role(
        RoleName=env.role_name,
        MaxSessionDuration=7200,
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/nhi-broker"},
                        "Action": ["sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"],
                    }
                ],
            }
        ),
    )
    iam.put_role_policy(
        RoleName=env.role_name,
        PolicyName="data",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": "s3:*",
                        "Resource": [f"arn:aws:s3:::{env.bucket}", f"arn:aws:s3:::{env.bucket}/*"],
                    }
                ],
            }
        ),
    )
    yield env


def _settings(env: AwsEnv, backend: AwsStsBackend, **extra: Any) -> dict[str, Any]:
    return backend.validate_settings(
        {
            "aws": {
                "role_arn": env.role_arn,
                "region": REGION,
                "endpoint_url": env.moto.endpoint,
                "resources": [f"arn:aws:s3:::{env.bucket}", f"arn:aws:s3:::{env.bucket}/*"],
                **extra,
            }
        }
    )


def _as_agent(env: AwsEnv, cred: IssuedCredential, service: str) -> Any:
    return boto3.client(
        service,
        region_name=REGION,
        endpoint_url=env.moto.endpoint,
        aws_access_key_id=cred.secrets["access_key_id"].reveal(),
        aws_secret_access_key=cred.secrets["secret_access_key"].reveal(),
        aws_session_token=cred.secrets["session_token"].reveal(),
    )


def _read_object(env: AwsEnv, cred: IssuedCredential) -> bytes:
    body = _as_agent(env, cred, "s3").get_object(Bucket=env.bucket, Key="report.csv")["Body"]
    return bytes(body.read())


# -- settings -----------------------------------------------------------------------------------------
def test_aws_settings_are_normalised_when_the_role_exists(aws_env: AwsEnv) -> None:
    settings = _settings(aws_env, aws_env.backend())
    assert settings["aws"]["role_name"] == aws_env.role_name
    assert settings["aws"]["max_session_duration"] == 7200
    assert settings["aws"]["revocation"] == "tag_deny"


def test_aws_settings_are_refused_when_the_role_does_not_exist(aws_env: AwsEnv) -> None:
    with pytest.raises(InvalidInput, match=rf'^aws\.role_arn: role "nope" does not exist in account {ACCOUNT}$'):
        aws_env.backend().validate_settings(
            {"aws": {"role_arn": f"arn:aws:iam::{ACCOUNT}:role/nope", "endpoint_url": aws_env.moto.endpoint}}
        )


@pytest.mark.parametrize(
    ("aws", "field"),
    [
        ({"role_arn": "arn:aws:iam::1:user/x"}, "aws.role_arn"),
        ({"region": "mars-1"}, "aws.region"),
        ({"endpoint_url": "http://sts.example.com"}, "aws.endpoint_url"),
        ({"resources": []}, "aws.resources"),
        ({"resources": ["bucket"]}, "aws.resources[0]"),
        ({"actions": {"storage.read": ["GetObject"]}}, "aws.actions.storage.read"),
        ({"actions": {"storage.read": ["iam:PassRole"]}}, "aws.actions.storage.read"),
        ({"revocation": "hope"}, "aws.revocation"),
        ({"duration": 5}, "aws.duration"),
    ],
)
def test_aws_settings_name_the_bad_field(aws_env: AwsEnv, aws: dict[str, Any], field: str) -> None:
    base = {"role_arn": aws_env.role_arn, "endpoint_url": aws_env.moto.endpoint}
    with pytest.raises(InvalidInput) as info:
        aws_env.backend().validate_settings({"aws": {**base, **aws}})
    assert info.value.field == field


# -- issue --------------------------------------------------------------------------------------------
def test_aws_session_works_and_carries_the_scope_tags_and_identity_the_broker_sent(aws_env: AwsEnv) -> None:
    backend = aws_env.backend()
    resource = make_resource("aws", _settings(aws_env, backend))
    request = make_request(resource, "storage.read", ttl=300)
    aws_env.moto.start_recording()
    cred = backend.issue(request)
    (sent,) = aws_env.moto.recorded("AssumeRole")

    identity = _as_agent(aws_env, cred, "sts").get_caller_identity()
    assert identity["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/{aws_env.role_name}/nhi-{request.task.task_id}"
    assert _read_object(aws_env, cred) == OBJECT

    assert json.loads(sent["Policy"][0]) == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "NhiScope",
                "Effect": "Allow",
                "Action": sorted(pol.DEFAULT_ACTIONS["storage.read"]),
                "Resource": [f"arn:aws:s3:::{aws_env.bucket}", f"arn:aws:s3:::{aws_env.bucket}/*"],
            }
        ],
    }
    tags = {sent[f"Tags.member.{i}.Key"][0]: sent[f"Tags.member.{i}.Value"][0] for i in range(1, 5)}
    assert tags == {
        "nhi-task": request.task.task_id,
        "nhi-agent": "demo-agent",
        "nhi-action": "storage.read",
        "nhi-grant": request.grant_id,
    }
    assert sent["SourceIdentity"] == ["demo-agent"]
    assert sent["RoleSessionName"] == [f"nhi-{request.task.task_id}"]
    assert sent["DurationSeconds"] == ["900"]  # the tier says 300 s; STS's minimum is 900 s
    assert {sent["TransitiveTagKeys.member.1"][0], sent["TransitiveTagKeys.member.2"][0]} == {
        "nhi-task",
        "nhi-grant",
    }
    # ... and the broker's own expiry is the tier's, not AWS's
    assert cred.expires_at <= datetime.now(UTC) + timedelta(seconds=300)
    assert datetime.fromisoformat(cred.public["aws_expires_at"]) > cred.expires_at + timedelta(seconds=500)


def test_aws_session_policy_follows_the_resource_action_mapping(aws_env: AwsEnv) -> None:
    backend = aws_env.backend()
    settings = _settings(aws_env, backend, actions={"data.export": ["s3:GetObject"]})
    aws_env.moto.start_recording()
    backend.issue(make_request(make_resource("aws", settings), "data.export"))
    (sent,) = aws_env.moto.recorded("AssumeRole")
    assert json.loads(sent["Policy"][0])["Statement"][0]["Action"] == ["s3:GetObject"]


def test_aws_credential_is_refused_when_the_action_maps_to_no_aws_action(aws_env: AwsEnv) -> None:
    backend = aws_env.backend()
    resource = make_resource("aws", _settings(aws_env, backend), name="bucket")
    with pytest.raises(InvalidInput, match=r"^action: resource .bucket. maps no AWS actions to .iam\.modify"):
        backend.issue(make_request(resource, "iam.modify"))


def test_aws_credential_hides_its_secrets(aws_env: AwsEnv) -> None:
    backend = aws_env.backend()
    cred = backend.issue(make_request(make_resource("aws", _settings(aws_env, backend)), "storage.read"))
    kept = repr(cred) + json.dumps(cred.public) + json.dumps(cred.revocation) + json.dumps(cred.task_handle)
    for name in ("secret_access_key", "session_token"):
        assert cred.secrets[name].reveal() not in kept
    assert cred.public["access_key_id"] == cred.secrets["access_key_id"].reveal() == cred.accessor


# -- revocation: tag_deny -------------------------------------------------------------------------------
def test_aws_tag_deny_revocation_attaches_deny_on_the_task_and_grant_tags(aws_env: AwsEnv) -> None:
    backend = aws_env.backend()
    resource = make_resource("aws", _settings(aws_env, backend))
    task = make_task()
    first = backend.issue(make_request(resource, "storage.read", task=task))
    second = backend.issue(make_request(resource, "storage.read", task=task))
    assert first.task_handle == {
        "mode": "tag_deny",
        "scope": "task",
        "role_name": aws_env.role_name,
        "task_id": task.task_id,
        "region": REGION,
        "endpoint_url": aws_env.moto.endpoint,
    }
    assert second.task_handle is None and second.covered_by_task_handle

    backend.revoke(first.revocation)  # one grant (e.g. it leaked)
    backend.revoke(first.task_handle)  # the task ends
    revoked = _inline_policies(aws_env.admin("iam"), aws_env.role_name)
    backend.revoke(first.task_handle)  # idempotent: the role's policies are exactly as they were
    backend.revoke(first.revocation)
    assert _inline_policies(aws_env.admin("iam"), aws_env.role_name) == revoked

    doc = aws_env.admin("iam").get_role_policy(RoleName=aws_env.role_name, PolicyName=pol.REVOCATION_POLICY_NAME)[
        "PolicyDocument"
    ]
    denies = {s["Sid"].rstrip("0123456789"): s for s in doc["Statement"]}
    assert denies["NhiRevokedGrant"]["Condition"] == {
        "StringEquals": {"aws:PrincipalTag/nhi-grant": [first.revocation["grant_id"]]}
    }
    assert denies["NhiRevokedTask"]["Condition"] == {"StringEquals": {"aws:PrincipalTag/nhi-task": [task.task_id]}}
    assert all(s["Effect"] == "Deny" and s["Action"] == "*" and s["Resource"] == "*" for s in doc["Statement"])


def test_aws_task_handle_is_persisted_before_the_session_is_issued(aws_env: AwsEnv) -> None:
    backend = aws_env.backend(AwsRevocationMode.PER_TASK_ROLE)
    resource = make_resource("aws", _settings(aws_env, backend))
    seen: list[dict[str, Any]] = []

    def persist(handle: dict[str, Any]) -> None:
        iam = aws_env.admin("iam")
        with pytest.raises(ClientError, match="NoSuchEntity"):  # nothing exists yet: write-ahead
            iam.get_role(RoleName=handle["role_name"])
        seen.append(handle)

    task = make_task()
    cred = backend.issue(make_request(resource, "storage.read", task=task, persist_handle=persist))
    backend.issue(make_request(resource, "storage.read", task=task, persist_handle=persist))
    assert cred.task_handle is None
    assert seen == [
        {
            "mode": "per_task_role",
            "scope": "task",
            "role_name": cred.revocation["role_name"],
            "task_id": task.task_id,
            "region": REGION,
            "endpoint_url": aws_env.moto.endpoint,
        }
    ]


def test_aws_revocation_is_success_when_the_role_is_gone(aws_env: AwsEnv) -> None:
    backend = aws_env.backend()
    iam = aws_env.admin("iam")
    roles_before = _role_names(iam)
    for mode in ("tag_deny", "per_task_role"):
        backend.revoke(
            {
                "mode": mode,
                "scope": "task",
                "role_name": "no-such-role",
                "task_id": "t",
                "endpoint_url": aws_env.moto.endpoint,
            }
        )
        backend.revoke(
            {
                "mode": mode,
                "scope": "grant",
                "role_name": "no-such-role",
                "task_id": "t",
                "grant_id": "g",
                "endpoint_url": aws_env.moto.endpoint,
            }
        )
    # nothing to revoke, nothing done: no role (re)created, no policy left behind
    assert _role_names(iam) == roles_before
    with pytest.raises(ClientError, match="NoSuchEntity"):
        iam.get_role(RoleName="no-such-role")


def _role_names(iam: Any) -> set[str]:
    return {r["RoleName"] for page in iam.get_paginator("list_roles").paginate() for r in page["Roles"]}


def _inline_policies(iam: Any, role_name: str) -> dict[str, Any]:
    names = iam.list_role_policies(RoleName=role_name)["PolicyNames"]
    return {n: iam.get_role_policy(RoleName=role_name, PolicyName=n)["PolicyDocument"] for n in names}


# -- revocation: per_task_role (hard) ----------------------------------------------------------------
def test_aws_per_task_role_credentials_stop_working_after_the_task_is_revoked(aws_env: AwsEnv) -> None:
    backend = aws_env.backend(AwsRevocationMode.PER_TASK_ROLE)
    resource = make_resource("aws", _settings(aws_env, backend))
    task = make_task()
    first = backend.issue(make_request(resource, "storage.read", task=task))
    second = backend.issue(make_request(resource, "storage.read", task=task))
    other_task = backend.issue(make_request(resource, "storage.read"))
    role_name = first.revocation["role_name"]
    assert role_name != aws_env.role_name and second.revocation["role_name"] == role_name
    assert first.task_handle is not None and second.task_handle is None
    assert ":role/nhi-broker/tasks/" in first.public["role_arn"]
    assert (
        _as_agent(aws_env, first, "sts")
        .get_caller_identity()["Arn"]
        .startswith(f"arn:aws:sts::{ACCOUNT}:assumed-role/{role_name}/")
    )
    assert _read_object(aws_env, first) == _read_object(aws_env, second) == OBJECT

    backend.revoke(first.task_handle)
    iam = aws_env.admin("iam")
    revoked = (_inline_policies(iam, role_name), iam.get_role(RoleName=role_name)["Role"]["AssumeRolePolicyDocument"])
    backend.revoke(first.task_handle)  # idempotent: the closed role is exactly as it was
    assert (
        _inline_policies(iam, role_name),
        iam.get_role(RoleName=role_name)["Role"]["AssumeRolePolicyDocument"],
    ) == revoked

    for cred in (first, second):
        with pytest.raises(ClientError, match="AccessDenied"):
            _read_object(aws_env, cred)
    assert _read_object(aws_env, other_task) == OBJECT  # another task is untouched
    iam = aws_env.admin("iam")
    assert iam.get_role_policy(RoleName=role_name, PolicyName=pol.DENY_ALL_POLICY_NAME)["PolicyDocument"][
        "Statement"
    ] == [{"Sid": "NhiTaskRevoked", "Effect": "Deny", "Action": "*", "Resource": "*"}]
    trust = iam.get_role(RoleName=role_name)["Role"]["AssumeRolePolicyDocument"]
    assert [s["Effect"] for s in trust["Statement"]] == ["Deny"]


# -- health ------------------------------------------------------------------------------------------
def test_aws_backend_is_alive_with_valid_credentials_and_unavailable_otherwise(aws_env: AwsEnv) -> None:
    aws_env.backend().check_alive()
    wrong = AwsStsBackend(
        AwsClientSettings(
            endpoint_url=aws_env.moto.endpoint, access_key_id="AKIAWRONG", secret_access_key=Secret("wrong")
        )
    )
    with pytest.raises(UpstreamUnavailable, match="rejected the broker's credentials"):
        wrong.check_alive()
    dead = AwsStsBackend(
        AwsClientSettings(
            endpoint_url="http://127.0.0.1:9",
            access_key_id="AKIAX",
            secret_access_key=Secret("x"),
            connect_timeout=0.5,
        )
    )
    with pytest.raises(UpstreamUnavailable, match="cannot reach AWS"):
        dead.check_alive()


# -- the revocation policy, as pure logic ---------------------------------------------------------
def test_revocation_policy_prunes_entries_older_than_any_session() -> None:
    then = datetime(2026, 1, 1, 0, tzinfo=UTC)
    doc = pol.add_revocation(None, pol.TAG_TASK, "old", now=then)
    doc = pol.add_revocation(doc, pol.TAG_TASK, "new", now=then + timedelta(hours=14))
    assert not pol.is_revoked(doc["Statement"], pol.TAG_TASK, "old")
    assert pol.is_revoked(doc["Statement"], pol.TAG_TASK, "new")
    assert pol.add_revocation(doc, pol.TAG_TASK, "new", now=then + timedelta(hours=14)) == doc


def test_revocation_policy_falls_back_to_revoking_every_earlier_session_when_full() -> None:
    now = datetime(2026, 1, 1, 12, tzinfo=UTC)
    doc: dict[str, Any] | None = None
    for i in range(400):
        doc = pol.add_revocation(doc, pol.TAG_TASK, f"tsk_{i:032d}", now=now)
    assert doc is not None
    assert len(json.dumps(doc, separators=(",", ":"))) <= pol.POLICY_BUDGET
    before = [s for s in doc["Statement"] if s["Sid"].startswith("NhiRevokedBefore")]
    assert before == [
        {
            "Sid": "NhiRevokedBefore20260101120000",
            "Effect": "Deny",
            "Action": "*",
            "Resource": "*",
            "Condition": {"DateLessThan": {"aws:TokenIssueTime": "2026-01-01T12:00:00Z"}},
        }
    ]
    assert pol.is_revoked(doc["Statement"], pol.TAG_TASK, f"tsk_{399:032d}")  # later ones are listed again
