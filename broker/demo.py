"""The demo seed of ``nhi-broker up``: OpenBao policies and data, a profile, an agent, resources.

Names are fixed (docs, Terraform examples and checks use them).
"""

from __future__ import annotations

from typing import Any

from broker.backends.openbao_http import OpenBaoHTTP
from broker.identity import DEV_ISSUER
from broker.models import Agent, Environment, IdentityBinding, Resource, Sensitivity, TaskProfile, Tier, TrustLevel

DEMO_RESOURCES = {
    # name: (sensitivity, environment, KV path)
    "demo-data": (Sensitivity.INTERNAL, Environment.DEV, "demo-data"),
    "demo-secrets": (Sensitivity.CONFIDENTIAL, Environment.DEV, "demo-secrets"),
    "prod-payments": (Sensitivity.RESTRICTED, Environment.PROD, "prod-payments"),
}
DEMO_ACTIONS = ("db.read", "db.write", "secrets.read", "data.export", "payments.charge")


def policy_name(resource: str) -> str:
    return f"nhi-{resource}"


def acl_policy(kv_path: str) -> str:
    return (f'path "secret/data/{kv_path}/*" {{ capabilities = ["read", "list"] }}\n'
            f'path "secret/data/{kv_path}" {{ capabilities = ["read"] }}\n'
            f'path "secret/metadata/{kv_path}/*" {{ capabilities = ["list"] }}\n')


def seed_openbao(http: OpenBaoHTTP) -> None:
    with http.client() as c:
        for name, (_, _, path) in DEMO_RESOURCES.items():
            c.sys.create_or_update_acl_policy(name=policy_name(name), policy=acl_policy(path))
            c.secrets.kv.v2.create_or_update_secret(path=f"{path}/example", secret={"note": f"demo data for {name}"},
                                                    mount_point="secret")


DEMO_KV_PATH = "demo-kv/api-key"
DEMO_DB_ROLE = "demo-readonly"
DEMO_DB_GROUP = "nhi_demo_readers"


def seed_kv(http: OpenBaoHTTP) -> None:
    """A static API key the `demo-kv` resource hands out by response wrapping (single use)."""
    import secrets

    with http.client() as c:
        c.secrets.kv.v2.create_or_update_secret(path=DEMO_KV_PATH, mount_point="secret",
                                                secret={"api_key": "demo_" + secrets.token_urlsafe(24)})


def seed_postgres(http: OpenBaoHTTP, host: str = "127.0.0.1", port: int = 5432) -> str | None:
    """Configure OpenBao's database engine against a local PostgreSQL for `demo-db`.
    Returns None when done, else the reason it was skipped (for the summary)."""
    import secrets

    import psycopg
    from psycopg import sql

    from broker.backends.postgres import configure_openbao_role, ensure_group_role, reachable
    from broker.errors import BrokerError
    from broker.secrets import Secret

    if not reachable(host, port):
        return f"no PostgreSQL at {host}:{port}"
    admin = f"host={host} port={port} dbname=postgres user=postgres connect_timeout=3"
    password = Secret(secrets.token_urlsafe(24))
    try:
        # OpenBao connects as a dedicated role that may create and drop roles, not as the superuser
        with psycopg.connect(admin, autocommit=True) as conn:
            role = sql.Identifier("nhi_openbao")
            if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'nhi_openbao'").fetchone():
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEROLE").format(role))
            conn.execute(sql.SQL("ALTER ROLE {} WITH LOGIN CREATEROLE PASSWORD {}").format(
                role, sql.Literal(password.reveal())))
            # revocation terminates the dynamic role's open sessions (pg_terminate_backend)
            conn.execute(sql.SQL("GRANT pg_signal_backend TO {}").format(role))
        ensure_group_role(admin, DEMO_DB_GROUP, dbname="postgres")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("GRANT {} TO {} WITH ADMIN OPTION").format(
                sql.Identifier(DEMO_DB_GROUP), sql.Identifier("nhi_openbao")))
        configure_openbao_role(http, role=DEMO_DB_ROLE, group_role=DEMO_DB_GROUP,
                               connection_url=f"postgresql://{{{{username}}}}:{{{{password}}}}@{host}:{port}/postgres"
                                              "?sslmode=disable",
                               username="nhi_openbao", password=password)
    except (psycopg.Error, BrokerError) as exc:
        return f"PostgreSQL at {host}:{port} could not be configured ({type(exc).__name__})"
    return None


def seed_registry(container: Any, *, with_postgres: bool = False) -> None:
    reg = container.registry
    reg.put_profile(TaskProfile(name="demo", allowed_actions=DEMO_ACTIONS, ceiling=Tier.CRITICAL,
                                max_lifetime_seconds=3600, description="demo profile"), "seed")
    reg.put_agent(Agent(name="demo-agent", owner="demo-owner", trust_level=TrustLevel.STANDARD,
                        bindings=(IdentityBinding(DEV_ISSUER, "demo-agent"),), profiles=("demo",),
                        description="demo agent bound to the dev issuer"), "seed")
    for name, (sensitivity, environment, _) in DEMO_RESOURCES.items():
        reg.put_resource(Resource(name=name, kind="vault_token", sensitivity=sensitivity, environment=environment,
                                  settings={"vault": {"policies": [policy_name(name)]}},
                                  description=f"OpenBao token reading secret/{DEMO_RESOURCES[name][2]}/*"), "seed")
    reg.put_resource(Resource(name="demo-kv", kind="vault_kv", sensitivity=Sensitivity.CONFIDENTIAL,
                              environment=Environment.DEV,
                              settings={"vault": {"mount": "secret", "path": DEMO_KV_PATH}},
                              description="a static API key, handed out response-wrapped (single use)"), "seed")
    if with_postgres:
        reg.put_resource(Resource(name="demo-db", kind="postgres", sensitivity=Sensitivity.INTERNAL,
                                  environment=Environment.DEV,
                                  settings={"vault": {"mount": "database", "role": DEMO_DB_ROLE}},
                                  description="dynamic PostgreSQL login (read-only) via OpenBao"), "seed")
