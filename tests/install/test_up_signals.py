"""`nhi-broker up` / `make up` stop cleanly: exit 0 on SIGINT or SIGTERM (no `make: *** Error 143`),
OpenBao's root token never on a command line, the per-instance demo PostgreSQL roles dropped."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from support.ports import free_port

from broker.demo_postgres import DemoRoles

pytestmark = [pytest.mark.openbao, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 120


def _free_port() -> int:
    return free_port()  # tests/support/ports.py: outside the ephemeral range, this worker's slice


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NHI_BROKER_")}
    env["PYTHONPATH"] = str(ROOT)
    return env


def _wait_up(proc: subprocess.Popen[str], data_dir: Path) -> dict[str, object]:
    deadline = time.monotonic() + DEADLINE
    up_json = data_dir / "up.json"
    while not (up_json.exists() and up_json.read_text().strip()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "up.json never appeared"
        time.sleep(0.1)
    info: dict[str, object] = json.loads(up_json.read_text())
    return info


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _pg_roles(*names: str) -> set[str]:
    with psycopg.connect(
        "host=127.0.0.1 port=5432 dbname=postgres user=postgres connect_timeout=3", autocommit=True
    ) as conn:
        return {r[0] for r in conn.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (list(names),))}


def _pg_at_5432() -> bool:
    try:
        _pg_roles("postgres")
    except psycopg.OperationalError:
        return False
    return True


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_up_exits_0_on_a_stop_signal_and_cleans_up(tmp_path, sig):
    data_dir = tmp_path / "dd"
    proc = subprocess.Popen(
        [sys.executable, "-m", "broker.cli", "up", "--data-dir", str(data_dir), "--port", str(_free_port())],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        info = _wait_up(proc, data_dir)
        (bao_pid,) = [p for p in _children(proc.pid) if b"server" in Path(f"/proc/{p}/cmdline").read_bytes()]
        cmdline = Path(f"/proc/{bao_pid}/cmdline").read_bytes()
        assert str(info["openbao_token"]).encode() not in cmdline  # `ps` shows no root token
        assert oct((data_dir / "openbao.log").stat().st_mode & 0o777) == "0o600"
        roles = DemoRoles.for_data_dir(data_dir)
        with_pg = _pg_at_5432()
        if with_pg:
            assert _pg_roles(roles.connection, roles.readers) == {roles.connection, roles.readers}
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=DEADLINE)
        assert proc.returncode == 0, err
        assert "Traceback" not in err and "nhi-broker stopped" in err
        if with_pg:
            assert _pg_roles(roles.connection, roles.readers) == set()
            assert f"dropped the demo PostgreSQL roles {roles.readers}, {roles.connection}" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture()
def make_venv(tmp_path):
    """A stand-in for .venv whose `nhi-broker` runs this checkout (so `make up` installs nothing)."""
    if shutil.which("make") is None:
        pytest.fail("make is not installed (the README's set-up commands need it)")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    launcher = venv / "bin" / "nhi-broker"
    launcher.write_text(f'#!/bin/sh\nPYTHONPATH="{ROOT}" exec "{sys.executable}" -m broker.cli "$@"\n')
    launcher.chmod(0o755)
    (venv / ".up-stamp").touch()
    stamp_time = (ROOT / "pyproject.toml").stat().st_mtime + 1
    os.utime(venv / ".up-stamp", (stamp_time, stamp_time))
    return venv


def _make_up(make_venv: Path, data_dir: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["make", "-C", str(ROOT), "up", f"VENV={make_venv}", f"ARGS=--data-dir {data_dir} --port {_free_port()}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(),
        start_new_session=True,
    )


def test_make_up_ends_without_error_when_the_broker_gets_sigterm(tmp_path, make_venv):
    data_dir = tmp_path / "dd"
    proc = _make_up(make_venv, data_dir)
    try:
        info = _wait_up(proc, data_dir)
        os.kill(int(info["pid"]), signal.SIGTERM)  # e.g. `kill $(jq .pid up.json)`, a supervisor
        out, _ = proc.communicate(timeout=DEADLINE)
        assert proc.returncode == 0, out
        assert "Error" not in out and "nhi-broker stopped" in out
        assert "pip install" not in out  # the stand-in venv was up to date: nothing installed
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_make_up_stops_the_broker_cleanly_when_the_whole_group_gets_sigterm(tmp_path, make_venv):
    data_dir = tmp_path / "dd"
    proc = _make_up(make_venv, data_dir)
    try:
        _wait_up(proc, data_dir)
        os.killpg(proc.pid, signal.SIGTERM)  # a terminal closing, `timeout`, systemd's KillMode
        out, _ = proc.communicate(timeout=DEADLINE)
        assert "Error 143" not in out
        assert "nhi-broker stopped" in out  # the broker finished its shutdown before make went away
        assert not (data_dir / "up.json").exists()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
