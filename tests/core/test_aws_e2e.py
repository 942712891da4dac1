"""AWS STS through the broker's HTTP API, against a moto server with IAM enforcement on."""

from __future__ import annotations

import json
import os

import boto3
import pytest
from botocore.exceptions import ClientError
from support.broker import start_broker
from support.moto import REGION

pytestmark = [pytest.mark.openbao, pytest.mark.aws]
ACCOUNT = "123456789012"


@pytest.fixture(scope="module")
def aws_broker(openbao, moto_server, tmp_path_factory):
    keys = moto_server.admin
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    # the broker's own AWS credentials come from boto3's standard chain (here: the environment)
    os.environ.update(AWS_ACCESS_KEY_ID=keys.access_key_id, AWS_SECRET_ACCESS_KEY=keys.secret_access_key,
                      AWS_DEFAULT_REGION=REGION)
    iam = keys.client("iam", moto_server.endpoint)
    trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/nhi-broker"},
        "Action": ["sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"]}]}
    iam.create_role(RoleName="e2e-reader", AssumeRolePolicyDocument=json.dumps(trust), MaxSessionDuration=7200)
    iam.put_role_policy(RoleName="e2e-reader", PolicyName="read", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:*", "sts:GetCallerIdentity"],
                                                "Resource": "*"}]}))
    keys.client("s3", moto_server.endpoint).create_bucket(Bucket="e2e-bucket")
    running = start_broker(tmp_path_factory.mktemp("awsbroker"), openbao,
                           aws={"enabled": True, "endpoint_url": moto_server.endpoint,
                                "revocation_mode": "per_task_role"})
    admin = running.admin()
    admin.put("resources", "e2e-s3", {"kind": "aws", "sensitivity": "internal", "environment": "dev",
                                      "aws": {"role_arn": f"arn:aws:iam::{ACCOUNT}:role/e2e-reader",
                                              "region": REGION, "endpoint_url": moto_server.endpoint}})
    admin.put("profiles", "cloud", {"allowed_actions": ["storage.read"], "ceiling": "high"})
    me = admin.get("agents", "demo-agent")
    admin.put("agents", "demo-agent", {"owner": me["owner"], "identities": me["identities"],
                                       "profiles": sorted({*me["profiles"], "cloud"})})
    yield running
    running.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _session(moto_server, cred):
    return boto3.Session(aws_access_key_id=cred.fields["access_key_id"],
                         aws_secret_access_key=cred.secret("secret_access_key"),
                         aws_session_token=cred.secret("session_token"), region_name=REGION)


def test_aws_resource_with_missing_role_is_refused_at_registration(aws_broker):
    from broker.client import InvalidRequest

    with pytest.raises(InvalidRequest) as exc:
        aws_broker.admin().put("resources", "ghost-role", {
            "kind": "aws", "sensitivity": "internal", "environment": "dev",
            "aws": {"role_arn": f"arn:aws:iam::{ACCOUNT}:role/does-not-exist", "region": REGION}})
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
