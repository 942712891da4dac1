"""kv_generated against real OpenBao KV: steps, overlap, leak rule, fingerprints, no value stored."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest

from broker.api.presenters import audit_event_body
from broker.errors import Conflict, InvalidInput, NotFound
from broker.store.repo import utcnow
from rotation.playbooks.base import SecretState

from .conftest import Rig

pytestmark = [pytest.mark.openbao]
STEPS = ["rotation.started", "rotation.created", "rotation.stored", "rotation.verified", "rotation.switched"]


def _register(rig: Rig, overlap: int = 3600, max_age: int | None = None) -> tuple[str, str]:
    name, path = f"api-key-{uuid.uuid4().hex[:8]}", f"apps/{uuid.uuid4().hex[:8]}/api"
    rig.service.put(
        name,
        "kv_generated",
        {"generator": {"format": "api_key", "prefix": "sk_", "length": 40}},
        kv_mount="secret",
        kv_path=path,
        overlap_seconds=overlap,
        max_age_seconds=max_age,
        actor="test",
    )
    return name, path


def test_rotation_writes_a_new_kv_version_consumers_read_and_audits_every_step(rig: Rig) -> None:
    name, path = _register(rig)
    result = rig.service.rotate(name, reason="manual", actor="test")
    assert result.ok and result.steps == ("created", "stored", "verified", "switched")
    entry = rig.kv_read(path)
    assert entry is not None and entry["metadata"]["version"] == result.kv_version == 1
    value = entry["data"]["value"]
    assert value.startswith("sk_") and len(value) == 43
    assert result.fingerprints == (rig.fingerprint(value),)
    assert rig.service.match_fingerprint(rig.fingerprint(value)) == name
    assert [e["kind"] for e in rig.events(name)] == STEPS  # first rotation onto an empty entry: nothing to retire
    assert result.retire_at is None and rig.service.get(name).previous_ref is None
    assert rig.kv_read(f"nhi-broker/rotation-staging/{name}") is None  # staging removed after switch
    assert rig.service.get(name).state is SecretState.ACTIVE


def test_old_value_stays_readable_during_overlap_and_is_destroyed_when_it_ends(rig: Rig) -> None:
    name, path = _register(rig, overlap=3600)
    first = rig.service.rotate(name, reason="manual", actor="test")
    old_value = rig.kv_read(path)["data"]["value"]  # type: ignore[index]
    second = rig.service.rotate(name, reason="max_age", actor="test")
    assert second.ok and not second.retired and second.retire_at is not None
    assert rig.kv_read(path)["data"]["value"] != old_value  # type: ignore[index]
    assert rig.kv_read(path, version=first.kv_version)["data"]["value"] == old_value  # type: ignore[index]
    assert rig.service.match_fingerprint(rig.fingerprint(old_value)) == name  # still overlapping
    assert rig.service.retire_due(utcnow()) == 0  # window not over
    assert rig.service.retire_due(utcnow() + timedelta(seconds=3601)) == 1
    assert rig.destroyed(path, first.kv_version)  # type: ignore[arg-type]
    assert rig.kv_read(path, version=first.kv_version) is None
    assert rig.service.match_fingerprint(rig.fingerprint(old_value)) is None
    assert rig.events(name)[-1]["kind"] == "rotation.retired"


def test_leak_rotation_retires_the_old_value_at_once_despite_the_overlap_window(rig: Rig) -> None:
    name, path = _register(rig, overlap=86400)
    first = rig.service.rotate(name, reason="manual", actor="test")
    leaked = rig.kv_read(path)["data"]["value"]  # type: ignore[index]
    found = rig.service.match_fingerprint(rig.fingerprint(leaked))  # what the scan side does with a finding
    assert found == name
    result = rig.service.rotate(found, reason="leak", actor="scanner")
    assert result.ok and result.retired and result.steps[-1] == "retired"
    assert rig.destroyed(path, first.kv_version)  # type: ignore[arg-type]
    assert rig.service.match_fingerprint(rig.fingerprint(leaked)) is None
    retired = rig.events(name)[-1]
    assert retired["kind"] == "rotation.retired" and retired["data"]["cause"] == "leak"
    assert retired["data"]["kv_versions_destroyed"] == [first.kv_version]


def test_first_rotation_adopts_the_value_consumers_had_and_destroys_it(rig: Rig) -> None:
    name, path = _register(rig, overlap=0)
    with rig.bao.client() as c:
        c.adapter.post(f"/v1/secret/data/{path}", json={"data": {"value": "hand-made-legacy-key-0123456789"}})
    result = rig.service.rotate(name, reason="manual", actor="test")
    assert result.kv_version == 2 and result.retired
    assert rig.destroyed(path, 1)


def test_scheduled_rotation_rotates_what_is_older_than_max_age(rig: Rig) -> None:
    name, _ = _register(rig, overlap=0, max_age=3600)
    due = [r.name for r in rig.service.rotate_due(utcnow())]
    assert name in due  # never rotated: due at once
    assert name not in [r.name for r in rig.service.rotate_due(utcnow())]
    later = rig.service.rotate_due(utcnow() + timedelta(seconds=3601))
    assert name in [r.name for r in later] and all(r.reason == "max_age" for r in later)


def test_concurrent_writer_is_detected_by_check_and_set_and_consumers_keep_its_value(rig: Rig) -> None:
    name, path = _register(rig, overlap=0)
    rig.service.rotate(name, reason="manual", actor="test")
    pb = rig.service.playbooks[rig.service.get(name).kind]
    original_verify = pb.verify

    def verify_then_someone_writes(*args, **kwargs):  # type: ignore[no-untyped-def]
        out = original_verify(*args, **kwargs)
        with rig.bao.client() as c:
            c.adapter.post(f"/v1/secret/data/{path}", json={"data": {"value": "written-by-someone-else"}})
        return out

    pb.verify = verify_then_someone_writes  # type: ignore[method-assign]
    try:
        result = rig.service.rotate(name, reason="manual", actor="test")
    finally:
        pb.verify = original_verify  # type: ignore[method-assign]
    assert not result.ok and result.failed_step == "switch"
    assert rig.kv_read(path)["data"]["value"] == "written-by-someone-else"  # type: ignore[index]
    failed = rig.events(name)[-1]
    assert failed["kind"] == "rotation.failed" and failed["data"]["step"] == "switch"
    assert rig.service.get(name).state is SecretState.FAILED


def test_no_value_reaches_the_store_or_the_audit_trail(rig: Rig) -> None:
    name, path = _register(rig, overlap=3600)
    values = []
    for _ in range(2):
        rig.service.rotate(name, reason="manual", actor="test")
        values.append(rig.kv_read(path)["data"]["value"])  # type: ignore[index]
    with rig.store.engine.connect() as conn:
        dump = "\n".join(
            str(tuple(row))
            for table in ("managed_secrets", "audit_events")
            for row in conn.exec_driver_sql(f"SELECT * FROM {table}")
        )
    dump += json.dumps([audit_event_body(e) for e in rig.audit.events(limit=10000)])
    for v in values:
        assert v not in dump and v[3:] not in dump
    assert rig.fingerprint(values[0]) in dump  # referred to by fingerprint only


def test_registration_refuses_bad_input_naming_the_field(rig: Rig) -> None:
    with pytest.raises(InvalidInput, match=r'kind: "ssh_key" is not one of'):
        rig.service.put("x", "ssh_key", {}, kv_mount="secret", kv_path="a", actor="t")
    with pytest.raises(InvalidInput, match=r"kv\.mount: .*not a KV version 2 engine|kv\.mount: no secrets engine"):
        rig.service.put("x", "kv_generated", {}, kv_mount="sys", kv_path="a", actor="t")
    with pytest.raises(InvalidInput, match=r"kv\.path: required"):
        rig.service.put("x", "kv_generated", {}, kv_mount="secret", kv_path=None, actor="t")
    with pytest.raises(InvalidInput, match=r"max_age_seconds: must be from 60"):
        rig.service.put("x", "kv_generated", {}, kv_mount="secret", kv_path="a", max_age_seconds=5, actor="t")
    with pytest.raises(NotFound):
        rig.service.rotate("does-not-exist", reason="manual", actor="t")


def test_a_secret_being_rotated_is_not_rotated_twice_at_once(rig: Rig) -> None:
    from rotation import records

    name, _ = _register(rig)
    with rig.store.write() as conn:
        assert records.claim(conn, name, utcnow() - timedelta(minutes=15)) is not None
    with pytest.raises(Conflict, match="is being rotated"):
        rig.service.rotate(name, reason="manual", actor="t")
