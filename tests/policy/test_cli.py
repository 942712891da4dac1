"""``nhi-broker policy validate|test|replay``: output and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from broker.cli.main import app
from broker.policy import CedarDecisionEngine
from tests.policy.conftest import make_input

runner = CliRunner()


def test_validate_accepts_the_default_bundle() -> None:
    result = runner.invoke(app, ["policy", "validate"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("valid: ")


def test_validate_fails_with_file_and_line_on_a_syntax_error(bundle_copy: Path) -> None:
    (bundle_copy / "policies" / "50-bad.cedar").write_text(
        '@id("a")\npermit (principal, action, resource)\nwhen { context.tier == };\n'
    )
    result = runner.invoke(app, ["policy", "validate", str(bundle_copy)])
    assert result.exit_code == 1
    assert f"{bundle_copy}/policies/50-bad.cedar:3: syntax error: unexpected token `}}`" in result.output


def test_test_command_passes_on_the_default_bundle_and_fails_on_a_wrong_case(bundle_copy: Path) -> None:
    ok = runner.invoke(app, ["policy", "test", str(bundle_copy)])
    assert ok.exit_code == 0 and "0 failed, 0 error(s)" in ok.output
    path = bundle_copy / "tests" / "step_up.yaml"
    path.write_text(
        path.read_text().replace(
            "expect: {outcome: step_up, tier: critical,", "expect: {outcome: allow, tier: critical,"
        )
    )
    bad = runner.invoke(app, ["policy", "test", str(bundle_copy)])
    assert bad.exit_code == 1
    assert "FAIL tests/step_up.yaml:" in bad.output and "outcome: expected 'allow', got 'step_up'" in bad.output


def test_replay_prints_the_changed_decisions(bundle_copy: Path, engine: CedarDecisionEngine, tmp_path: Path) -> None:
    records = tmp_path / "records.jsonl"
    records.write_text(
        "\n".join(
            json.dumps(engine.decide(make_input(a, r, decision_id=i)).record())
            for i, a, r in [("d-1", "db.read", "demo-data"), ("d-2", "secrets.read", "demo-secrets")]
        )
        + "\n"
    )
    (bundle_copy / "policies" / "50-ttl.cedar").write_text(
        '@id("short-secrets")\n@max_ttl("30")\npermit (principal, action == Action::"secrets.read", resource);\n'
    )
    result = runner.invoke(
        app,
        ["policy", "replay", "--bundle", str(bundle_copy), "--records", str(records), "--fail-on-change"],
        terminal_width=200,
    )
    assert result.exit_code == 1, result.output
    assert "d-2" in result.output and "ttl 300→30" in result.output and "d-1 " not in result.output
    assert "replayed 2: 1 changed, 1 unchanged, 0 skipped, 0 before --since" in result.output
    since = runner.invoke(
        app,
        [
            "policy",
            "replay",
            "--bundle",
            str(bundle_copy),
            "--records",
            str(records),
            "--since",
            "2030-01-01T00:00:00+00:00",
        ],
    )
    assert since.exit_code == 0 and "replayed 0: 0 changed" in since.output
