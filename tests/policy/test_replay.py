"""Replay: recorded decisions re-decided by a candidate bundle; exactly the changed ones are reported."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from broker.errors import InvalidInput
from broker.models import Environment, Sensitivity
from broker.policy import CedarDecisionEngine, load_bundle
from broker.policy.replay import input_from_record, read_jsonl, replay
from broker.risk.engine import TableDecisionEngine
from policies import DEFAULT_BUNDLE
from tests.policy.conftest import NOW, make_input, resource

STRICTER = """
@id("no-unattended-dev-writes")
@reason("writes need a human in the loop")
forbid (principal, action == Action::"db.write", resource)
when { !context.human_present };

@id("secrets-one-minute")
@max_ttl("60")
permit (principal, action == Action::"secrets.read", resource);
"""


def _records(engine: CedarDecisionEngine) -> list[dict[str, Any]]:
    prod_db = resource("prod-db", Sensitivity.CONFIDENTIAL, Environment.PROD)
    requests = [
        make_input("db.read", "demo-data", decision_id="d-read"),
        make_input("db.write", "demo-data", decision_id="d-write"),
        make_input("db.write", "demo-data", on_behalf_of="alice", decision_id="d-write-human"),
        make_input("db.write", "prod-db", res=prod_db, decision_id="d-write-prod"),
        make_input("secrets.read", "demo-secrets", decision_id="d-secret"),
        make_input("payments.charge", "prod-payments", decision_id="d-pay"),
        make_input("payments.charge", "prod-payments", approved=True, decision_id="d-pay-approved"),
    ]
    # a JSON round trip, as the records come from the store or a JSONL export
    return [json.loads(json.dumps(engine.decide(r).record())) for r in requests]


@pytest.fixture
def stricter(bundle_copy: Path) -> CedarDecisionEngine:
    (bundle_copy / "policies" / "50-stricter.cedar").write_text(STRICTER)
    return CedarDecisionEngine(load_bundle(bundle_copy))


def test_replay_against_the_same_bundle_changes_nothing(engine: CedarDecisionEngine) -> None:
    report = replay(_records(engine), engine)
    assert report.replayed == 7 and report.changes == () and report.skipped == ()


def test_replay_reports_exactly_the_decisions_a_stricter_bundle_changes(
    engine: CedarDecisionEngine, stricter: CedarDecisionEngine
) -> None:
    report = replay(_records(engine), stricter)
    changed = {c.decision_id: c.kinds for c in report.changes}
    assert changed == {
        "d-write": ("allow→deny", "ttl 900→0"),  # unattended write: now forbidden
        "d-write-prod": ("allow→deny", "ttl 300→0", "uses 1→0"),  # idem, in prod
        "d-secret": ("ttl 300→60",),  # the new @max_ttl
    }  # d-write-human (a human present), reads, payments: untouched
    assert report.unchanged == 4 and report.bundle_hash == stricter.bundle_hash
    write = next(c for c in report.changes if c.decision_id == "d-write")
    assert write.after.policy_ids == ("no-unattended-dev-writes",)
    assert (write.agent, write.action, write.resource) == ("demo-agent", "db.write", "demo-data")


def test_record_inputs_rebuild_the_same_decision(engine: CedarDecisionEngine) -> None:
    for record in _records(engine):
        again = engine.decide(input_from_record(record)).public()
        assert again == {k: record[k] for k in again}


def test_records_missing_replay_fields_are_skipped_with_the_field_named(engine: CedarDecisionEngine) -> None:
    old = _records(engine)[0]
    del old["inputs"]["profile_allowed_actions"]
    report = replay([old], engine)
    assert report.replayed == 0
    assert report.skipped[0].reason == "not replayable: missing field 'profile_allowed_actions'"


def test_since_filters_older_decisions(engine: CedarDecisionEngine, stricter: CedarDecisionEngine) -> None:
    report = replay(_records(engine), stricter, since=NOW + timedelta(seconds=1))
    assert report.replayed == 0 and report.filtered == 7 and report.changes == ()


def test_replay_works_with_any_decision_engine(engine: CedarDecisionEngine) -> None:
    table = TableDecisionEngine.from_dir(DEFAULT_BUNDLE)
    report = replay(_records(engine), table)
    # the table engine denies critical-without-approval where Cedar asks for step-up
    assert {c.decision_id for c in report.changes if c.kinds[0] == "step_up→deny"} == {"d-pay"}


def test_jsonl_reader_names_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    path.write_text('{"decision_id": "a"}\n\nnot json\n')
    with pytest.raises(InvalidInput, match=r"records.jsonl:3: not JSON"):
        list(read_jsonl(path))
