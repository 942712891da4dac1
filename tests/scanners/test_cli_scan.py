from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from broker.cli.main import app
from scanners.synth import github_token

RNG = random.Random(3)
runner = CliRunner()


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "src").mkdir(parents=True)
    (root / "src" / "app.py").write_text(f"TOKEN = '{github_token(RNG, 'ghp_')}'\n")
    (root / "src" / "fixture.py").write_text(f"T = '{github_token(RNG, 'ghp_')}'  # nhi-broker: allow\n")
    (root / "ignored.log").write_text(f"{github_token(RNG, 'ghp_')}\n")
    (root / ".gitignore").write_text("*.log\n")
    (root / "blob.bin").write_bytes(b"\0\1" + github_token(RNG, "ghp_").encode())
    outside = tmp_path / "outside.txt"
    outside.write_text(f"{github_token(RNG, 'ghp_')}\n")
    os.symlink(outside, root / "link.txt")
    return root


def test_scan_reports_only_the_real_finding_and_exits_1(tree: Path) -> None:
    res = runner.invoke(app, ["scan", str(tree), "--format", "json"])
    assert res.exit_code == 1, res.output
    doc = json.loads(res.stdout)
    assert [f["path"].rsplit("/", 2)[-2:] for f in doc["findings"]] == [["src", "app.py"]]
    assert "ghp_" in doc["findings"][0]["redacted"] and len(doc["findings"][0]["redacted"]) < 16


def test_scan_with_baseline_suppresses_known_findings_and_exits_0(tree: Path, tmp_path: Path) -> None:
    base = tmp_path / "baseline.json"
    assert runner.invoke(app, ["scan", str(tree), "--write-baseline", str(base)]).exit_code == 0
    assert runner.invoke(app, ["scan", str(tree), "--baseline", str(base)]).exit_code == 0
    (tree / "src" / "new.py").write_text(f"K = '{github_token(RNG, 'ghp_')}'\n")
    res = runner.invoke(app, ["scan", str(tree), "--baseline", str(base), "--format", "json"])
    assert res.exit_code == 1
    assert [f["path"].rsplit("/", 1)[-1] for f in json.loads(res.stdout)["findings"]] == ["new.py"]


def test_scan_exits_2_on_missing_path_or_bad_baseline(tmp_path: Path) -> None:
    assert runner.invoke(app, ["scan", str(tmp_path / "nope")]).exit_code == 2
    bad = tmp_path / "b.json"
    bad.write_text("[]")
    assert runner.invoke(app, ["scan", str(tmp_path), "--baseline", str(bad)]).exit_code == 2


# SARIF 2.1.0 requirements for GitHub code scanning upload (subset of the OASIS schema)
SARIF_SUBSET = {
    "type": "object",
    "required": ["version", "runs", "$schema"],
    "properties": {
        "version": {"const": "2.1.0"},
        "runs": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["tool", "results"],
                "properties": {
                    "tool": {
                        "type": "object",
                        "required": ["driver"],
                        "properties": {
                            "driver": {
                                "type": "object",
                                "required": ["name", "rules"],
                                "properties": {
                                    "rules": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "required": ["id", "shortDescription"],
                                            "properties": {
                                                "defaultConfiguration": {
                                                    "properties": {
                                                        "level": {"enum": ["none", "note", "warning", "error"]}
                                                    }
                                                }
                                            },
                                        },
                                    }
                                },
                            }
                        },
                    },
                    "results": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["ruleId", "message", "locations"],
                            "properties": {
                                "level": {"enum": ["none", "note", "warning", "error"]},
                                "message": {"type": "object", "required": ["text"]},
                                "locations": {
                                    "type": "array",
                                    "minItems": 1,
                                    "items": {
                                        "type": "object",
                                        "required": ["physicalLocation"],
                                        "properties": {
                                            "physicalLocation": {
                                                "type": "object",
                                                "required": ["artifactLocation", "region"],
                                                "properties": {
                                                    "artifactLocation": {"type": "object", "required": ["uri"]},
                                                    "region": {
                                                        "type": "object",
                                                        "required": ["startLine"],
                                                        "properties": {
                                                            "startLine": {"type": "integer", "minimum": 1},
                                                            "startColumn": {"type": "integer", "minimum": 1},
                                                        },
                                                    },
                                                },
                                            }
                                        },
                                    },
                                },
                                "partialFingerprints": {"type": "object", "additionalProperties": {"type": "string"}},
                            },
                        },
                    },
                },
            },
        },
    },
}


def test_sarif_output_is_valid_for_code_scanning_upload(tree: Path) -> None:
    import jsonschema

    res = runner.invoke(app, ["scan", str(tree), "--format", "sarif"])
    doc = json.loads(res.stdout)
    jsonschema.validate(doc, SARIF_SUBSET)
    result = doc["runs"][0]["results"][0]
    rules = doc["runs"][0]["tool"]["driver"]["rules"]
    assert rules[result["ruleIndex"]]["id"] == result["ruleId"] == "github-classic-pat"
    assert not result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].startswith("/")
