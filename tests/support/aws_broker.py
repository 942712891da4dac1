"""A broker whose AWS backend talks to the moto server: the broker's keys in the environment
(boto3's standard chain), a role it may assume, a bucket, an ``aws`` resource, a profile the demo
agent may open. Restores the environment afterwards."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from support.broker import RunningBroker, start_broker
from support.moto import REGION

ACCOUNT = "123456789012"
ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")


@contextmanager
def aws_broker(
    data_dir: Path,
    openbao: Any,
    moto_server: Any,
    *,
    role: str,
    bucket: str,
    resource: str,
    profile: str,
    actions: list[str],
    **broker_settings: Any,
) -> Iterator[RunningBroker]:
    keys = moto_server.admin
    saved = {k: os.environ.get(k) for k in ENV}
    os.environ.update(
        AWS_ACCESS_KEY_ID=keys.access_key_id, AWS_SECRET_ACCESS_KEY=keys.secret_access_key, AWS_DEFAULT_REGION=REGION
    )
    iam = keys.client("iam", moto_server.endpoint)
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/nhi-broker"},
                "Action": ["sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"],
            }
        ],
    }
    iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(trust), MaxSessionDuration=7200)
    iam.put_role_policy(
        RoleName=role,
        PolicyName="all",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": ["s3:*", "sts:GetCallerIdentity"], "Resource": "*"}],
            }
        ),
    )
    keys.client("s3", moto_server.endpoint).create_bucket(Bucket=bucket)
    # per-task roles: moto treats any Deny with a condition as a deny of everything on the role
    running = start_broker(
        data_dir,
        openbao,
        aws={"enabled": True, "endpoint_url": moto_server.endpoint, "revocation_mode": "per_task_role"},
        **broker_settings,
    )
    try:
        admin = running.admin()
        admin.put(
            "resources",
            resource,
            {
                "kind": "aws",
                "sensitivity": "internal",
                "environment": "dev",
                "aws": {
                    "role_arn": f"arn:aws:iam::{ACCOUNT}:role/{role}",
                    "region": REGION,
                    "endpoint_url": moto_server.endpoint,
                },
            },
        )
        admin.put("profiles", profile, {"allowed_actions": actions, "ceiling": "high"})
        me = admin.get("agents", "demo-agent")
        admin.put(
            "agents",
            "demo-agent",
            {"owner": me["owner"], "identities": me["identities"], "profiles": sorted({*me["profiles"], profile})},
        )
        yield running
    finally:
        running.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
