"""AWS STS through the broker's HTTP API, against a moto server with IAM enforcement on."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError
from support.aws_broker import ACCOUNT
from support.aws_broker import aws_broker as support_aws_broker
from support.moto import REGION

pytestmark = [pytest.mark.openbao, pytest.mark.aws]


@pytest.fixture(scope="module")
def aws_broker(openbao, moto_server, tmp_path_factory):
    with support_aws_broker(
        tmp_path_factory.mktemp("awsbroker"),
        openbao,
        moto_server,
        role="e2e-reader",
        bucket="e2e-bucket",
        resource="e2e-s3",
        profile="cloud",
        actions=["storage.read"],
    ) as running:
        yield running


def _session(moto_server, cred):
    return boto3.Session(
        aws_access_key_id=cred.fields["access_key_id"],
        aws_secret_access_key=cred.secret("secret_access_key"),
        aws_session_token=cred.secret("session_token"),
        region_name=REGION,
    )


def test_aws_resource_with_missing_role_is_refused_at_registration(aws_broker):
    from broker.client import InvalidRequest

    with pytest.raises(InvalidRequest) as exc:
        aws_broker.admin().put(
            "resources",
            "ghost-role",
            {
                "kind": "aws",
                "sensitivity": "internal",
                "environment": "dev",
                "aws": {"role_arn": f"arn:aws:iam::{ACCOUNT}:role/does-not-exist", "region": REGION},
            },
        )
    assert exc.value.body["error"]["field"] == "aws.role_arn"


def test_sts_session_works_then_dies_with_its_task(aws_broker, moto_server):
    agent = aws_broker.agent()
    info = agent.open_task("cloud", "read a report")
    cred = agent.request_credential(info["task_id"], "storage.read", "e2e-s3")
    assert cred.fields["kind"] == "aws" and cred.decision["outcome"] == "allow"
    session = _session(moto_server, cred)
    ident = session.client("sts", endpoint_url=moto_server.endpoint).get_caller_identity()
    assert ":assumed-role/" in ident["Arn"]
    session.client("s3", endpoint_url=moto_server.endpoint).list_objects_v2(Bucket="e2e-bucket")
    agent.end_task(info["task_id"])
    with pytest.raises(ClientError):
        session.client("s3", endpoint_url=moto_server.endpoint).list_objects_v2(Bucket="e2e-bucket")
