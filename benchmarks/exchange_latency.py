"""Credential request latency: an exchanged, DPoP-bound access token vs the per-call workload JWT.

One `nhi-broker up` process, the same task profile and resource, the two modes interleaved in
one run (the machine is shared and noisy: compare the ratio, not the milliseconds). The agent's
own costs (minting a JWT, signing a DPoP proof) are paid before the clock starts, as a real agent
would pay them; what is measured is the broker's answer.

    python benchmarks/exchange_latency.py [--requests 300]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import httpx
from _harness import broker_up, pct
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from broker.identity import DevIssuer
from broker.identity.dpop import make_proof

GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT = "urn:ietf:params:oauth:token-type:jwt"
STEPS_PER_TASK = 20


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=300)
    args = ap.parse_args()
    with broker_up() as up:
        issuer = DevIssuer.load(Path(up["data_dir"]))
        c = httpx.Client(base_url=up["url"], timeout=30)
        key = ec.generate_private_key(ec.SECP256R1())
        jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
        token_url = f"{up['url']}/v1/token"
        r = c.post(
            "/v1/token",
            data={
                "grant_type": GRANT,
                "subject_token": issuer.mint("demo-agent", ttl_seconds=3600),
                "subject_token_type": JWT,
            },
            headers={"DPoP": make_proof(key, jwk, method="POST", url=token_url)},
        )
        r.raise_for_status()
        access = r.json()["access_token"]

        def simple_headers(path: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {issuer.mint('demo-agent', ttl_seconds=600)}"}

        def dpop_headers(path: str) -> dict[str, str]:
            return {
                "Authorization": f"DPoP {access}",
                "DPoP": make_proof(key, jwk, method="POST", url=f"{up['url']}{path}", access_token=access),
            }

        modes = {"per-call JWT (simple)": simple_headers, "exchanged + DPoP": dpop_headers}
        tasks = {m: "" for m in modes}
        steps = {m: STEPS_PER_TASK for m in modes}
        samples: dict[str, list[float]] = {m: [] for m in modes}
        for i in range(args.requests * len(modes) + 20):
            mode = list(modes)[i % len(modes)]
            headers = modes[mode]
            if steps[mode] >= STEPS_PER_TASK:
                tasks[mode] = c.post(
                    "/v1/tasks", json={"profile": "demo", "purpose": "bench"}, headers=headers("/v1/tasks")
                ).json()["task_id"]
                steps[mode] = 0
            steps[mode] += 1
            path = f"/v1/tasks/{tasks[mode]}/credentials"
            h = headers(path)  # the agent's cost, before the clock
            t0 = time.perf_counter()
            resp = c.post(path, json={"action": "db.read", "resource": "demo-data"}, headers=h)
            elapsed = time.perf_counter() - t0
            resp.raise_for_status()
            if i >= 20:  # warm-up
                samples[mode].append(elapsed)
        base = sorted(samples["per-call JWT (simple)"])
        print(f"credential request (vault_token, monitor tier), {args.requests} each, interleaved, one run")
        print(f"{'mode':28} {'p50 ms':>8} {'p99 ms':>8} {'p50 ratio':>10}")
        for mode, values in samples.items():
            print(
                f"{mode:28} {pct(values, 50) * 1000:8.2f} {pct(values, 99) * 1000:8.2f} "
                f"{pct(values, 50) / pct(base, 50):10.2f}"
            )


if __name__ == "__main__":
    main()
