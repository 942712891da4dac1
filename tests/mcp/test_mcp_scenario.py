"""``nhi-broker mcp`` driven by the MCP SDK's own clients — stdio and streamable HTTP, the same
scenario — against a real broker (in-process, real OpenBao) and a real upstream: open_task →
call_api GET → a payment's step-up, approved by a person, retried once → a leak redacted and
escalated → end_task; the credential never in a tool result; the tools describe their consequence."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import anyio
import httpx
import pytest
from support.approver import approve, approver_token
from support.broker import ADMIN_TOKEN, RunningBroker
from support.mcp_rig import API_KEY, ROOT, SERVER_AGENT, McpRig, mcp_session
from support.wait import HTTP_TIMEOUT

pytestmark = [pytest.mark.openbao, pytest.mark.slow]


def structured(result) -> dict:
    assert not result.is_error, result.content
    if result.structured_content is not None:
        data = result.structured_content
        return data.get("result", data) if set(data) == {"result"} else data
    return json.loads(result.content[0].text)


async def _scenario(transport: str, rig: McpRig) -> dict:
    broker, upstream = rig.broker, rig.upstream
    out: dict = {}
    with anyio.fail_after(120):
        async with mcp_session(transport, rig) as session:
            tools = {t.name: t for t in (await session.list_tools()).tools}
            out["tools"] = {name: t.description or "" for name, t in tools.items()}
            task = structured(await session.call_tool("open_task", {"profile": "demo", "purpose": "mcp test"}))
            out["task"] = task
            call = await session.call_tool(
                "call_api",
                {"task_id": task["task_id"], "resource": "crm-api", "method": "GET", "path": "/v1/customers/7"},
            )
            out["call_raw"] = [c.model_dump_json() for c in call.content]
            out["call"] = structured(call)
            out["get_seen"] = upstream.received[-1]
            # a payment: step-up as a tool result, a human approves, the model waits and retries once
            pay = {
                "task_id": task["task_id"],
                "resource": "pay-api",
                "method": "POST",
                "path": "/v1/charges",
                "body": json.dumps({"amount": 500}),
            }
            out["charges_before"] = upstream.charges
            step_up = structured(await session.call_tool("call_api", pay))
            out["step_up"] = step_up
            pending = structured(
                await session.call_tool(
                    "approval_status", {"task_id": task["task_id"], "approval_id": step_up["approval_id"]}
                )
            )
            out["pending"] = pending
            approved = approve(broker.url, approver_token(broker.url, ADMIN_TOKEN), step_up["approval_id"], "invoice 7")
            assert approved.status_code == 200, approved.text
            out["approved"] = structured(
                await session.call_tool(
                    "approval_status",
                    {"task_id": task["task_id"], "approval_id": step_up["approval_id"], "wait_seconds": 10},
                )
            )
            out["paid"] = structured(
                await session.call_tool("call_api", {**pay, "approval_id": step_up["approval_id"]})
            )
            out["charges_after"] = upstream.charges
            out["pay_seen"] = upstream.received[-1]
            refused = await session.call_tool(
                "request_credential", {"task_id": task["task_id"], "action": "db.read", "resource": "crm-api"}
            )
            out["refused"] = refused
            out["end"] = structured(await session.call_tool("end_task", {"task_id": task["task_id"]}))
            # an upstream that echoes the broker-issued token: redacted, and the task escalates
            leaky = structured(await session.call_tool("open_task", {"profile": "demo", "purpose": "leak"}))
            out["echo"] = structured(
                await session.call_tool(
                    "call_api",
                    {"task_id": leaky["task_id"], "resource": "echo-api", "method": "GET", "path": "/v1/echo"},
                )
            )
            out["echo_token"] = upstream.received[-1]["headers"]["Authorization"].removeprefix("Bearer ")
            out["after_leak"] = await session.call_tool("end_task", {"task_id": leaky["task_id"]})
    return out


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_mcp_open_task_call_api_step_up_and_end_task_without_the_credential(transport, mcp_rig, request):
    if transport == "http":
        request.getfixturevalue("mcp_http")
    broker = mcp_rig.broker
    before = _exchanges(broker)
    out = anyio.run(_scenario, transport, mcp_rig)
    assert set(out["tools"]) >= {
        "open_task",
        "call_api",
        "request_credential",
        "report_event",
        "scan_text",
        "approval_status",
        "end_task",
    }
    assert "Consequence" in out["tools"]["call_api"] and "financial" in out["tools"]["call_api"]
    assert all("Consequence" in d for d in out["tools"].values())
    assert out["call"]["status"] == 200 and json.loads(out["call"]["body"]) == {"id": "7", "name": "Ada Lovelace"}
    assert out["get_seen"]["headers"]["X-Api-Key"] == API_KEY
    assert out["pay_seen"]["headers"]["Authorization"] == f"Bearer {API_KEY}"
    assert API_KEY not in json.dumps(out["call"]) + json.dumps(out["paid"]) + "".join(out["call_raw"])
    assert out["refused"].is_error and "only injected by the gateway" in out["refused"].content[0].text
    assert out["step_up"]["step_up"] is True and out["step_up"]["approval_id"].startswith("apr_")
    assert out["pending"]["state"] == "pending" and out["approved"]["state"] == "approved"
    assert out["paid"]["status"] == 201 and json.loads(out["paid"]["body"]) == {"charged": {"amount": 500}}
    assert out["charges_after"] == out["charges_before"] + 1
    assert out["end"]["state"] == "ended"
    assert out["echo"]["status"] == 200 and out["echo"]["task_escalated"] is True and out["echo"]["redactions"] >= 1
    assert out["echo_token"] and out["echo_token"] not in out["echo"]["body"]
    assert out["after_leak"].is_error and "quarantined" in out["after_leak"].content[0].text
    dead = httpx.get(
        f"{broker.openbao.address}/v1/auth/token/lookup-self", headers={"X-Vault-Token": out["echo_token"]}
    )
    assert dead.status_code == 403  # the dynamic upstream token died with the escalation
    # the MCP server exchanged an identity for a DPoP-bound broker token (no per-call workload JWTs);
    # over HTTP from the client's audience-bound token, proving its own identity (no passthrough)
    mine = [e for e in _exchanges(broker) if e["event_id"] not in {b["event_id"] for b in before}]
    for_broker = [e for e in mine if e["data"].get("audience") != mcp_rig.mcp_url]
    assert for_broker and all(e["data"]["dpop_bound"] is True for e in for_broker)
    if transport == "http":
        assert all(
            e["data"]["via_mcp"] == {"resource": mcp_rig.mcp_url, "server_agent": SERVER_AGENT} for e in for_broker
        )
        assert all(e["actor"] == "demo-agent" for e in for_broker)
        assert [e["data"]["dpop_bound"] for e in mine if e["data"].get("audience") == mcp_rig.mcp_url] == [False]


def _exchanges(broker: RunningBroker) -> list[dict]:
    return httpx.get(
        f"{broker.url}/v1/audit",
        params={"kind": "token.exchanged", "limit": 500},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=HTTP_TIMEOUT,
    ).json()["items"]


def test_mcp_refuses_to_start_without_an_identity(mcp_rig, tmp_path):
    broker = mcp_rig.broker

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "broker.cli", "mcp", "--url", broker.url],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0 and "--identity-token-file" in done.stderr


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_the_example_agent_uses_only_mcp_and_gets_the_redacted_response(transport, mcp_rig, request):
    broker, upstream = mcp_rig.broker, mcp_rig.upstream
    extra = ["--mcp-url", request.getfixturevalue("mcp_http")] if transport == "http" else []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "docs/examples/mcp_agent.py"),
            "--url",
            broker.url,
            "--data-dir",
            str(broker.data_dir),
            "--agent",
            "demo-agent",
            "--resource",
            "crm-api",
            "--path",
            "/v1/customers/3",
            *extra,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert '"id": "3"' in done.stdout and "'state': 'ended'" in done.stdout
    assert API_KEY not in done.stdout + done.stderr
    assert upstream.received[-1]["path"] == "/api/v1/customers/3"
