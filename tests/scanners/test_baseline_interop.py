# nhi-broker: allow-file  (deliberate fixtures: fake credentials built for these tests)
"""detect-secrets interop: its .secrets.baseline carries over; we write one it can read; its
plugins run as extra detectors when configured."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from broker.cli.main import app
from scanners.plugins import DetectSecretsPlugins
from scanners.synth import github_token

RNG = random.Random(8)
runner = CliRunner()


def _aws_key() -> str:
    return "AKIA" + "".join(RNG.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16))


def test_detect_secrets_baseline_suppresses_audited_secrets_and_new_ones_are_reported(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "old.py").write_text(f"GH = '{github_token(RNG, 'ghp_')}'\nAWS = '{_aws_key()}'\n")
    # the team's baseline, written by detect-secrets itself
    made = subprocess.run(
        [sys.executable, "-m", "detect_secrets", "scan", "--all-files"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    )
    baseline = repo / ".secrets.baseline"
    baseline.write_text(made.stdout)
    assert json.loads(made.stdout)["results"]["old.py"]
    res = runner.invoke(app, ["scan", str(repo / "old.py"), "--baseline", str(baseline)])
    assert res.exit_code == 0, res.output
    (repo / "new.py").write_text(f"GH = '{github_token(RNG, 'ghp_')}'\n")
    res = runner.invoke(
        app, ["scan", str(repo / "old.py"), str(repo / "new.py"), "--baseline", str(baseline), "--format", "json"]
    )
    assert res.exit_code == 1
    assert [f["path"].rsplit("/", 1)[-1] for f in json.loads(res.stdout)["findings"]] == ["new.py"]


def test_written_secrets_baseline_is_detect_secrets_format_and_round_trips(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text(f"GH = '{github_token(RNG, 'ghp_')}'\n")
    out = tmp_path / ".secrets.baseline"
    assert runner.invoke(app, ["scan", str(tmp_path / "a.py"), "--write-baseline", str(out)]).exit_code == 0
    doc = json.loads(out.read_text())
    [entry] = next(iter(doc["results"].values()))
    assert set(entry) >= {"type", "filename", "hashed_secret", "is_verified", "line_number"}
    from detect_secrets.core.secrets_collection import SecretsCollection

    assert len(list(SecretsCollection.load_from_baseline(doc))) == 1  # detect-secrets reads it
    assert runner.invoke(app, ["scan", str(tmp_path / "a.py"), "--baseline", str(out)]).exit_code == 0


def test_detect_secrets_plugin_runs_as_an_extra_detector(tmp_path: Path) -> None:
    det = DetectSecretsPlugins(["KeywordDetector"])
    [d] = det.detect('api_password = "Tz8kQ2mV9xLp"\n', "a.py")
    assert (d.rule_id, d.confidence.value) == ("detect-secrets-secret-keyword", "low")
    (tmp_path / "a.py").write_text('x = 1\napi_password = "Tz8kQ2mV9xLp"\n')
    res = runner.invoke(
        app,
        [
            "scan",
            str(tmp_path),
            "--format",
            "json",
            "--engine",
            "builtin",
            "--detect-secrets-plugin",
            "KeywordDetector",
        ],
    )
    assert "detect-secrets-secret-keyword" in {f["rule"] for f in json.loads(res.stdout)["findings"]}


def test_unknown_detect_secrets_plugin_is_a_usage_error_naming_it(tmp_path: Path) -> None:
    res = runner.invoke(app, ["scan", str(tmp_path), "--detect-secrets-plugin", "NoSuchDetector"])
    assert res.exit_code == 2 and "NoSuchDetector" in res.output
