"""`nhi-broker up` as a user runs it: a real process, real OpenBao, SQLite, the demo seed."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from support.ports import free_port
from support.wait import HTTP_TIMEOUT, wait_until

pytestmark = [pytest.mark.openbao, pytest.mark.slow]
BIN = Path(sys.executable).parent


def test_up_serves_demo_writes_up_json_and_stops_everything_on_sigterm(tmp_path):
    data_dir, port = tmp_path / "nhi", free_port()
    proc = subprocess.Popen(
        [str(BIN / "nhi-broker"), "up", "--data-dir", str(data_dir), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def started() -> bool:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            return (data_dir / "up.json").exists()

        wait_until(started, what="up.json")
        info = json.loads((data_dir / "up.json").read_text())
        assert {"url", "admin_token", "openbao_addr", "openbao_token"} <= set(info)
        assert oct((data_dir / "up.json").stat().st_mode & 0o777) == "0o600"
        assert info["url"] == f"http://127.0.0.1:{port}"
        assert httpx.get(f"{info['url']}/healthz", timeout=HTTP_TIMEOUT).status_code == 200
        names = {
            r["name"]
            for r in httpx.get(
                f"{info['url']}/v1/admin/resources",
                headers={"Authorization": f"Bearer {info['admin_token']}"},
                timeout=HTTP_TIMEOUT,
            ).json()["items"]
        }
        assert {"demo-data", "demo-secrets", "prod-payments", "demo-kv"} <= names
        # the CLI mints a dev token that the running broker accepts
        token = subprocess.run(
            [str(BIN / "nhi-broker"), "agent", "token", "demo-agent", "--data-dir", str(data_dir)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert token.count(".") == 2
        r = httpx.post(
            f"{info['url']}/v1/tasks",
            json={"profile": "demo", "purpose": "smoke"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=HTTP_TIMEOUT,
        )
        assert r.status_code == 201
        task_id = r.json()["task_id"]
        # --exchange: a reusable bearer access token from the running broker, with a warning
        exchanged = subprocess.run(
            [str(BIN / "nhi-broker"), "agent", "token", "demo-agent", "--data-dir", str(data_dir), "--exchange"],
            capture_output=True,
            text=True,
            check=True,
        )
        access = exchanged.stdout.strip()
        assert "NOT bound to a key" in exchanged.stderr and access != token
        for _ in range(2):  # reusable, unlike the single-use identity token
            assert (
                httpx.get(
                    f"{info['url']}/v1/tasks/{task_id}",
                    headers={"Authorization": f"Bearer {access}"},
                    timeout=HTTP_TIMEOUT,
                ).status_code
                == 200
            )
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=2 * HTTP_TIMEOUT)
        assert proc.returncode is not None
        assert "stopped" in err
        assert not (data_dir / "up.json").exists()
        # the task still open at shutdown was ended (its credentials revoked) before OpenBao stopped
        assert "ended 1 active task(s)" in err
        with sqlite3.connect(data_dir / "broker.db") as db:
            assert db.execute("SELECT state FROM tasks WHERE task_id = ?", (task_id,)).fetchone() == ("ended",)
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{info['openbao_addr']}/v1/sys/health", timeout=HTTP_TIMEOUT)
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{info['url']}/healthz", timeout=HTTP_TIMEOUT)
        # the audit guard the runner started left a signed checkpoint of the final head (after the
        # shutdown's own events), and the trail verifies against it
        checkpoints = data_dir / "audit-checkpoints.jsonl"
        assert oct(checkpoints.stat().st_mode & 0o777) == "0o600"
        assert oct((data_dir / "audit.key").stat().st_mode & 0o777) == "0o600"
        with sqlite3.connect(data_dir / "broker.db") as db:
            head_seq = db.execute("SELECT seq FROM audit_head").fetchone()[0]
        assert max(json.loads(line)["seq"] for line in checkpoints.read_text().splitlines()) == head_seq
        verify = subprocess.run(
            [str(BIN / "nhi-broker"), "audit", "verify", "--data-dir", str(data_dir)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert verify.returncode == 0 and f"intact: {head_seq} events" in verify.stdout, verify.stderr
        assert (data_dir / "audit.key").read_text().strip() not in err + checkpoints.read_text()
        summary = err
        assert "nhi-broker agent token demo-agent" in summary and "Ctrl-C" in summary
        assert info["admin_token"] not in summary and info["openbao_token"] not in summary
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
