"""An agent that uses only MCP: it never sees a credential.

    python docs/examples/mcp_agent.py --url http://127.0.0.1:8080 --data-dir .nhi-broker \\
        --agent demo-agent --resource demo-api --path /secret/data/demo-data/example

(``demo-api`` is the ``http_api`` resource ``nhi-broker up`` registers: its dev OpenBao's KV API,
called through the gateway with a child token the agent never sees.)

It starts ``nhi-broker mcp`` over stdio with the MCP SDK's own client, opens a task, calls the
``http_api`` resource through the broker's gateway (on a step-up it prints the approval id and
waits for a human's decision with ``approval_status``), and ends the task.

With ``--mcp-url http://127.0.0.1:8765/mcp`` it talks to a running ``nhi-broker mcp --transport
http`` instead (streamable HTTP): it follows the MCP authorization flow — the server's 401 names
its protected-resource metadata, which names the broker; the agent's workload identity is
exchanged there for a token bound to that MCP server (``resource``) — and sends it as a bearer
token. The MCP server never passes that token on.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from broker.client import mcp_access_token
from broker.identity import DevIssuer


class ToolFailed(Exception):
    """A tool answered with an error (the broker's message): the agent stops, the task is ended."""


def result(res) -> dict:  # type: ignore[no-untyped-def]
    if res.is_error:
        raise ToolFailed(f"tool error: {res.content[0].text}")
    data = res.structured_content or json.loads(res.content[0].text)
    return data.get("result", data) if set(data) == {"result"} else data


@asynccontextmanager
async def connect(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    if args.mcp_url is None:  # stdio: the MCP server runs as this agent
        server = StdioServerParameters(
            command=sys.executable,
            args=["-m", "broker.cli", "mcp", "--url", args.url, "--data-dir", args.data_dir, "--agent", args.agent],
        )
        async with stdio_client(server) as (read, write), ClientSession(read, write) as mcp:
            yield mcp
        return
    # streamable HTTP: an audience-bound token for that MCP server, from the agent's identity
    identity = DevIssuer.load(Path(args.data_dir)).mint(args.agent)
    # the identity goes only to the broker given with --url, whatever the MCP server's metadata says
    token = mcp_access_token(args.mcp_url, identity, authorization_server=args.url)
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {token.reveal()}"})
    async with (
        http,
        streamable_http_client(args.mcp_url, http_client=http) as (read, write),
        ClientSession(read, write) as mcp,
    ):
        yield mcp


async def main(args: argparse.Namespace) -> None:
    failed: str | None = None
    async with connect(args) as mcp:
        await mcp.initialize()
        for tool in (await mcp.list_tools()).tools:
            print(f"- {tool.name}: {tool.description}")
        task = result(await mcp.call_tool("open_task", {"profile": args.profile, "purpose": "example agent"}))
        call = {"task_id": task["task_id"], "resource": args.resource, "method": args.method, "path": args.path}
        try:
            answer = result(await mcp.call_tool("call_api", call))
            deadline = time.monotonic() + args.approval_wait
            while answer.get("step_up"):
                approval_id = answer["approval_id"]
                print(f"needs approval {approval_id}: nhi-broker approvals approve {approval_id}")
                state = "pending"
                while state == "pending":  # the long-poll is not a chain step; retrying the call would be
                    if time.monotonic() > deadline:
                        raise ToolFailed("not approved in time")
                    status = result(
                        await mcp.call_tool(
                            "approval_status",
                            {"task_id": task["task_id"], "approval_id": approval_id, "wait_seconds": 30},
                        )
                    )
                    state = status.get("state", "pending")
                if state != "approved":
                    raise ToolFailed(f"approval {approval_id} is {state}")
                answer = result(await mcp.call_tool("call_api", {**call, "approval_id": approval_id}))
            print(f"{answer['status']} (redactions: {answer['redactions']})\n{answer['body']}")
        except ToolFailed as exc:  # raised here, not inside the SDK's task groups: one clear line
            failed = str(exc)
        finally:
            ended = await mcp.call_tool("end_task", {"task_id": task["task_id"]})  # quarantined: already ended
            print(ended.content[0].text if ended.is_error else result(ended))
    if failed is not None:
        raise SystemExit(failed)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True)
    p.add_argument("--data-dir", default=".nhi-broker")
    p.add_argument("--agent", default="demo-agent")
    p.add_argument("--profile", default="demo")
    p.add_argument("--resource", default="demo-api")
    p.add_argument("--method", default="GET")
    p.add_argument("--path", default="/secret/data/demo-data/example")
    p.add_argument("--approval-wait", type=float, default=600)
    p.add_argument("--mcp-url", default=None, help="a running `nhi-broker mcp --transport http` (default: stdio)")
    anyio.run(main, p.parse_args())
