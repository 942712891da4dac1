"""Explain a recorded decision and replay the broker's store against a stricter bundle (item 5)."""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from broker.cli.main import app
from policies import DEFAULT_BUNDLE

pytestmark = pytest.mark.openbao

STRICTER = """
@id("forbid-writes-to-demo-data")
@reason("candidate: no more writes to demo-data")
forbid (principal, action == Action::"db.write", resource)
when { resource.environment == "dev" && resource.sensitivity == "internal" };
"""


def test_explain_returns_inputs_factors_tier_policies_bundle_outcome_and_ttl(api):
    task_id = api.open_task("explain me")
    assert api.credential(task_id, "db.read", "demo-data").status_code == 200
    decision = api.credential(task_id, "secrets.read", "demo-secrets").json()["decision"]
    record = api.admin("GET", f"/v1/decisions/{decision['decision_id']}").json()
    assert (record["outcome"], record["tier"], record["mode"]) == ("allow", "high", "inline")
    assert record["ttl_seconds"] == decision["ttl_seconds"] and record["uses"] == 1
    assert "secret-retrieval-single-use" in record["policy_ids"] and len(record["bundle_hash"]) == 64
    assert {"consequence", "sensitivity", "environment", "trust"} <= set(record["factors"])
    i = record["inputs"]
    assert (i["agent"], i["task_id"], i["action"], i["resource"]) == (
        "demo-agent",
        task_id,
        "secrets.read",
        "demo-secrets",
    )
    assert i["chain"]["steps"] == 1 and i["chain"]["actions"] == ["db.read"]
    assert api.admin("GET", "/v1/decisions/dec_nope").status_code == 404


def stricter_bundle(tmp_path: Path) -> Path:
    bundle = tmp_path / "candidate"
    shutil.copytree(DEFAULT_BUNDLE, bundle, ignore=shutil.ignore_patterns("tests", "__pycache__"))
    (bundle / "policies" / "50-candidate.cedar").write_text(STRICTER)
    return bundle


def changed_ids(output: str) -> set[str]:
    return {m.group(1) for m in re.finditer(r"^\s+(dec_[0-9a-f]+)\s", output, re.MULTILINE)}


def test_store_replay_reports_exactly_the_decisions_a_stricter_bundle_changes(api, approvals_broker, tmp_path):
    before = datetime.now(UTC)
    task_id = api.open_task("traffic to replay")
    writes = []
    for action, resource in (
        ("db.read", "demo-data"),
        ("db.write", "demo-data"),
        ("secrets.read", "demo-secrets"),
        ("db.write", "demo-data"),
        ("payments.charge", "prod-payments"),
    ):
        resp = api.credential(task_id, action, resource)
        assert resp.status_code in (200, 202), resp.text
        if action == "db.write":
            writes.append(resp.json()["decision"]["decision_id"])
    bundle = stricter_bundle(tmp_path)
    runner = CliRunner()
    args = ["policy", "replay", "--bundle", str(bundle), "--data-dir", str(approvals_broker.data_dir)]
    result = runner.invoke(app, [*args, "--since", before.isoformat()])
    assert result.exit_code == 0, result.output
    assert changed_ids(result.output) == set(writes)
    assert result.output.count("allow→deny") == 2 and "forbid-writes-to-demo-data" in result.output
    assert "replayed 5: 2 changed, 3 unchanged" in result.output

    # without --since, every stored decision is replayed; the unchanged default bundle changes nothing
    same = runner.invoke(
        app,
        [
            "policy",
            "replay",
            "--bundle",
            str(DEFAULT_BUNDLE),
            "--data-dir",
            str(approvals_broker.data_dir),
            "--fail-on-change",
        ],
    )
    assert same.exit_code == 0, same.output
    assert " 0 changed" in same.output
    strict = runner.invoke(app, [*args, "--fail-on-change"])
    assert strict.exit_code == 1 and set(writes) <= changed_ids(strict.output)


def test_store_replay_names_a_missing_store_and_a_missing_source(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["policy", "replay", "--bundle", str(DEFAULT_BUNDLE), "--data-dir", str(tmp_path)])
    assert result.exit_code == 1 and "no store at" in result.output
    result = runner.invoke(
        app, ["policy", "replay", "--bundle", str(DEFAULT_BUNDLE)], env={"NHI_BROKER_DATABASE_URL": ""}
    )
    assert result.exit_code == 1 and "--records" in result.output
