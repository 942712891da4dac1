"""Gateway overhead: an API call through the broker's gateway vs the same call made directly.

One `nhi-broker up` process, a tiny upstream API on loopback that checks an API key, and an
`http_api` resource whose key the broker reads from OpenBao KV. The two paths are interleaved in
one run (the machine is shared and noisy: compare the ratio, not the milliseconds). Through the
gateway, each call is a full decision (risk, Cedar, chain detectors), a grant record and audit
events, the upstream call with the key injected, the live scan of the response and the chain
event; the agent authenticates with an exchanged DPoP-bound token (proof signed before the clock).

    python benchmarks/gateway_overhead.py [--requests 300]
"""

from __future__ import annotations

import argparse
import json
import secrets
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from _harness import broker_up, pct
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from broker.identity import DevIssuer
from broker.identity.dpop import make_proof

GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT = "urn:ietf:params:oauth:token-type:jwt"
STEPS_PER_TASK = 50
BODY = json.dumps({"id": "42", "name": "Ada Lovelace", "orders": list(range(50))}).encode()


def upstream(key: str) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()  # no Nagle: headers and body go out as two writes
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def do_GET(self) -> None:
            ok = self.headers.get("X-Api-Key") == key
            body = BODY if ok else b"{}"
            self.send_response(200 if ok else 401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def bench_api(up: dict[str, Any], key: str, base: str) -> httpx.Client:
    """The upstream's key in OpenBao KV and the ``bench-api`` resource; a client of the broker."""
    bao = httpx.Client(base_url=up["openbao_addr"], headers={"X-Vault-Token": up["openbao_token"]})
    bao.post("/v1/secret/data/bench/crm", json={"data": {"api_key": key}}).raise_for_status()
    c = httpx.Client(base_url=up["url"], timeout=30)
    admin = {"Authorization": f"Bearer {up['admin_token']}"}
    c.put(
        "/v1/admin/resources/bench-api",
        headers=admin,
        json={
            "kind": "http_api",
            "sensitivity": "internal",
            "environment": "dev",
            "http": {
                "base_url": base,
                "auth": "header",
                "auth_name": "X-Api-Key",
                "source": "vault_kv",
                "mount": "secret",
                "path": "bench/crm",
                "field": "api_key",
                "rules": ["GET /v1/customers/* db.read"],
            },
        },
    ).raise_for_status()
    return c


def dpop_agent(up: dict[str, Any], c: httpx.Client) -> Callable[[str, str], dict[str, str]]:
    """demo-agent's exchanged DPoP-bound token: the headers of one request (proof signed now)."""
    issuer = DevIssuer.load(Path(up["data_dir"]))
    pkey = ec.generate_private_key(ec.SECP256R1())
    jwk = ECAlgorithm.to_jwk(pkey.public_key(), as_dict=True)
    r = c.post(
        "/v1/token",
        data={
            "grant_type": GRANT,
            "subject_token": issuer.mint("demo-agent", ttl_seconds=3600),
            "subject_token_type": JWT,
        },
        headers={"DPoP": make_proof(pkey, jwk, method="POST", url=f"{up['url']}/v1/token")},
    )
    r.raise_for_status()
    access = r.json()["access_token"]

    def auth(method: str, path: str) -> dict[str, str]:
        return {
            "Authorization": f"DPoP {access}",
            "DPoP": make_proof(pkey, jwk, method=method, url=f"{up['url']}{path}", access_token=access),
        }

    return auth


def open_task(c: httpx.Client, auth: Callable[[str, str], dict[str, str]]) -> str:
    resp = c.post("/v1/tasks", json={"profile": "demo", "purpose": "bench"}, headers=auth("POST", "/v1/tasks"))
    return str(resp.json()["task_id"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=300)
    args = ap.parse_args()
    key = "bench-" + secrets.token_urlsafe(24)
    server = upstream(key)
    base = f"http://127.0.0.1:{server.server_address[1]}/api"
    with broker_up() as up:
        c = bench_api(up, key, base)
        auth = dpop_agent(up, c)

        direct = httpx.Client(timeout=30)
        samples: dict[str, list[float]] = {"direct": [], "gateway": []}
        task, steps = "", STEPS_PER_TASK
        for i in range(args.requests + 20):
            if steps >= STEPS_PER_TASK:
                task = open_task(c, auth)
                steps = 0
            steps += 1
            t0 = time.perf_counter()
            resp = direct.get(f"{base}/v1/customers/42", headers={"X-Api-Key": key})
            t_direct = time.perf_counter() - t0
            assert resp.status_code == 200
            path = f"/v1/tasks/{task}/gateway/bench-api/v1/customers/42"
            h = auth("GET", path)  # the agent's cost, before the clock
            t0 = time.perf_counter()
            resp = c.get(path, headers=h)
            t_gateway = time.perf_counter() - t0
            assert resp.status_code == 200, resp.text
            assert key not in resp.text
            if i >= 20:  # warm-up
                samples["direct"].append(t_direct)
                samples["gateway"].append(t_gateway)
        server.shutdown()
        d, g = samples["direct"], samples["gateway"]
        print(f"GET through the gateway vs direct, {args.requests} each, interleaved, one run")
        print(f"{'path':10} {'p50 ms':>8} {'p99 ms':>8}")
        for name, values in samples.items():
            print(f"{name:10} {pct(values, 50) * 1000:8.2f} {pct(values, 99) * 1000:8.2f}")
        print(
            f"ratio gateway/direct: p50 {pct(g, 50) / pct(d, 50):.1f}x, p99 {pct(g, 99) / pct(d, 99):.1f}x; "
            f"added p50 {(pct(g, 50) - pct(d, 50)) * 1000:.2f} ms"
        )


if __name__ == "__main__":
    main()
