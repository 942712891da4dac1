"""``nhi-broker mcp``: the broker's agent API as MCP tools (official ``mcp`` SDK, stdio transport).

The model behind an MCP host gets tools, never standing secrets: ``call_api`` goes through the
broker's gateway, which injects the credential and redacts the response. The server proves the
agent's identity once (a workload token file, re-read when it changes, or the dev issuer),
exchanges it for a DPoP-bound access token (RFC 8693 + RFC 9449) and keeps the key in memory.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from broker.client import BrokerClient, BrokerClientError
from broker.identity import DevIssuer
from broker.logging import quiet_http_clients

MAX_BODY_CHARS = 100_000  # what one tool result may carry back to the model

INSTRUCTIONS = (
    "Tools of the nhi-broker credential broker. Open a task first (open_task), do the work with "
    "call_api (the broker calls the API for you and injects the credential: you never see it), and "
    "end the task (end_task). A call that needs a human's approval answers step_up with an "
    "approval_id: tell the user what you are about to do and why, then retry with that approval_id "
    "once approved. Every call is decided by consequence and recorded."
)


class TokenFile:
    """A workload identity token on disk (projected service-account token, JWT-SVID): re-read
    whenever the file changes, never cached past a change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[float, int] | None = None
        self._value = ""

    def __call__(self) -> str:
        with self._lock:
            st = self.path.stat()
            stamp = (st.st_mtime, st.st_size)
            if stamp != self._stamp:
                value = self.path.read_text().strip()
                if not value:
                    raise ToolError(f"identity token file {self.path} is empty")
                self._value, self._stamp = value, stamp
            return self._value


def identity_source(token_file: Path | None, data_dir: Path | None, agent: str | None) -> Callable[[], str]:
    if token_file is not None:
        return TokenFile(token_file)
    if data_dir is not None and agent:
        issuer = DevIssuer.load(data_dir)
        return lambda: issuer.mint(agent)
    raise ValueError("give --identity-token-file PATH, or --data-dir DIR with --agent NAME")


def _fail(exc: BrokerClientError) -> ToolError:
    return ToolError(f"broker refused ({exc.status} {exc.code}): {exc}")


def build_server(client: BrokerClient) -> MCPServer:
    server: MCPServer = MCPServer("nhi-broker", instructions=INSTRUCTIONS)

    @server.tool(
        description=(
            "Open a task: one unit of work under a task profile, with its purpose. Consequence: none by "
            "itself; every later call is decided against this task and revoked with it. Returns task_id."
        )
    )
    def open_task(profile: str, purpose: str) -> dict[str, Any]:
        try:
            return client.open_task(profile, purpose)
        except BrokerClientError as exc:
            raise _fail(exc) from exc

    @server.tool(
        description=(
            "Call an HTTP API the platform registered (an http_api resource) through the broker: the broker "
            "maps METHOD + path to an action, decides it by consequence (observe/read: usually immediate; "
            "write, financial, export, privilege: may need a human's approval, then the answer is step_up with "
            "an approval_id), injects the credential and returns the response with secrets redacted. You never "
            "hold the credential. Consequence: that of the mapped action (a POST to a payment path moves money)."
        )
    )
    def call_api(
        task_id: str,
        resource: str,
        method: str,
        path: str,
        body: str | dict[str, Any] | list[Any] | None = None,
        content_type: str = "application/json",
        approval_id: str | None = None,
    ) -> dict[str, Any]:
        raw = body if isinstance(body, str) or body is None else json.dumps(body)  # JSON bodies as objects too
        try:
            resp = client.call_api(
                task_id,
                resource,
                method.upper(),
                path,
                body=raw.encode() if raw is not None else None,
                headers={"Content-Type": content_type} if body is not None else None,
                approval_id=approval_id,
            )
        except BrokerClientError as exc:
            raise _fail(exc) from exc
        if resp.status_code == 202 and "x-nhi-decision-id" not in resp.headers:
            data = resp.json()
            return {
                "step_up": True,
                "approval_id": data.get("approval_id"),
                "decision": data.get("decision"),
                "next": "a human must approve this; wait with approval_status, then call call_api again "
                "with the same arguments and approval_id",
            }
        text = resp.text
        return {
            "status": resp.status_code,
            "content_type": resp.headers.get("content-type"),
            "body": text[:MAX_BODY_CHARS],
            "truncated": len(text) > MAX_BODY_CHARS,
            "redactions": int(resp.headers.get("x-nhi-redactions", "0")),
            "task_escalated": resp.headers.get("x-nhi-task-escalated") == "true",
            "decision_id": resp.headers.get("x-nhi-decision-id"),
        }

    @server.tool(
        description=(
            "Request a credential for a backend where the agent itself must hold one (a database login, a "
            "cloud session). Consequence: that of the action; the credential is short-lived and revoked with "
            "the task. An http_api resource is refused: use call_api. Prefer call_api whenever it fits."
        )
    )
    def request_credential(task_id: str, action: str, resource: str, approval_id: str | None = None) -> dict[str, Any]:
        try:
            cred = client.request_credential(task_id, action, resource, approval_id)
        except BrokerClientError as exc:
            raise _fail(exc) from exc
        if not cred.issued:
            return {"step_up": True, "approval_id": cred.approval_id, "decision": cred.decision}
        return {"decision": cred.decision, **cred.fields, **{name: cred.secret(name) for name in cred.secrets}}

    @server.tool(
        description=(
            "Report a step of your work to the broker's chain (kind: prompt, output, tool_call, tool_result); "
            "its text is scanned for leaked secrets and never stored. Consequence: observe; a broker-issued "
            "secret in the text escalates (ends) the task."
        )
    )
    def report_event(
        task_id: str, kind: str, text: str | None = None, action: str | None = None, resource: str | None = None
    ) -> dict[str, Any]:
        try:
            return client.report_event(task_id, kind, text, action, resource)
        except BrokerClientError as exc:
            raise _fail(exc) from exc

    @server.tool(
        description=(
            "Scan text for secrets before you show or send it; returns findings and a redacted copy. "
            "Consequence: observe; a broker-issued secret found escalates its task."
        )
    )
    def scan_text(text: str) -> dict[str, Any]:
        try:
            return client.scan(text)
        except BrokerClientError as exc:
            raise _fail(exc) from exc

    @server.tool(
        description=(
            "The state of a step-up approval (pending, approved, denied, expired, cancelled, collected), "
            "waiting up to wait_seconds (at most 30) for a human's decision. Poll this, not call_api: it is "
            "not a chain step. Consequence: observe."
        )
    )
    def approval_status(task_id: str, approval_id: str, wait_seconds: int = 0) -> dict[str, Any]:
        try:
            return client.approval_status(task_id, approval_id, max(0, min(wait_seconds, 30)))
        except BrokerClientError as exc:
            raise _fail(exc) from exc

    @server.tool(
        description=(
            "End the task: every credential it holds is revoked at its backend. Consequence: reversible "
            "for you (open another task), final for the credentials."
        )
    )
    def end_task(task_id: str) -> dict[str, Any]:
        try:
            return client.end_task(task_id)
        except BrokerClientError as exc:
            raise _fail(exc) from exc

    return server


def serve_stdio(url: str, identity: Callable[[], str]) -> None:
    with BrokerClient(url, identity, exchange=True) as client:
        server = build_server(client)
        quiet_http_clients()  # after the SDK configured logging: no request URLs on stderr
        server.run("stdio")


__all__ = ["TokenFile", "build_server", "identity_source", "serve_stdio"]
