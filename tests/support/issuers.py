"""Local token issuers for the identity tests: a key, its JWKS served over HTTP on loopback, and
tokens minted in the exact claim shapes of the issuers agents and people really use.

- SPIRE JWT-SVID: ``sub`` a ``spiffe://`` ID, ``aud`` a list, ``exp``/``iat``, no ``jti`` (SPIRE
  caches one SVID and hands it out until it is half-expired);
- Kubernetes projected service-account token: ``iss`` the cluster, ``sub``
  ``system:serviceaccount:NS:NAME``, ``kubernetes.io`` claim, ``jti`` (since 1.29), ``nbf``;
- GitHub Actions OIDC: ``sub`` ``repo:ORG/REPO:ref:refs/heads/BRANCH``, ``repository``, ``ref``,
  ``job_workflow_ref``, ``jti``;
- an OIDC provider's ID token for a person: ``sub``, ``email``, ``groups``, ``aud`` its client id.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm


class LocalIssuer:
    def __init__(self, issuer: str, *, kid: str = "k1") -> None:
        self.issuer = issuer
        self.kid = kid
        self.key = ec.generate_private_key(ec.SECP256R1())
        jwk = ECAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        body = json.dumps({"keys": [{**jwk, "kid": kid, "use": "sig", "alg": "ES256"}]}).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.jwks_url = f"http://127.0.0.1:{self._server.server_address[1]}/jwks.json"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def settings(self, audience: str, **extra: Any) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "audiences": [audience],
            "jwks_url": self.jwks_url,
            "algorithms": ["ES256"],
            **extra,
        }

    def mint(self, claims: dict[str, Any], *, key: Any = None, kid: str | None = None) -> str:
        return jwt.encode(claims, key or self.key, algorithm="ES256", headers={"kid": kid or self.kid})

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def spiffe_svid(iss: LocalIssuer, spiffe_id: str, audience: str, *, ttl: int = 300, **over: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": iss.issuer, "sub": spiffe_id, "aud": [audience], "iat": now, "exp": now + ttl, **over}


def kubernetes_sa(
    iss: LocalIssuer, namespace: str, name: str, audience: str, *, ttl: int = 600, **over: Any
) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": iss.issuer,
        "sub": f"system:serviceaccount:{namespace}:{name}",
        "aud": [audience],
        "iat": now,
        "nbf": now,
        "exp": now + ttl,
        "jti": str(uuid.uuid4()),
        "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": name, "uid": str(uuid.uuid4())}},
        **over,
    }


def github_actions(
    iss: LocalIssuer, repo: str, branch: str, audience: str, *, ttl: int = 300, **over: Any
) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": iss.issuer,
        "sub": f"repo:{repo}:ref:refs/heads/{branch}",
        "aud": audience,
        "iat": now,
        "nbf": now,
        "exp": now + ttl,
        "jti": str(uuid.uuid4()),
        "repository": repo,
        "ref": f"refs/heads/{branch}",
        "job_workflow_ref": f"{repo}/.github/workflows/agent.yml@refs/heads/{branch}",
        "runner_environment": "github-hosted",
        **over,
    }


def id_token(
    iss: LocalIssuer, subject: str, client_id: str, *, email: str, groups: list[str], ttl: int = 300, **over: Any
) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": iss.issuer,
        "sub": subject,
        "aud": client_id,
        "iat": now,
        "exp": now + ttl,
        "email": email,
        "groups": groups,
        "nonce": uuid.uuid4().hex,
        **over,
    }
