"""PolicyHolder: start-up refuses a bad bundle; a bad reload keeps the old bundle in force."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from broker.models import Outcome
from broker.policy import BundleError, PolicyHolder, ReloadResult
from tests.policy.conftest import make_input

STRICT = '@id("no-db-read")\n@reason("reads are frozen")\nforbid (principal, action == Action::"db.read", resource);\n'


def test_start_up_fails_with_file_and_line_on_a_bad_bundle(bundle_copy: Path) -> None:
    (bundle_copy / "policies" / "50-bad.cedar").write_text('@id("x")\npermit (principal, action, resource)\n')
    with pytest.raises(BundleError, match=r"policies/50-bad.cedar:2: syntax error"):
        PolicyHolder.load(bundle_copy)


def test_reload_with_a_broken_bundle_keeps_the_old_one_in_force(bundle_copy: Path) -> None:
    holder = PolicyHolder.load(bundle_copy)
    old_hash = holder.bundle_hash
    (bundle_copy / "policies" / "50-bad.cedar").write_text("forbid (principal, action, resource) when { ; };\n")
    result = holder.reload()
    assert not result.ok and not result.changed
    assert result.active_hash == old_hash == holder.bundle_hash
    assert result.candidate_hash not in (None, old_hash)
    assert result.problems[0].file == "policies/50-bad.cedar" and result.problems[0].line == 1
    assert result.audit_event()["kind"] == "policy.reload_refused"
    assert holder.decide(make_input("db.read", "demo-data")).outcome is Outcome.ALLOW


def test_reload_with_a_good_bundle_switches_atomically_and_is_audited(bundle_copy: Path) -> None:
    holder = PolicyHolder.load(bundle_copy)
    old_hash = holder.bundle_hash
    (bundle_copy / "policies" / "50-strict.cedar").write_text(STRICT)
    result = holder.reload()
    assert result.ok and result.changed and result.previous_hash == old_hash
    assert result.active_hash == holder.bundle_hash != old_hash
    assert result.audit_event() == {"kind": "policy.reloaded", "data": result.to_dict()}
    d = holder.decide(make_input("db.read", "demo-data"))
    assert d.outcome is Outcome.DENY and d.policy_ids == ("no-db-read",) and d.bundle_hash == holder.bundle_hash


def test_reload_without_changes_reports_unchanged(bundle_copy: Path) -> None:
    holder = PolicyHolder.load(bundle_copy)
    engine = holder.engine()
    result = holder.reload()
    assert result.ok and not result.changed and result.audit_kind == "policy.reload_unchanged"
    assert holder.engine() is engine


def test_poll_reloads_on_change_and_reports_a_refused_bundle_once(bundle_copy: Path) -> None:
    holder = PolicyHolder.load(bundle_copy)
    assert holder.poll() is None
    bad = bundle_copy / "policies" / "50-bad.cedar"
    bad.write_text("permit (principal, action, resource);\n")  # no @id
    first = holder.poll()
    assert first is not None and not first.ok and first.trigger == "watch"
    assert holder.poll() is None  # same bad content: not reported again
    bad.write_text(STRICT)
    fixed = holder.poll()
    assert fixed is not None and fixed.ok and fixed.changed


def test_watcher_thread_reloads_and_reports(bundle_copy: Path) -> None:
    holder = PolicyHolder.load(bundle_copy)
    seen: list[ReloadResult] = []
    done = threading.Event()

    def report(result: ReloadResult) -> None:
        seen.append(result)
        done.set()

    watcher = holder.watch(0.05, report)
    try:
        (bundle_copy / "policies" / "50-strict.cedar").write_text(STRICT)
        assert done.wait(5)
    finally:
        watcher.stop()
    assert seen[0].ok and seen[0].changed and holder.bundle_hash == seen[0].active_hash


def test_info_names_the_active_bundle(bundle_copy: Path) -> None:
    holder = PolicyHolder.load(bundle_copy)
    info = holder.info()
    assert info["bundle_hash"] == holder.bundle_hash and info["directory"] == str(bundle_copy)
    assert "step-up-critical" in info["policies"] and "policies/40-step-up.cedar" in info["files"]


def test_holder_satisfies_the_decision_engine_port(bundle_copy: Path) -> None:
    from broker.decisions import DecisionEngine

    holder: DecisionEngine = PolicyHolder.load(bundle_copy)
    assert holder.bundle_hash == holder.decide(make_input("db.read", "demo-data")).bundle_hash
