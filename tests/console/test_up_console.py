"""`nhi-broker up --console-issuer URL`: the embedded default with a local OIDC provider, walked as
docs/console.md ("Try the console locally") tells an evaluator to: a real `up` process, a real
provider on loopback, a person registered with the CLI, the code flow through the browser's hops."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from support.oidc import CONSOLE_CLIENT_SECRET, OidcProvider, sign_in_steps
from support.ports import free_port
from support.wait import HTTP_TIMEOUT, wait_until

pytestmark = [pytest.mark.openbao, pytest.mark.slow]
BIN = Path(sys.executable).parent


def test_up_with_console_issuer_signs_in_a_registered_person_and_refuses_others(tmp_path):
    provider = OidcProvider()
    data_dir, port = tmp_path / "nhi", free_port()
    env = {**os.environ, "NHI_BROKER_CONSOLE__CLIENT_SECRET": CONSOLE_CLIENT_SECRET}
    proc = subprocess.Popen(
        [
            str(BIN / "nhi-broker"),
            "up",
            "--data-dir",
            str(data_dir),
            "--port",
            str(port),
            *["--console-issuer", provider.issuer],
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:

        def started() -> bool:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            return (data_dir / "up.json").exists() and bool((data_dir / "up.json").read_text())

        wait_until(started, what="up.json")
        url = json.loads((data_dir / "up.json").read_text())["url"]
        put = subprocess.run(
            [
                *(str(BIN / "nhi-broker"), "people", "put", "alice", "--role", "approver"),
                *("--issuer", provider.issuer, "--subject", "alice@example.test", "--data-dir", str(data_dir)),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert put.returncode == 0, put.stderr
        with httpx.Client(base_url=url, timeout=HTTP_TIMEOUT, follow_redirects=False) as http:
            landed = sign_in_steps(http, "alice@example.test")
            assert landed.status_code == 200 and "alice" in landed.text
            assert "nhi_console" in http.cookies  # no __Host- prefix: http://127.0.0.1 only
        with httpx.Client(base_url=url, timeout=HTTP_TIMEOUT, follow_redirects=False) as http:
            refused = sign_in_steps(http, "mallory@example.test")  # authenticated, not registered
            assert refused.status_code == 403 and "Not a registered person" in refused.text
            assert http.get("/console/approvals").status_code == 303  # still signed out
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=2 * HTTP_TIMEOUT)
        assert f"--issuer {provider.issuer}" in err  # the summary says how to register a person
        assert CONSOLE_CLIENT_SECRET not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        provider.stop()


def test_up_refuses_a_console_issuer_without_a_discovery_document(tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"
    done = subprocess.run(
        [
            str(BIN / "nhi-broker"),
            "up",
            "--data-dir",
            str(tmp_path / "nhi"),
            "--port",
            str(free_port()),
            "--console-issuer",
            dead,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "--console-issuer" in done.stderr and "openid-configuration" in done.stderr
