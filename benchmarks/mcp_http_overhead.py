"""MCP over streamable HTTP: a ``call_api`` tool call vs the same call made straight to the gateway.

One `nhi-broker up` process, one `nhi-broker mcp --transport http` process (its own identity, the
`mcp-server` agent), the tiny upstream of gateway_overhead.py. Three paths, interleaved in one run
(the machine is shared and noisy: compare the ratios, not the milliseconds):

- direct:  the upstream, with its key;
- gateway: the broker's gateway, with an exchanged DPoP-bound token (proof signed before the clock);
- mcp:     the SDK's streamable HTTP client calls the `call_api` tool: JSON-RPC over HTTP, the MCP
           server's check of the audience-bound token (JWKS cached), its own DPoP-bound broker
           token (exchanged once per client token), then the same gateway call.

    python benchmarks/mcp_http_overhead.py [--requests 200]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import anyio
import httpx
from _harness import BIN, broker_up, free_port, pct
from gateway_overhead import STEPS_PER_TASK, bench_api, dpop_agent, open_task, upstream
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from broker.client import mcp_access_token
from broker.identity import DevIssuer


async def run(args: argparse.Namespace) -> None:
    key = "bench-" + secrets.token_urlsafe(24)
    server = upstream(key)
    base = f"http://127.0.0.1:{server.server_address[1]}/api"
    mcp_port = free_port()
    mcp_url = f"http://127.0.0.1:{mcp_port}/mcp"
    resources = json.dumps([{"url": mcp_url, "server_agent": "mcp-server"}])
    with broker_up(env={"NHI_BROKER_TOKEN_EXCHANGE__MCP_RESOURCES": resources}) as up:
        c = bench_api(up, key, base)
        admin = {"Authorization": f"Bearer {up['admin_token']}"}
        dev = c.get("/v1/admin/agents/demo-agent", headers=admin).json()["identities"][0]["issuer"]
        c.put(
            "/v1/admin/agents/mcp-server",
            headers=admin,
            json={"owner": "platform", "profiles": ["demo"], "identities": [{"issuer": dev, "subject": "mcp-server"}]},
        ).raise_for_status()
        data_dir = up["data_dir"]
        mcp_proc = subprocess.Popen(
            [
                *(str(BIN / "nhi-broker"), "mcp", "--transport", "http", "--port", str(mcp_port)),
                *("--url", up["url"], "--data-dir", data_dir, "--agent", "mcp-server"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(Path(data_dir) / "mcp.log", "wb"),  # noqa: SIM115
            env=dict(os.environ),
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(mcp_url.replace("/mcp", "/.well-known/oauth-protected-resource/mcp")).is_success:
                        break
                except httpx.TransportError:
                    pass
                if mcp_proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"nhi-broker mcp failed; see {data_dir}/mcp.log")
                time.sleep(0.1)
            auth = dpop_agent(up, c)
            issuer = DevIssuer.load(Path(data_dir))
            bearer = mcp_access_token(
                mcp_url, issuer.mint("demo-agent", ttl_seconds=3600), authorization_server=up["url"]
            ).reveal()
            http = create_mcp_http_client(headers={"Authorization": f"Bearer {bearer}"})
            direct = httpx.Client(timeout=30)
            samples: dict[str, list[float]] = {"direct": [], "gateway": [], "mcp": []}
            async with (
                http,
                streamable_http_client(mcp_url, http_client=http) as (read, write),
                ClientSession(read, write) as mcp,
            ):
                await mcp.initialize()
                task, steps = "", STEPS_PER_TASK
                for i in range(args.requests + 20):
                    if steps >= STEPS_PER_TASK:
                        task = open_task(c, auth)
                        opened = await mcp.call_tool("open_task", {"profile": "demo", "purpose": "bench"})
                        mcp_task = json.loads(opened.content[0].text)["task_id"]
                        steps = 0
                    steps += 2  # one gateway call and one MCP call per round, on their own tasks
                    t0 = time.perf_counter()
                    resp = direct.get(f"{base}/v1/customers/42", headers={"X-Api-Key": key})
                    t_direct = time.perf_counter() - t0
                    assert resp.status_code == 200
                    path = f"/v1/tasks/{task}/gateway/bench-api/v1/customers/42"
                    h = auth("GET", path)
                    t0 = time.perf_counter()
                    resp = c.get(path, headers=h)
                    t_gateway = time.perf_counter() - t0
                    assert resp.status_code == 200, resp.text
                    call = {"task_id": mcp_task, "resource": "bench-api", "method": "GET", "path": "/v1/customers/42"}
                    t0 = time.perf_counter()
                    result = await mcp.call_tool("call_api", call)
                    t_mcp = time.perf_counter() - t0
                    assert not result.is_error and key not in result.content[0].text, result.content
                    if i >= 20:  # warm-up
                        samples["direct"].append(t_direct)
                        samples["gateway"].append(t_gateway)
                        samples["mcp"].append(t_mcp)
        finally:
            mcp_proc.terminate()
            mcp_proc.wait(timeout=20)
            server.shutdown()
    d, g, m = samples["direct"], samples["gateway"], samples["mcp"]
    print(f"GET: MCP call_api over streamable HTTP vs the gateway vs direct, {args.requests} each, one run")
    print(f"{'path':10} {'p50 ms':>8} {'p99 ms':>8}")
    for name, values in samples.items():
        print(f"{name:10} {pct(values, 50) * 1000:8.2f} {pct(values, 99) * 1000:8.2f}")
    print(
        f"ratio mcp/gateway: p50 {pct(m, 50) / pct(g, 50):.2f}x, p99 {pct(m, 99) / pct(g, 99):.2f}x; "
        f"MCP adds p50 {(pct(m, 50) - pct(g, 50)) * 1000:.2f} ms over the gateway"
    )
    print(f"ratio gateway/direct: p50 {pct(g, 50) / pct(d, 50):.1f}x, p99 {pct(g, 99) / pct(d, 99):.1f}x")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=200)
    anyio.run(run, ap.parse_args())


if __name__ == "__main__":
    sys.exit(main())
