"""The command line as installed software: --version, NHI_BROKER_DATA_DIR everywhere, DevIssuer.load."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jwt
import pytest
import typer.main

from broker.cli.main import app
from broker.errors import NotFound
from broker.identity import DevIssuer

ROOT = Path(__file__).resolve().parents[2]


def nhi(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("NHI_BROKER_")}
    full_env["PYTHONPATH"] = str(ROOT)
    # wide enough that the error panel never wraps a path (pytest-xdist's temporary paths are long)
    full_env["COLUMNS"] = "1000"
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "broker.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd or ROOT,
        timeout=120,
    )


def test_version_prints_the_package_version_and_exits_0():
    from broker import __version__

    r = nhi("--version")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"nhi-broker {__version__}"


def _walk(command, path=()):
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _walk(sub, (*path, name))


def test_every_data_dir_option_reads_nhi_broker_data_dir():
    root = typer.main.get_command(app)
    seen = []
    for path, command in _walk(root):
        for param in command.params:
            if "--data-dir" in getattr(param, "opts", []):
                seen.append(" ".join(path))
                assert param.envvar == "NHI_BROKER_DATA_DIR", f"`nhi-broker {' '.join(path)}` --data-dir"
    # the commands that locate a running `up`: up, agent token, audit verify, policy replay, approvals, rotate,
    # terraform cli-config (its provider mirror lives in the data directory)
    for expected in (
        "up",
        "agent token",
        "audit verify",
        "policy replay",
        "approvals list",
        "rotate",
        "terraform cli-config",
    ):
        assert expected in seen, expected


def test_serve_settings_take_the_data_dir_from_the_environment(tmp_path, monkeypatch):
    from broker.cli.startup import load_settings_file

    cfg = tmp_path / "broker.yaml"
    cfg.write_text("dev_mode: true\n")
    monkeypatch.setenv("NHI_BROKER_DATA_DIR", str(tmp_path / "from-env"))
    assert load_settings_file(cfg).data_dir == tmp_path / "from-env"


def test_agent_token_reads_the_data_dir_from_the_environment(tmp_path):
    issuer = DevIssuer.load_or_create(tmp_path / "dd")
    r = nhi("agent", "token", "demo-agent", env={"NHI_BROKER_DATA_DIR": str(tmp_path / "dd")}, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    claims = jwt.decode(
        r.stdout.strip(), issuer.issuer_config().public_key_pem, algorithms=["EdDSA"], audience="nhi-broker"
    )
    assert claims["sub"] == "demo-agent"


def test_agent_token_names_the_path_and_creates_nothing_when_no_issuer_is_there(tmp_path):
    empty = tmp_path / "not-a-data-dir"
    r = nhi("agent", "token", "demo-agent", env={"NHI_BROKER_DATA_DIR": str(empty)}, cwd=tmp_path)
    assert r.returncode == 1
    assert str(empty / "dev-issuer" / "private_key.pem") in r.stderr.replace("\n", "")
    assert not empty.exists()


def test_audit_verify_looks_in_the_data_dir_from_the_environment(tmp_path):
    r = nhi("audit", "verify", env={"NHI_BROKER_DATA_DIR": str(tmp_path / "elsewhere")}, cwd=tmp_path)
    assert r.returncode != 0
    assert "elsewhere" in r.stderr


def test_dev_issuer_load_fails_loudly_naming_the_path_when_no_key_is_there(tmp_path):
    with pytest.raises(NotFound, match=r"no dev issuer key at .*wrong/dev-issuer/private_key.pem"):
        DevIssuer.load(tmp_path / "wrong")
    assert not (tmp_path / "wrong").exists()  # load never creates a key (load_or_create would)


def test_dev_issuer_load_returns_the_issuer_the_broker_created(tmp_path):
    created = DevIssuer.load_or_create(tmp_path)
    loaded = DevIssuer.load(str(tmp_path))
    assert loaded.kid == created.kid


def test_policy_replay_records_flag_wins_over_the_data_dir_from_the_environment(tmp_path):
    records = tmp_path / "decisions.jsonl"
    records.write_text("")
    bundle = ROOT / "policies" / "default"
    r = nhi(
        "policy",
        "replay",
        "--bundle",
        str(bundle),
        "--records",
        str(records),
        env={"NHI_BROKER_DATA_DIR": str(tmp_path / "dd")},
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert "replayed 0" in r.stdout
    both = nhi(
        "policy",
        "replay",
        "--bundle",
        str(bundle),
        "--records",
        str(records),
        "--data-dir",
        str(tmp_path / "dd"),
        cwd=tmp_path,
    )
    assert both.returncode != 0 and "not both" in both.stderr
