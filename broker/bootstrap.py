"""``nhi-broker bootstrap``: prepare OpenBao (and the store) for ``serve``, idempotently.

What the broker needs in OpenBao, created or updated on every run (running it twice changes
nothing):

- a KV v2 engine at ``secret/`` (resources of kind ``vault_kv`` and the rotation of static
  secrets read and write there);
- the token role ``nhi-broker-grant`` and the parent policy ``nhi-broker-task-parent`` (resources of
  kind ``vault_token``; see :mod:`broker.backends.openbao_token`);
- the broker's own ACL policy ``nhi-broker`` (what the broker's token may do; ``docs/deploy.md``);
- with ``approle``: the AppRole auth method and the role ``nhi-broker`` bound to that policy, so
  the broker logs in with a role id and a secret id instead of a long-lived token
  (``openbao.auth: approle``);
- with ``demo``: the demo policies, KV data and registry of ``nhi-broker up``.

It runs with an operator token (``NHI_BROKER_OPENBAO__TOKEN`` or ``openbao.token``), never the
broker's AppRole: creating policies and auth methods is the operator's power, not the broker's.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import hvac

from broker.backends.openbao_http import OpenBaoHTTP
from broker.backends.openbao_token import GRANT_ROLE, PARENT_POLICY, PARENT_POLICY_HCL
from broker.secrets import Secret

BROKER_POLICY = "nhi-broker"
APPROLE_MOUNT = "approle"
APPROLE_ROLE = "nhi-broker"
KV_MOUNT = "secret"
DATABASE_MOUNT = "database"

# what `serve` does in OpenBao, path by path (the backends' calls; docs/deploy.md explains each)
BROKER_POLICY_HCL = f"""
# per-task parent tokens (vault_token) and their revocation
path "auth/token/create-orphan" {{ capabilities = ["create", "update", "sudo"] }}
path "auth/token/create/{GRANT_ROLE}" {{ capabilities = ["create", "update"] }}
path "auth/token/roles/{GRANT_ROLE}" {{ capabilities = ["read", "create", "update"] }}
path "auth/token/revoke-accessor" {{ capabilities = ["update"] }}
path "auth/token/lookup-accessor" {{ capabilities = ["update"] }}
path "auth/token/lookup-self" {{ capabilities = ["read"] }}
path "auth/token/renew-self" {{ capabilities = ["update"] }}
path "sys/policies/acl/{PARENT_POLICY}" {{ capabilities = ["read", "create", "update"] }}
# resources name existing ACL policies; the broker checks they exist
path "sys/policies/acl/*" {{ capabilities = ["read"] }}
# vault_kv: response-wrapped reads; managed static secrets (rotation) read and write
path "{KV_MOUNT}/data/*" {{ capabilities = ["create", "read", "update"] }}
path "{KV_MOUNT}/metadata/*" {{ capabilities = ["read", "list"] }}
path "sys/wrapping/lookup" {{ capabilities = ["update"] }}
path "sys/mounts/*" {{ capabilities = ["read"] }}
path "sys/mounts" {{ capabilities = ["read"] }}
# postgres: dynamic database credentials (leases)
path "{DATABASE_MOUNT}/creds/*" {{ capabilities = ["read"] }}
path "{DATABASE_MOUNT}/roles/*" {{ capabilities = ["read"] }}
path "{DATABASE_MOUNT}/config/*" {{ capabilities = ["read"] }}
path "sys/leases/revoke" {{ capabilities = ["update"] }}
path "sys/leases/renew" {{ capabilities = ["update"] }}
path "sys/leases/lookup" {{ capabilities = ["update"] }}
"""


@dataclass
class BootstrapReport:
    created: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    approle_role_id: str | None = None
    approle_secret_id: Secret | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"created": self.created, "unchanged": self.unchanged, "approle_role_id": self.approle_role_id}


def bootstrap_openbao(http: OpenBaoHTTP, *, approle: bool = False, approle_secret_id: bool = True) -> BootstrapReport:
    """Create what the broker needs in OpenBao (idempotent). With ``approle`` and
    ``approle_secret_id``, a fresh secret id is generated for the broker (returned once)."""
    report = BootstrapReport()
    with http.client() as c:
        mounts = c.sys.list_mounted_secrets_engines()
        mounts = mounts.get("data", mounts)
        if f"{KV_MOUNT}/" in mounts:
            report.unchanged.append(f"mount {KV_MOUNT}/ (kv v2)")
        else:
            c.sys.enable_secrets_engine("kv", path=KV_MOUNT, options={"version": "2"})
            report.created.append(f"mount {KV_MOUNT}/ (kv v2)")
        for name, hcl in ((PARENT_POLICY, PARENT_POLICY_HCL), (BROKER_POLICY, BROKER_POLICY_HCL)):
            _put_policy(c, name, hcl, report)
    # deferred: the token backend is needed only when bootstrap creates its role
    from broker.backends.openbao_token import OpenBaoTokenBackend

    OpenBaoTokenBackend(http).bootstrap()  # the grant token role (keeps its allowed policies)
    report.unchanged.append(f"token role {GRANT_ROLE}")
    if approle:
        with http.client() as c:
            auths = c.sys.list_auth_methods()
            auths = auths.get("data", auths)
            if f"{APPROLE_MOUNT}/" in auths:
                report.unchanged.append(f"auth {APPROLE_MOUNT}/")
            else:
                c.sys.enable_auth_method("approle", path=APPROLE_MOUNT)
                report.created.append(f"auth {APPROLE_MOUNT}/")
            role_body = {
                "token_policies": [BROKER_POLICY, PARENT_POLICY],
                "token_ttl": "1h",
                "token_max_ttl": "24h",
                "token_type": "service",
                "secret_id_ttl": "0",
                "bind_secret_id": True,
            }
            base = f"/v1/auth/{APPROLE_MOUNT}/role/{APPROLE_ROLE}"
            _settled(lambda: c.adapter.post(base, json=role_body))
            report.unchanged.append(f"approle role {APPROLE_ROLE}")
            role = _settled(lambda: c.adapter.get(f"{base}/role-id"))
            report.approle_role_id = str(role["data"]["role_id"])
            if approle_secret_id:
                sid = _settled(lambda: c.adapter.post(f"{base}/secret-id", json={}))
                report.approle_secret_id = Secret(str(sid["data"]["secret_id"]))
    return report


def _settled(call: Callable[[], Any], seconds: float = 30.0) -> Any:
    """``call()``, retried while it answers 404: a freshly enabled auth mount (or role) can be
    missing for a moment on a raft cluster under load."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return call()
        except hvac.exceptions.InvalidPath:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _put_policy(c: Any, name: str, hcl: str, report: BootstrapReport) -> None:
    try:
        current = c.sys.read_acl_policy(name=name)
        text = (current.get("data") or current).get("policy", "")
    except hvac.exceptions.InvalidPath:
        text = None
    if text is not None and text.strip() == hcl.strip():
        report.unchanged.append(f"policy {name}")
        return
    c.sys.create_or_update_acl_policy(name=name, policy=hcl)
    report.created.append(f"policy {name}")


def new_fingerprint_key() -> str:
    """A fresh fingerprint key (hex, 32 bytes) for operators to put in every replica's config."""
    return secrets.token_hex(32)
