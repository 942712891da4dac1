"""`nhi-broker serve` start-up errors: one line naming the setting, exit 2, no traceback
(the traceback only with --debug)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from support.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
ADMIN = "admin-token-for-startup-tests-0123456789"
BAO_TOKEN = "openbao-token-for-startup-tests-0123456789"


def _closed_port() -> int:
    return free_port()  # nothing listens there (tests/support/ports.py: no other process draws it)


def serve(config: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("NHI_BROKER_")}
    full["PYTHONPATH"] = str(ROOT)
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "broker.cli", "serve", "--config", str(config), *extra],
        capture_output=True,
        text=True,
        env=full,
        cwd=config.parent,
        timeout=120,
    )


def _assert_one_line_error(r: subprocess.CompletedProcess[str], *expected: str) -> str:
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    assert ADMIN not in r.stderr and BAO_TOKEN not in r.stderr
    return lines[0]


# a PostgreSQL store needs the keys every replica shares (issue 13), else that is the first error
SHARED_KEYS = {"fingerprint_key": "'" + "ab" * 32 + "'", "audit": "{key: '" + "cd" * 32 + "'}"}


def _good(tmp_path: Path, **overrides: str) -> str:
    settings = {
        "data_dir": str(tmp_path / "data"),
        "port": "0",
        "openbao": f"{{addr: 'http://127.0.0.1:{_closed_port()}', token: {BAO_TOKEN}}}",
        "admin_token": ADMIN,
        **overrides,
    }
    return "".join(f"{k}: {v}\n" for k, v in settings.items() if v is not None)


def test_serve_reports_invalid_yaml_with_its_line(tmp_path):
    cfg = tmp_path / "broker.yaml"
    cfg.write_text("admin_token: x\nopenbao: [unclosed\n")
    _assert_one_line_error(serve(cfg), str(cfg), "not valid YAML", "line")


def test_serve_names_a_missing_setting(tmp_path):
    cfg = tmp_path / "broker.yaml"
    cfg.write_text(_good(tmp_path, admin_token=None))  # type: ignore[arg-type]
    _assert_one_line_error(serve(cfg), "admin_token", "missing")


def test_serve_names_an_invalid_setting_without_echoing_its_value(tmp_path):
    cfg = tmp_path / "broker.yaml"
    cfg.write_text(_good(tmp_path, port="'not-a-port-9f3c'"))
    line = _assert_one_line_error(serve(cfg), "port")
    assert "not-a-port-9f3c" not in line


def test_serve_names_an_unknown_setting(tmp_path):
    cfg = tmp_path / "broker.yaml"
    cfg.write_text(_good(tmp_path, databse_url="'sqlite://'"))
    _assert_one_line_error(serve(cfg), "databse_url")


def test_serve_reports_an_unreachable_database_naming_database_url(tmp_path):
    port = _closed_port()
    cfg = tmp_path / "broker.yaml"
    cfg.write_text(
        _good(tmp_path, database_url=f"'postgresql+psycopg://nhi:pw-9f3c@127.0.0.1:{port}/nhi'", **SHARED_KEYS)
    )
    line = _assert_one_line_error(serve(cfg), "database_url", f"127.0.0.1:{port}/nhi")
    assert "pw-9f3c" not in line


def test_serve_reports_a_database_that_never_answers_instead_of_hanging(tmp_path):
    # a listener that accepts the TCP connection and never speaks PostgreSQL (a stuck server, a
    # firewall that swallows the startup packet): the connect timeout ends start-up with the error
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        cfg = tmp_path / "broker.yaml"
        cfg.write_text(_good(tmp_path, database_url=f"'postgresql+psycopg://nhi@127.0.0.1:{port}/nhi'", **SHARED_KEYS))
        _assert_one_line_error(serve(cfg), "database_url", f"127.0.0.1:{port}/nhi")


def test_serve_reports_an_unreachable_openbao(tmp_path):
    cfg = tmp_path / "broker.yaml"
    cfg.write_text(_good(tmp_path))
    _assert_one_line_error(serve(cfg), "openbao.addr", "unreachable")


def test_serve_names_openbao_token_when_openbao_refuses_it(tmp_path, openbao):
    cfg = tmp_path / "broker.yaml"
    cfg.write_text(_good(tmp_path, openbao=f"{{addr: '{openbao.address}', token: {BAO_TOKEN}}}"))
    _assert_one_line_error(serve(cfg), "openbao.token")


def test_serve_reports_a_missing_config_file(tmp_path):
    _assert_one_line_error(serve(tmp_path / "nope.yaml"), "--config", "nope.yaml")


@pytest.mark.parametrize("case", ["yaml", "database"])
def test_serve_prints_the_traceback_only_with_debug(tmp_path, case):
    cfg = tmp_path / "broker.yaml"
    if case == "yaml":
        cfg.write_text("openbao: [unclosed\n")
    else:
        cfg.write_text(_good(tmp_path, database_url=f"'postgresql+psycopg://nhi@127.0.0.1:{_closed_port()}/nhi'"))
    r = serve(cfg, "--debug")
    assert r.returncode == 2
    assert "Traceback" in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("error: ")


def test_serve_refuses_more_than_one_worker_on_the_sqlite_store(tmp_path):
    cfg = tmp_path / "broker.yaml"
    cfg.write_text(_good(tmp_path))  # no database_url: SQLite under the data directory
    _assert_one_line_error(serve(cfg, "--workers", "2"), "--workers", "PostgreSQL", "SQLite", "single-process")
    assert not (tmp_path / "data").exists()  # refused before anything was built


def test_serve_refuses_a_worker_count_out_of_range(tmp_path):
    cfg = tmp_path / "broker.yaml"
    cfg.write_text(_good(tmp_path))
    _assert_one_line_error(serve(cfg, "--workers", "0"), "--workers", "between 1 and 64")
