"""OpenBao child tokens under a per-task parent token (resource kind ``vault_token``).

Each task gets an orphan *parent* token (TTL = the task's remaining lifetime) whose only power is
to create children through the token role ``nhi-broker-grant``; each grant is a non-renewable
child created under it with the resource's ACL policies, the tier's TTL and ``num_uses``.
Revoking the parent by accessor revokes every child: one call, whatever the number of grants.

The parent token itself lives only in this process's memory (never in the store). After a
restart the next grant of a task creates a new parent; every parent's accessor is a task handle,
so ending the task revokes all of them.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import hvac
import requests

from broker.backends.openbao_http import OpenBaoHTTP, PermissionDenied
from broker.backends.port import IssuedCredential, IssueRequest
from broker.errors import InvalidInput, UpstreamError
from broker.secrets import Secret

GRANT_ROLE = "nhi-broker-grant"
PARENT_POLICY = "nhi-broker-task-parent"
PARENT_POLICY_HCL = f'path "auth/token/create/{GRANT_ROLE}" {{ capabilities = ["create", "update"] }}\n'


class OpenBaoTokenBackend:
    kind = "vault_token"
    self_expiring = True  # see CredentialBackend.self_expiring

    def __init__(self, http: OpenBaoHTTP) -> None:
        self.http = http
        # task id -> (parent token, its accessor, its expiry, a client bound to it)
        self._parents: dict[str, tuple[Secret, str, datetime, hvac.Client]] = {}
        self._lock = threading.Lock()
        self._task_locks: dict[str, threading.Lock] = {}
        self._role_policies: set[str] | None = None

    # -- setup ------------------------------------------------------------------------------
    def bootstrap(self) -> None:
        """Create the parent policy and the grant token role (idempotent)."""
        with self.http.client() as c:
            c.sys.create_or_update_acl_policy(name=PARENT_POLICY, policy=PARENT_POLICY_HCL)
            existing = self._read_role(c)
        self._role_policies = set(existing)
        self._write_role(sorted(self._role_policies))

    def _read_role(self, c: hvac.Client) -> list[str]:
        try:
            data = c.adapter.get(f"/v1/auth/token/roles/{GRANT_ROLE}")
        except hvac.exceptions.InvalidPath:
            return []
        return list((data or {}).get("data", {}).get("allowed_policies") or [])

    def _write_role(self, policies: list[str]) -> None:
        with self.http.client() as c:
            c.adapter.post(
                f"/v1/auth/token/roles/{GRANT_ROLE}",
                json={
                    "allowed_policies": policies,
                    "disallowed_policies": ["root"],
                    "orphan": False,
                    "renewable": False,
                    "token_type": "service",
                    "path_suffix": "",
                },
            )

    # -- port -------------------------------------------------------------------------------
    def validate_settings(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        vault = settings.get("vault")
        if not isinstance(vault, Mapping):
            raise InvalidInput("vault", 'required for kind vault_token: {"policies": ["..."]}')
        policies = vault.get("policies")
        if not isinstance(policies, list) or not policies or not all(isinstance(p, str) and p for p in policies):
            raise InvalidInput("vault.policies", "must be a non-empty list of OpenBao ACL policy names")
        if "root" in policies:
            raise InvalidInput("vault.policies", 'the "root" policy can never be granted')
        unknown = set(vault) - {"policies"}
        if unknown:
            raise InvalidInput(f"vault.{sorted(unknown)[0]}", "unknown setting for kind vault_token")
        with self.http.client() as c:
            for name in policies:
                try:
                    c.sys.read_acl_policy(name=name)
                except hvac.exceptions.InvalidPath as exc:
                    raise InvalidInput("vault.policies", f'policy "{name}" does not exist in OpenBao') from exc
        self._allow_policies(policies)
        return {"vault": {"policies": list(policies)}}

    def _allow_policies(self, policies: list[str]) -> None:
        with self._lock:
            current = set(self._role_policies or ())
            if self._role_policies is not None and set(policies) <= current:
                return
            with self.http.client() as c:
                current |= set(self._read_role(c))
            current |= set(policies)
            self._role_policies = current
        self._write_role(sorted(current))

    def _task_lock(self, task_id: str) -> threading.Lock:
        with self._lock:
            return self._task_locks.setdefault(task_id, threading.Lock())

    def _parent(self, request: IssueRequest) -> tuple[Secret, str]:
        task = request.task
        now = datetime.now(UTC)
        with self._task_lock(task.task_id):
            held = self._parents.get(task.task_id)
            if held and held[2] > now:
                return held[0], held[1]
            ttl = max(1, int((task.expires_at - now).total_seconds()))
            with self.http.client() as c:
                resp = c.auth.token.create_orphan(
                    policies=[PARENT_POLICY],
                    no_default_policy=True,
                    ttl=f"{ttl}s",
                    renewable=False,
                    display_name=f"nhi-task-{task.task_id}"[:64],
                    meta={"nhi_task": task.task_id, "nhi_agent": task.agent, "nhi_role": "task-parent"},
                )
            auth = resp["auth"]
            token, accessor = Secret(auth["client_token"]), auth["accessor"]
            # write-ahead: the parent's accessor is in the store before any child exists under it,
            # so a crash after this point can never leave an unrevokable token behind
            if request.persist_handle is not None:
                try:
                    request.persist_handle({"accessor": accessor, "kind": "task-parent"})
                except Exception:
                    self.revoke({"accessor": accessor, "kind": "task-parent"})
                    raise
            client = self.http.make_client(token)
            self._parents[task.task_id] = (token, accessor, now + timedelta(seconds=ttl), client)
            return token, accessor

    def issue(self, request: IssueRequest) -> IssuedCredential:
        parent_token, parent_accessor = self._parent(request)
        policies = list(request.resource.settings["vault"]["policies"])
        body: dict[str, Any] = {
            "policies": policies,
            "ttl": f"{request.ttl_seconds}s",
            "explicit_max_ttl": f"{request.ttl_seconds}s",
            "renewable": False,
            "display_name": f"nhi-{request.action.name}"[:64],
            "meta": {
                "nhi_task": request.task.task_id,
                "nhi_agent": request.agent.name,
                "nhi_action": request.action.name,
                "nhi_resource": request.resource.name,
                "nhi_grant": request.grant_id,
            },
        }
        if request.uses:
            body["num_uses"] = request.uses
        try:
            resp = self.http.call("POST", f"/v1/auth/token/create/{GRANT_ROLE}", token=parent_token, body=body)
        except PermissionDenied:
            # the parent was revoked or expired behind our back: forget it, fail this request
            self._parents.pop(request.task.task_id, None)
            raise
        auth = resp["auth"]
        expires = datetime.now(UTC) + timedelta(seconds=int(auth["lease_duration"]))
        return IssuedCredential(
            kind=self.kind,
            public={
                "accessor": auth["accessor"],
                "policies": auth.get("policies", policies),
                "expires_at": expires.isoformat(),
                "num_uses": request.uses,
            },
            secrets={"token": Secret(auth["client_token"])},
            expires_at=expires,
            revocation={"accessor": auth["accessor"], "parent_accessor": parent_accessor},
            accessor=auth["accessor"],
            covered_by_task_handle=True,
        )

    def revoke(self, reference: Mapping[str, Any]) -> None:
        accessor = reference.get("accessor")
        if not accessor:
            raise UpstreamError("revocation reference has no accessor")
        with self.http.client() as c:
            try:
                c.adapter.post("/v1/auth/token/revoke-accessor", json={"accessor": accessor})
            except hvac.exceptions.InvalidRequest as exc:
                if "invalid accessor" in str(exc).lower() or "not found" in str(exc).lower():
                    return  # already gone: revocation is idempotent
                raise
        if reference.get("kind") == "task-parent":
            with self._lock:
                for task_id, held in list(self._parents.items()):
                    if held[1] == accessor:
                        self._parents.pop(task_id, None)

    def forget_task(self, task_id: str) -> None:
        with self._lock:
            self._parents.pop(task_id, None)
            self._task_locks.pop(task_id, None)

    def check_alive(self) -> None:
        self.http.health()


__all__ = ["GRANT_ROLE", "PARENT_POLICY", "OpenBaoTokenBackend", "requests"]
