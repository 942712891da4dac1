"""docs/mcp.md walked as written, against a real ``nhi-broker up`` (its own data dir and port): the
example agent over stdio on the seeded ``demo-api``, then ``nhi-broker mcp --transport http`` as
the seeded ``mcp-server`` agent with a host's bearer token from ``nhi-broker agent token --mcp-url``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from support.mcp_rig import ROOT
from support.ports import free_port
from support.wait import HTTP_TIMEOUT, wait_until

pytestmark = [pytest.mark.openbao, pytest.mark.slow]
BIN = Path(sys.executable).parent


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=2 * HTTP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def walk(tmp_path_factory) -> Iterator[tuple[Path, str, str, dict[str, str]]]:
    data_dir = tmp_path_factory.mktemp("walk") / ".nhi-broker"
    port, mcp_port = free_port(), free_port()
    mcp_url = f"http://127.0.0.1:{mcp_port}/mcp"
    # the docs' default MCP URL is 127.0.0.1:8765; a test takes a free port through the override
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "NHI_BROKER_TOKEN_EXCHANGE__MCP_RESOURCES": json.dumps([{"url": mcp_url, "server_agent": "mcp-server"}]),
    }
    env.pop("NHI_BROKER_DATA_DIR", None)
    up = subprocess.Popen(
        [str(BIN / "nhi-broker"), "up", "--data-dir", str(data_dir), "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def started() -> bool:
            assert up.poll() is None, up.stderr.read() if up.stderr else ""
            return (data_dir / "up.json").exists() and bool((data_dir / "up.json").read_text())

        wait_until(started, what="up.json")
        yield data_dir, f"http://127.0.0.1:{port}", mcp_url, env
    finally:
        _stop(up)


def test_the_example_agent_runs_as_documented_against_nhi_broker_up_on_demo_api(walk):
    data_dir, url, _, env = walk
    done = subprocess.run(
        [sys.executable, str(ROOT / "docs/examples/mcp_agent.py"), "--url", url, "--data-dir", str(data_dir)],
        env=env,
        cwd=data_dir.parent,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "200 (redactions: 0)" in done.stdout and "demo data for demo-data" in done.stdout
    assert "'state': 'ended'" in done.stdout


def test_the_example_agent_reports_a_tool_error_in_one_line_and_still_ends_the_task(walk):
    data_dir, url, _, env = walk
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "docs/examples/mcp_agent.py"),
            "--url",
            url,
            "--data-dir",
            str(data_dir),
            "--path",
            "/secret/data/demo-secrets/example",  # demo-api has no rule for it
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert 'no request rule of resource "demo-api" allows GET /secret/data/demo-secrets/example' in done.stderr
    assert "'state': 'ended'" in done.stdout


async def _http_host(mcp_url: str, token: str) -> tuple[dict, dict]:
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
    async with (
        http,
        streamable_http_client(mcp_url, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        task = json.loads(
            (await session.call_tool("open_task", {"profile": "demo", "purpose": "walk"})).content[0].text
        )
        call = await session.call_tool(
            "call_api",
            {
                "task_id": task["task_id"],
                "resource": "demo-api",
                "method": "GET",
                "path": "/secret/data/demo-data/example",
            },
        )
        assert not call.is_error, call.content
        ended = await session.call_tool("end_task", {"task_id": task["task_id"]})
        return json.loads(call.content[0].text), json.loads(ended.content[0].text)


def test_the_http_url_configuration_works_against_nhi_broker_up_with_a_token_from_agent_token_mcp_url(walk):
    data_dir, url, mcp_url, env = walk
    port = mcp_url.rsplit(":", 1)[1].split("/")[0]
    server = subprocess.Popen(
        [
            str(BIN / "nhi-broker"),
            "mcp",
            "--transport",
            "http",
            "--port",
            port,
            "--url",
            url,
            "--data-dir",
            str(data_dir),
            "--agent",
            "mcp-server",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        metadata = mcp_url.replace("/mcp", "/.well-known/oauth-protected-resource/mcp")
        wait_until(
            lambda: server.poll() is not None or httpx.get(metadata, timeout=HTTP_TIMEOUT).status_code == 200,
            what="the MCP HTTP server",
        )
        assert server.poll() is None, server.stderr.read() if server.stderr else ""
        minted = subprocess.run(
            [
                str(BIN / "nhi-broker"),
                "agent",
                "token",
                "demo-agent",
                "--data-dir",
                str(data_dir),
                "--mcp-url",
                mcp_url,
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert minted.returncode == 0, minted.stderr
        token = minted.stdout.strip()
        assert "the broker's API refuses it" in minted.stderr
        # the broker's own API refuses this token: it is for that MCP server only
        refused = httpx.post(
            f"{url}/v1/tasks",
            json={"profile": "demo", "purpose": "passthrough"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=HTTP_TIMEOUT,
        )
        assert refused.status_code == 401
        answer, ended = anyio.run(_http_host, mcp_url, token)
        assert answer["status"] == 200 and "demo data for demo-data" in answer["body"]
        assert ended["state"] == "ended"
    finally:
        _stop(server)
