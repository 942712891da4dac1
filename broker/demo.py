"""The demo seed of ``nhi-broker up``: OpenBao policies and data, a profile, an agent, resources.

Names are fixed (docs, Terraform examples and checks use them).
"""

from __future__ import annotations

import secrets
from typing import Any

from broker.backends.openbao_http import OpenBaoHTTP
from broker.demo_postgres import DEMO_DB_ROLE
from broker.identity import DEV_ISSUER
from broker.models import (
    Agent,
    Environment,
    IdentityBinding,
    OwnerIdentity,
    Resource,
    Sensitivity,
    TaskProfile,
    Tier,
    TrustLevel,
)
from broker.people.model import Caller

DEMO_RESOURCES = {
    # name: (sensitivity, environment, KV path)
    "demo-data": (Sensitivity.INTERNAL, Environment.DEV, "demo-data"),
    "demo-secrets": (Sensitivity.CONFIDENTIAL, Environment.DEV, "demo-secrets"),
    "prod-payments": (Sensitivity.RESTRICTED, Environment.PROD, "prod-payments"),
}
DEMO_API = "demo-api"  # http_api: the dev OpenBao's KV API as the upstream, called through the gateway
DEMO_API_PATH = "/secret/data/demo-data/example"  # what docs/mcp.md's example agent reads
MCP_SERVER_AGENT = "mcp-server"  # the agent `nhi-broker mcp --transport http` runs as locally
MCP_DEFAULT_URL = "http://127.0.0.1:8765/mcp"  # its default resource URL (--host/--port defaults)
DEMO_OWNER = "demo-owner"  # a registered person, demo-agent's bound owner
DEMO_ACTIONS = ("db.read", "db.write", "secrets.read", "data.export", "payments.charge")


def policy_name(resource: str) -> str:
    return f"nhi-{resource}"


def acl_policy(kv_path: str) -> str:
    return (
        f'path "secret/data/{kv_path}/*" {{ capabilities = ["read", "list"] }}\n'
        f'path "secret/data/{kv_path}" {{ capabilities = ["read"] }}\n'
        f'path "secret/metadata/{kv_path}/*" {{ capabilities = ["list"] }}\n'
    )


def seed_openbao(http: OpenBaoHTTP) -> None:
    with http.client() as c:
        for name, (_, _, path) in DEMO_RESOURCES.items():
            c.sys.create_or_update_acl_policy(name=policy_name(name), policy=acl_policy(path))
            c.secrets.kv.v2.create_or_update_secret(
                path=f"{path}/example", secret={"note": f"demo data for {name}"}, mount_point="secret"
            )


DEMO_KV_PATH = "demo-kv/api-key"


def seed_kv(http: OpenBaoHTTP) -> None:
    """A static API key the `demo-kv` resource hands out by response wrapping (single use)."""
    with http.client() as c:
        c.secrets.kv.v2.create_or_update_secret(
            path=DEMO_KV_PATH, mount_point="secret", secret={"api_key": "demo_" + secrets.token_urlsafe(24)}
        )


def seed_registry(container: Any, *, with_postgres: bool = False) -> None:
    reg = container.registry
    reg.put_profile(
        TaskProfile(
            name="demo",
            allowed_actions=DEMO_ACTIONS,
            ceiling=Tier.CRITICAL,
            max_lifetime_seconds=3600,
            description="demo profile",
        ),
        "seed",
    )
    # the owner is a person (no roles): four-eyes refuses them on demo-agent's approvals and reviews
    container.people.put(
        DEMO_OWNER, display_name="Demo Owner", roles=(), identities=(), disabled=False, actor=Caller.system("seed")
    )
    reg.put_agent(
        Agent(
            name="demo-agent",
            owner=DEMO_OWNER,
            trust_level=TrustLevel.STANDARD,
            bindings=(IdentityBinding(DEV_ISSUER, "demo-agent"),),
            profiles=("demo",),
            description="demo agent bound to the dev issuer",
            owner_identity=OwnerIdentity(person=DEMO_OWNER),
        ),
        "seed",
    )
    for name, (sensitivity, environment, _) in DEMO_RESOURCES.items():
        reg.put_resource(
            Resource(
                name=name,
                kind="vault_token",
                sensitivity=sensitivity,
                environment=environment,
                settings={"vault": {"policies": [policy_name(name)]}},
                description=f"OpenBao token reading secret/{DEMO_RESOURCES[name][2]}/*",
            ),
            "seed",
        )
    reg.put_resource(
        Resource(
            name="demo-kv",
            kind="vault_kv",
            sensitivity=Sensitivity.CONFIDENTIAL,
            environment=Environment.DEV,
            settings={"vault": {"mount": "secret", "path": DEMO_KV_PATH}},
            description="a static API key, handed out response-wrapped (single use)",
        ),
        "seed",
    )
    if with_postgres:
        reg.put_resource(
            Resource(
                name="demo-db",
                kind="postgres",
                sensitivity=Sensitivity.INTERNAL,
                environment=Environment.DEV,
                settings={"vault": {"mount": "database", "role": DEMO_DB_ROLE}},
                description="dynamic PostgreSQL login (read-only) via OpenBao",
            ),
            "seed",
        )


def seed_mcp(container: Any, openbao_addr: str) -> None:
    """What docs/mcp.md walks against ``nhi-broker up``: an ``http_api`` resource (``demo-api``,
    the dev OpenBao's own HTTP API as the upstream: the gateway injects a child token with the
    ``nhi-demo-data`` policy as ``X-Vault-Token``; it dies with the task) and the agent the local
    MCP HTTP server runs as (``mcp-server``, registered for ``MCP_DEFAULT_URL`` by ``up``)."""
    reg = container.registry
    reg.put_resource(
        Resource(
            name=DEMO_API,
            kind="http_api",
            sensitivity=Sensitivity.INTERNAL,
            environment=Environment.DEV,
            settings={
                "http": {
                    "base_url": f"{openbao_addr.rstrip('/')}/v1",
                    "auth": "header",
                    "auth_name": "X-Vault-Token",
                    "source": "vault_token",
                    "policies": [policy_name("demo-data")],
                    "rules": ["GET /secret/data/demo-data/* db.read"],
                }
            },
            description="an HTTP API called through the gateway (the dev OpenBao KV): the agent never holds its token",
        ),
        "seed",
    )
    reg.put_agent(
        Agent(
            name=MCP_SERVER_AGENT,
            owner=DEMO_OWNER,
            trust_level=TrustLevel.STANDARD,
            bindings=(IdentityBinding(DEV_ISSUER, MCP_SERVER_AGENT),),
            profiles=(),
            description="the MCP HTTP server's own identity (docs/mcp.md); it acts only as each client's agent",
            owner_identity=OwnerIdentity(person=DEMO_OWNER),
        ),
        "seed",
    )
