# nhi-broker: allow-file  (deliberate fixtures: fake credentials built for these tests)
"""Findings carry confidence; --min-confidence filters; SARIF levels follow it."""

from __future__ import annotations

import json
import random

from typer.testing import CliRunner

from broker.cli.main import app
from scanners import Scanner
from scanners.rules import Confidence
from scanners.synth import github_token
from tests.scanners.conftest import KEY

RNG = random.Random(5)
runner = CliRunner()
GENERIC = 'DB_PASSWORD = "Qm7rT2xZ9wLp4K"\n'


def test_checksum_valid_token_is_high_and_generic_assignment_is_low() -> None:
    tok = github_token(RNG, "ghp_")
    found = Scanner(key=KEY).scan(f"T={tok}\n{GENERIC}")
    assert [(f.rule_id, f.confidence) for f in found] == [
        ("github-classic-pat", Confidence.HIGH),
        ("generic-password-assignment", Confidence.LOW),
    ]


def test_min_confidence_filters_low_findings() -> None:
    tok = github_token(RNG, "ghp_")
    found = Scanner(key=KEY, min_confidence=Confidence.MEDIUM).scan(f"T={tok}\n{GENERIC}")
    assert [f.rule_id for f in found] == ["github-classic-pat"]


def test_cli_min_confidence_and_sarif_levels_follow_confidence(tmp_path) -> None:
    tok = github_token(RNG, "ghp_")
    (tmp_path / "a.py").write_text(f"T = '{tok}'\n{GENERIC}")
    res = runner.invoke(app, ["scan", str(tmp_path), "--format", "sarif"])
    assert res.exit_code == 1, res.output
    results = json.loads(res.stdout)["runs"][0]["results"]
    assert sorted((r["ruleId"], r["level"]) for r in results) == [
        ("generic-password-assignment", "note"),
        ("github-classic-pat", "error"),
    ]
    res = runner.invoke(app, ["scan", str(tmp_path), "--format", "json", "--min-confidence", "high"])
    assert [f["rule"] for f in json.loads(res.stdout)["findings"]] == ["github-classic-pat"]
    (tmp_path / "a.py").write_text(GENERIC)
    assert runner.invoke(app, ["scan", str(tmp_path), "--min-confidence", "medium"]).exit_code == 0


def test_allow_file_marker_suppresses_a_fixture_file_in_the_cli(tmp_path) -> None:
    tok = github_token(RNG, "ghp_")
    (tmp_path / "fixture.txt").write_text(f"# nhi-broker: allow-file\n{tok}\n")
    assert runner.invoke(app, ["scan", str(tmp_path)]).exit_code == 0
    (tmp_path / "fixture.txt").write_text(f"# header\n{tok}\n")
    assert runner.invoke(app, ["scan", str(tmp_path)]).exit_code == 1


def test_provider_validation_is_off_unless_asked_for(tmp_path, monkeypatch) -> None:
    """Validation would send secrets to providers: without --validate it must never be called."""
    from scanners.kingfisher import KingfisherEngine

    def refuse(*_a: object, **_k: object) -> object:
        raise AssertionError("provider validation ran without --validate")

    monkeypatch.setattr(KingfisherEngine, "validate", refuse)
    (tmp_path / "a.py").write_text(f"T = '{github_token(RNG, 'ghp_')}'\n")
    res = runner.invoke(app, ["scan", str(tmp_path), "--format", "json"])
    [finding] = json.loads(res.stdout)["findings"]
    assert res.exit_code == 1 and "validation" not in finding


def test_engine_that_cannot_load_fails_when_required_and_falls_back_when_auto(tmp_path, monkeypatch) -> None:
    from scanners.kingfisher import EngineUnavailable, KingfisherEngine

    def broken(self: KingfisherEngine) -> None:
        self.error = "kingfisher rules failed to compile (OSError)"
        self._ready.set()
        raise EngineUnavailable(self.error)

    monkeypatch.setattr(KingfisherEngine, "_compile", broken)
    (tmp_path / "a.py").write_text(f"T = '{github_token(RNG, 'ghp_')}'\n")
    res = runner.invoke(app, ["scan", str(tmp_path), "--engine", "kingfisher"])
    assert res.exit_code == 2 and "failed to compile" in res.output
    res = runner.invoke(app, ["scan", str(tmp_path), "--engine", "auto", "--format", "json"])
    assert res.exit_code == 1 and "built-in rules only" in res.output
