"""A real broker (in-process, real OpenBao), a real upstream and ``nhi-broker mcp`` over both
transports, for the MCP tests: the SDK's own stdio and streamable HTTP clients drive them."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp.client.session import ClientSession, ElicitationFnT
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from broker.client import mcp_access_token

from .broker import ADMIN_TOKEN, RunningBroker, start_broker
from .ports import free_port
from .upstream import Upstream
from .wait import HTTP_TIMEOUT, wait_until

ROOT = Path(__file__).resolve().parents[2]  # the checkout
KV_PATH = "gateway/mcp-crm"
API_KEY = "mcp-crm-key-4f1d2c9a8b7e6d5c"  # nhi-broker: allow (the test upstream's key)
SERVER_AGENT = "mcp-server"  # the agent the MCP HTTP server itself runs as
OTHER_MCP = "http://127.0.0.1:9/other-mcp"  # another registered MCP server (never started)


@dataclass
class McpRig:
    broker: RunningBroker
    upstream: Upstream
    mcp_url: str  # the MCP HTTP server's resource URL


def _put(broker: RunningBroker, path: str, body: dict[str, Any]) -> None:
    resp = httpx.put(
        f"{broker.url}{path}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, json=body, timeout=HTTP_TIMEOUT
    )
    assert resp.status_code in (200, 201), resp.text


def _http_api(up: Upstream, **http: Any) -> dict[str, Any]:
    return {"base_url": up.base_url, **http}


@pytest.fixture(scope="module")
def mcp_rig(openbao, tmp_path_factory) -> Iterator[McpRig]:
    port = free_port()
    mcp_url = f"http://127.0.0.1:{port}/mcp"
    running = start_broker(
        tmp_path_factory.mktemp("mcp-broker"),
        openbao,
        token_exchange={
            "mcp_resources": [
                {"url": mcp_url, "server_agent": SERVER_AGENT},
                {"url": OTHER_MCP, "server_agent": SERVER_AGENT},
            ]
        },
    )
    with running.bao().client() as c:
        c.secrets.kv.v2.create_or_update_secret(path=KV_PATH, secret={"api_key": API_KEY}, mount_point="secret")
    up = Upstream(api_key=API_KEY, openbao_addr=openbao.address)
    kv = {"source": "vault_kv", "mount": "secret", "path": KV_PATH, "field": "api_key"}
    _put(
        running,
        "/v1/admin/resources/crm-api",
        {
            "kind": "http_api",
            "sensitivity": "internal",
            "environment": "dev",
            "http": _http_api(up, auth="header", auth_name="X-Api-Key", rules=["GET /v1/customers/* db.read"], **kv),
        },
    )
    _put(
        running,
        "/v1/admin/resources/pay-api",
        {
            "kind": "http_api",
            "sensitivity": "restricted",
            "environment": "prod",
            "http": _http_api(up, auth="bearer", rules=["POST /v1/charges payments.charge"], **kv),
        },
    )
    _put(
        running,
        "/v1/admin/resources/echo-api",
        {
            "kind": "http_api",
            "sensitivity": "internal",
            "environment": "dev",
            "http": _http_api(
                up, auth="bearer", source="vault_token", policies=["nhi-demo-data"], rules=["GET /v1/echo db.read"]
            ),
        },
    )
    for name in (SERVER_AGENT, "other-agent"):
        _put(
            running,
            f"/v1/admin/agents/{name}",
            {
                "owner": "someone",
                "profiles": ["demo"],
                "identities": [{"issuer": "urn:nhi-broker:dev", "subject": name}],
            },
        )
    yield McpRig(running, up, mcp_url)
    up.close()
    running.stop()


@pytest.fixture(scope="module")
def mcp_http(mcp_rig: McpRig) -> Iterator[str]:
    """``nhi-broker mcp --transport http`` as a subprocess, running as the ``mcp-server`` agent."""
    broker = mcp_rig.broker
    port = mcp_rig.mcp_url.rsplit(":", 1)[1].split("/")[0]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NHI_BROKER_URL": broker.url}
    cmd = [
        sys.executable,
        "-m",
        "broker.cli",
        "mcp",
        "--transport",
        "http",
        "--port",
        port,
        "--data-dir",
        str(broker.data_dir),
        "--agent",
        SERVER_AGENT,
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        metadata = mcp_rig.mcp_url.replace("/mcp", "/.well-known/oauth-protected-resource/mcp")
        wait_until(
            lambda: proc.poll() is not None or httpx.get(metadata, timeout=5).status_code == 200,
            what="the MCP HTTP server to serve its metadata",
        )
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        yield mcp_rig.mcp_url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


def stdio_params(broker: RunningBroker, agent: str = "demo-agent") -> StdioServerParameters:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NHI_BROKER_URL": broker.url}
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "broker.cli", "mcp", "--data-dir", str(broker.data_dir), "--agent", agent],
        env=env,
    )


def agent_mcp_token(rig: McpRig, agent: str = "demo-agent") -> str:
    """What an MCP client does (MCP authorization): 401 → resource metadata → broker → token."""
    return mcp_access_token(rig.mcp_url, rig.broker.token(agent), authorization_server=rig.broker.url).reveal()


@asynccontextmanager
async def mcp_session(
    transport: str,
    rig: McpRig,
    *,
    agent: str = "demo-agent",
    token: str | None = None,
    elicitation: ElicitationFnT | None = None,
) -> AsyncIterator[ClientSession]:
    """An initialised MCP client session of the SDK's own client over ``transport``."""
    if transport == "stdio":
        async with (
            stdio_client(stdio_params(rig.broker, agent)) as (read, write),
            ClientSession(read, write, elicitation_callback=elicitation) as session,
        ):
            await session.initialize()
            yield session
        return
    bearer = token or agent_mcp_token(rig, agent)
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {bearer}"})
    async with (
        http,
        streamable_http_client(rig.mcp_url, http_client=http) as (read, write),
        ClientSession(read, write, elicitation_callback=elicitation) as session,
    ):
        await session.initialize()
        yield session
