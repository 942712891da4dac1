"""aws_iam_key against a moto server with IAM authorization on: overlap, leak rule, fail closed."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import boto3
import botocore.exceptions
import pytest
from support.moto import REGION, MotoServer

from broker.store.repo import utcnow
from rotation.playbooks.base import Kind, VerifyFailed

from .conftest import Rig

pytestmark = [pytest.mark.openbao, pytest.mark.aws]


def _works(moto: MotoServer, key: dict[str, Any]) -> bool:
    sts = boto3.client(
        "sts",
        region_name=REGION,
        endpoint_url=moto.endpoint,
        aws_access_key_id=key["access_key_id"],
        aws_secret_access_key=key["secret_access_key"],
    )
    try:
        sts.get_caller_identity()
        return True
    except botocore.exceptions.ClientError as exc:
        assert exc.response["Error"]["Code"] == "InvalidClientTokenId"
        return False


def _register(rig: Rig, moto: MotoServer, overlap: int = 3600) -> tuple[str, str, str]:
    user = f"svc-{uuid.uuid4().hex[:8]}"
    assert moto.admin is not None
    moto.admin.client("iam", moto.endpoint).create_user(UserName=user)
    name, path = f"iam-{user}", f"aws/{user}"
    rig.service.put(
        name,
        "aws_iam_key",
        {"user": user, "endpoint_url": moto.endpoint, "region": REGION},
        kv_mount="secret",
        kv_path=path,
        overlap_seconds=overlap,
        actor="test",
    )
    return name, path, user


def _keys(moto: MotoServer, user: str) -> set[str]:
    assert moto.admin is not None
    meta = moto.admin.client("iam", moto.endpoint).list_access_keys(UserName=user)["AccessKeyMetadata"]
    return {k["AccessKeyId"] for k in meta}


def test_old_key_works_during_overlap_and_is_deleted_when_it_ends(rig: Rig, moto: MotoServer) -> None:
    name, path, user = _register(rig, moto)
    assert rig.service.rotate(name, reason="manual", actor="test").ok
    key1 = rig.kv_read(path)["data"]  # type: ignore[index]
    result = rig.service.rotate(name, reason="max_age", actor="test")
    assert result.ok and not result.retired
    key2 = rig.kv_read(path)["data"]  # type: ignore[index]
    assert key2["access_key_id"] != key1["access_key_id"]
    assert _works(moto, key1) and _works(moto, key2)  # overlap: consumers move at their pace
    assert rig.service.retire_due(utcnow() + timedelta(seconds=3601)) == 1
    assert not _works(moto, key1) and _works(moto, key2)
    assert _keys(moto, user) == {key2["access_key_id"]}
    retired = rig.events(name)[-1]
    assert retired["kind"] == "rotation.retired" and retired["data"]["deleted_access_key"] == key1["access_key_id"]


def test_leaked_iam_key_is_rotated_and_deleted_at_once(rig: Rig, moto: MotoServer) -> None:
    name, path, user = _register(rig, moto, overlap=86400)
    rig.service.rotate(name, reason="manual", actor="test")
    leaked = rig.kv_read(path)["data"]  # type: ignore[index]
    found = rig.service.match_fingerprint(rig.fingerprint(leaked["secret_access_key"]))
    assert found == name
    result = rig.service.rotate(found, reason="leak", actor="scanner")
    assert result.ok and result.retired
    fresh = rig.kv_read(path)["data"]  # type: ignore[index]
    assert not _works(moto, leaked) and _works(moto, fresh)
    assert _keys(moto, user) == {fresh["access_key_id"]}


def test_failed_verify_deletes_the_new_key_and_keeps_the_old_one_in_force(rig: Rig, moto: MotoServer) -> None:
    name, path, user = _register(rig, moto)
    rig.service.rotate(name, reason="manual", actor="test")
    before = rig.kv_read(path)
    pb = rig.service.playbooks[Kind.AWS_IAM_KEY]

    def refuse(*_: Any) -> dict[str, Any]:  # the check fails (e.g. the key answers as someone else)
        raise VerifyFailed("injected: the new access key answers as another principal")

    original = pb.verify
    pb.verify = refuse  # type: ignore[method-assign]
    try:
        result = rig.service.rotate(name, reason="manual", actor="test")
    finally:
        pb.verify = original  # type: ignore[method-assign]
    assert not result.ok and result.failed_step == "verify"
    after = rig.kv_read(path)
    assert after["metadata"]["version"] == before["metadata"]["version"]  # type: ignore[index]
    assert _works(moto, after["data"])  # type: ignore[index]
    assert _keys(moto, user) == {before["data"]["access_key_id"]}  # type: ignore[index]  # new key deleted
    failed = rig.events(name)[-1]
    assert failed["kind"] == "rotation.failed" and failed["data"]["undo"]["staging"] == "deleted"
    assert rig.kv_read(f"nhi-broker/rotation-staging/{name}") is None


def test_rotation_refuses_a_user_holding_a_key_the_broker_does_not_manage(rig: Rig, moto: MotoServer) -> None:
    name, _, user = _register(rig, moto)
    rig.service.rotate(name, reason="manual", actor="test")
    assert moto.admin is not None
    moto.admin.client("iam", moto.endpoint).create_access_key(UserName=user)  # someone else's key
    result = rig.service.rotate(name, reason="manual", actor="test")
    assert not result.ok and result.failed_step == "create" and "already has two access keys" in (result.error or "")
