"""``nhi-broker mcp --transport http`` follows the MCP authorization spec: protected-resource
metadata (RFC 9728) naming the broker, 401 with ``resource_metadata`` for a missing or wrong
token, tokens bound to this server's audience (RFC 8707), no token passthrough; one server acts
for several agents, each only as itself; a step-up may be waited for through MCP elicitation."""

from __future__ import annotations

import json
import re

import anyio
import httpx
import mcp_types as types
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm
from mcp.client.session import ClientRequestContext
from support.approver import approve, approver_token
from support.broker import ADMIN_TOKEN
from support.mcp_rig import OTHER_MCP, SERVER_AGENT, McpRig, agent_mcp_token, mcp_session
from support.wait import HTTP_TIMEOUT

from broker.identity.dpop import make_proof

pytestmark = [pytest.mark.openbao, pytest.mark.slow]

GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT = "urn:ietf:params:oauth:token-type:jwt"
ACCESS = "urn:ietf:params:oauth:token-type:access_token"
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def _exchange(rig: McpRig, **form: str) -> httpx.Response:
    base = {"grant_type": GRANT, "subject_token_type": JWT}
    return httpx.post(f"{rig.broker.url}/v1/token", data={**base, **form}, timeout=HTTP_TIMEOUT)


def _redeem(rig: McpRig, subject: str, actor_agent: str) -> httpx.Response:
    """An MCP server's exchange (no DPoP proof): ``subject`` for a broker token, as ``actor_agent``."""
    return _exchange(
        rig,
        subject_token=subject,
        subject_token_type=ACCESS,
        actor_token=rig.broker.token(actor_agent),
        actor_token_type=JWT,
    )


def _post_mcp(rig: McpRig, token: str | None) -> httpx.Response:
    headers = {**MCP_HEADERS, **({"Authorization": f"Bearer {token}"} if token else {})}
    return httpx.post(rig.mcp_url, json=INIT, headers=headers, timeout=HTTP_TIMEOUT)


def _structured(result) -> dict:
    assert not result.is_error, result.content
    data = result.structured_content if result.structured_content is not None else json.loads(result.content[0].text)
    return data.get("result", data) if set(data) == {"result"} else data


def test_mcp_http_without_a_token_answers_401_naming_its_metadata_which_names_the_broker(mcp_rig, mcp_http):
    resp = _post_mcp(mcp_rig, None)
    assert resp.status_code == 401
    challenge = resp.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    found = re.search(r'resource_metadata="([^"]+)"', challenge)
    assert found and found.group(1) == mcp_rig.mcp_url.replace("/mcp", "/.well-known/oauth-protected-resource/mcp")
    meta = httpx.get(found.group(1), timeout=HTTP_TIMEOUT).json()
    assert meta["resource"].rstrip("/") == mcp_rig.mcp_url
    assert [s.rstrip("/") for s in meta["authorization_servers"]] == [mcp_rig.broker.url]
    server = httpx.get(f"{mcp_rig.broker.url}/.well-known/oauth-authorization-server", timeout=HTTP_TIMEOUT).json()
    assert server["token_endpoint"].endswith("/v1/token") and ACCESS in server["subject_token_types_supported"]


def test_mcp_http_accepts_only_tokens_bound_to_its_own_audience(mcp_rig, mcp_http):
    ok = _post_mcp(mcp_rig, agent_mcp_token(mcp_rig))
    assert ok.status_code == 200, ok.text
    # a token for another (registered) MCP server
    other = _exchange(mcp_rig, subject_token=mcp_rig.broker.token(), resource=OTHER_MCP)
    assert other.status_code == 200, other.text
    refused = _post_mcp(mcp_rig, other.json()["access_token"])
    assert refused.status_code == 401 and "resource_metadata=" in refused.headers["www-authenticate"]
    # a broker-audience token (what the broker's own API takes) is not a token for this server
    broker_token = _exchange(mcp_rig, subject_token=mcp_rig.broker.token())
    assert broker_token.status_code == 200, broker_token.text
    assert _post_mcp(mcp_rig, broker_token.json()["access_token"]).status_code == 401
    # garbage and a workload identity token: refused too
    assert _post_mcp(mcp_rig, "not.a.token").status_code == 401
    assert _post_mcp(mcp_rig, mcp_rig.broker.token()).status_code == 401


def test_an_mcp_audience_token_is_refused_by_the_brokers_own_api(mcp_rig):
    made = _exchange(mcp_rig, subject_token=mcp_rig.broker.token(), resource=mcp_rig.mcp_url)
    assert made.status_code == 200 and made.json()["token_type"] == "Bearer"
    token = made.json()["access_token"]
    resp = httpx.post(
        f"{mcp_rig.broker.url}/v1/tasks",
        json={"profile": "demo", "purpose": "passthrough"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=HTTP_TIMEOUT,
    )
    assert resp.status_code == 401, resp.text


def test_the_token_endpoint_issues_mcp_tokens_only_for_registered_mcp_servers(mcp_rig):
    unknown = _exchange(mcp_rig, subject_token=mcp_rig.broker.token(), resource="http://127.0.0.1:9/evil-mcp")
    assert unknown.status_code == 400 and unknown.json()["error"] == "invalid_target"
    mixed = _exchange(mcp_rig, subject_token=mcp_rig.broker.token(), resource=mcp_rig.mcp_url, audience=OTHER_MCP)
    assert mixed.status_code == 400 and mixed.json()["error"] == "invalid_target"
    # MCP clients send bearer tokens: a DPoP-bound token for an MCP server is refused, not half-bound
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    proof = make_proof(key, jwk, method="POST", url=f"{mcp_rig.broker.url}/v1/token")
    bound = httpx.post(
        f"{mcp_rig.broker.url}/v1/token",
        data={"grant_type": GRANT, "subject_token_type": JWT, "subject_token": mcp_rig.broker.token()}
        | {"resource": mcp_rig.mcp_url},
        headers={"DPoP": proof},
        timeout=HTTP_TIMEOUT,
    )
    assert bound.status_code == 400 and "send no DPoP proof" in bound.json()["error_description"]


def test_only_the_registered_mcp_server_may_exchange_an_mcp_token_and_only_with_dpop(mcp_rig):
    made = _exchange(mcp_rig, subject_token=mcp_rig.broker.token(), resource=mcp_rig.mcp_url)
    mcp_token = made.json()["access_token"]
    # no actor: whoever holds the MCP token cannot redeem it at the broker
    bare = _exchange(mcp_rig, subject_token=mcp_token, subject_token_type=ACCESS)
    assert bare.status_code == 400 and bare.json()["error"] == "invalid_request"
    assert "actor_token" in bare.json()["error_description"]
    # another agent (the token's own agent included) posing as the MCP server
    posing = _redeem(mcp_rig, mcp_token, "demo-agent")
    assert posing.status_code == 400 and posing.json()["error"] == "invalid_grant"
    assert f"is not the MCP server of {mcp_rig.mcp_url}" in posing.json()["error_description"]
    # the MCP server itself, but without binding the result to its key
    unbound = _redeem(mcp_rig, mcp_token, SERVER_AGENT)
    assert unbound.status_code == 400 and unbound.json()["error"] == "invalid_dpop_proof"
    # a broker-audience token is not an MCP token to exchange
    broker_token = _exchange(mcp_rig, subject_token=mcp_rig.broker.token()).json()["access_token"]
    again = _redeem(mcp_rig, broker_token, SERVER_AGENT)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


async def _two_agents(rig: McpRig) -> dict:
    out: dict = {}
    with anyio.fail_after(120):
        async with (
            mcp_session("http", rig, agent="demo-agent") as demo,
            mcp_session("http", rig, agent="other-agent") as other,
        ):
            mine = _structured(await demo.call_tool("open_task", {"profile": "demo", "purpose": "demo's"}))
            theirs = _structured(await other.call_tool("open_task", {"profile": "demo", "purpose": "other's"}))
            out["mine"], out["theirs"] = mine, theirs
            out["cross_end"] = await other.call_tool("end_task", {"task_id": mine["task_id"]})
            out["cross_call"] = await other.call_tool(
                "call_api",
                {"task_id": mine["task_id"], "resource": "crm-api", "method": "GET", "path": "/v1/customers/1"},
            )
            out["end_mine"] = _structured(await demo.call_tool("end_task", {"task_id": mine["task_id"]}))
            out["end_theirs"] = _structured(await other.call_tool("end_task", {"task_id": theirs["task_id"]}))
    return out


def test_one_mcp_http_server_acts_for_each_agent_only_as_that_agent(mcp_rig, mcp_http):
    out = anyio.run(_two_agents, mcp_rig)
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    agent_of = {
        key: httpx.get(
            f"{mcp_rig.broker.url}/v1/admin/tasks/{out[key]['task_id']}", headers=admin, timeout=HTTP_TIMEOUT
        ).json()["task"]["agent"]
        for key in ("mine", "theirs")
    }
    assert agent_of == {"mine": "demo-agent", "theirs": "other-agent"}
    assert out["cross_end"].is_error and "404" in out["cross_end"].content[0].text
    assert out["cross_call"].is_error and "404" in out["cross_call"].content[0].text
    assert out["end_mine"]["state"] == "ended" and out["end_theirs"]["state"] == "ended"


PAY = {"resource": "pay-api", "method": "POST", "path": "/v1/charges", "body": {"amount": 42}}


async def _pay_with_elicitation(rig: McpRig, transport: str, accept: bool) -> dict:
    out: dict = {"asked": []}
    approver = approver_token(rig.broker.url, ADMIN_TOKEN)

    async def elicit(context: ClientRequestContext, params: types.ElicitRequestParams) -> types.ElicitResult:
        message = params.message
        out["asked"].append(message)
        if not accept:
            return types.ElicitResult(action="decline")
        approval_id = re.search(r"apr_[A-Za-z0-9_]+", message)
        assert approval_id is not None, message
        # the person approves while the tool waits (off the event loop: the client must keep serving)
        answer = await anyio.to_thread.run_sync(approve, rig.broker.url, approver, approval_id.group(0), "invoice 42")
        assert answer.status_code == 200, answer.text
        return types.ElicitResult(action="accept", content={"wait": True})

    with anyio.fail_after(120):
        async with mcp_session(transport, rig, elicitation=elicit) as session:
            task = _structured(await session.call_tool("open_task", {"profile": "demo", "purpose": "pay"}))
            before = rig.upstream.charges
            out["paid"] = _structured(await session.call_tool("call_api", {"task_id": task["task_id"], **PAY}))
            out["charges"] = rig.upstream.charges - before
            await session.call_tool("end_task", {"task_id": task["task_id"]})
    return out


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_a_step_up_is_waited_for_through_elicitation_and_the_call_is_made_once_approved(transport, mcp_rig, request):
    if transport == "http":
        request.getfixturevalue("mcp_http")
    out = anyio.run(_pay_with_elicitation, mcp_rig, transport, True)
    assert len(out["asked"]) == 1 and "POST /v1/charges on pay-api" in out["asked"][0] and "Wait" in out["asked"][0]
    assert out["paid"]["status"] == 201 and json.loads(out["paid"]["body"]) == {"charged": {"amount": 42}}
    assert out["paid"]["approval_id"].startswith("apr_") and out["charges"] == 1


def test_a_declined_elicitation_falls_back_to_the_step_up_result(mcp_rig, mcp_http):
    out = anyio.run(_pay_with_elicitation, mcp_rig, "http", False)
    assert len(out["asked"]) == 1
    assert out["paid"]["step_up"] is True and out["paid"]["approval_id"].startswith("apr_")
    assert out["charges"] == 0
