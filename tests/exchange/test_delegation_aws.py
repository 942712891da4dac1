"""Delegation with an AWS STS grant (moto with IAM enforcement): one escalation of the parent ends
the sub-task's STS session too."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError
from support.aws_broker import aws_broker
from support.moto import REGION

from broker.identity import DEV_ISSUER

pytestmark = [pytest.mark.openbao, pytest.mark.aws]


def test_parent_escalation_kills_a_descendants_sts_session(openbao, moto_server, tmp_path):
    with aws_broker(
        tmp_path / "aws-delegation",
        openbao,
        moto_server,
        role="deleg-reader",
        bucket="deleg-bucket",
        resource="deleg-s3",
        profile="cloud-deleg",
        actions=["storage.read"],
    ) as broker:
        admin = broker.admin()
        admin.put(
            "agents",
            "aws-worker",
            {"owner": "platform-team", "profiles": [], "identities": [{"issuer": DEV_ISSUER, "subject": "aws-worker"}]},
        )
        planner = broker.agent("demo-agent")
        parent = planner.open_task("cloud-deleg", "plan the S3 report")["task_id"]
        child = planner._call(
            "POST",
            f"/v1/tasks/{parent}/delegations",
            {"agent": "aws-worker", "actions": ["storage.read"], "ceiling": "medium", "purpose": "read the bucket"},
        ).json()
        assert child["parent_task_id"] == parent and child["agent"] == "aws-worker"
        worker = broker.agent("aws-worker")
        cred = worker.request_credential(child["task_id"], "storage.read", "deleg-s3")
        assert cred.fields["kind"] == "aws"
        session = boto3.Session(
            aws_access_key_id=cred.fields["access_key_id"],
            aws_secret_access_key=cred.secret("secret_access_key"),
            aws_session_token=cred.secret("session_token"),
            region_name=REGION,
        )
        s3 = session.client("s3", endpoint_url=moto_server.endpoint)
        s3.list_objects_v2(Bucket="deleg-bucket")  # alive before
        admin.revoke_task(parent, "incident drill")  # one escalation of the root
        assert admin.task(child["task_id"])["task"]["state"] == "quarantined"
        with pytest.raises(ClientError):
            s3.list_objects_v2(Bucket="deleg-bucket")
