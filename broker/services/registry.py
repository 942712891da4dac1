"""The registry: agents, task profiles and resources, validated and audited.

Cross-entity rules live here (a profile an agent names must exist, a profile's actions must be
in the catalog, a resource's settings must exist at its backend); field shapes are checked at
the edge (pydantic). Every change is an ``admin.changed`` audit event.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import replace
from typing import Any

from broker.audit import AuditLog
from broker.backends.port import CredentialBackend
from broker.errors import Conflict, InvalidInput, NotFound
from broker.models import Action, Agent, Resource, TaskProfile
from broker.store.repo import Store, aware

TABLES = {"agent": "agents", "profile": "profiles", "resource": "resources"}


def _iso(row: dict[str, Any]) -> dict[str, Any]:
    for key in ("created_at", "updated_at"):
        if key in row and row[key] is not None:
            v = aware(row[key])
            row[key] = v.isoformat() if v else None
    return row


class RegistryService:
    def __init__(self, store: Store, audit: AuditLog, backends: Mapping[str, CredentialBackend],
                 catalog: Callable[[], Mapping[str, Action]], trusted_issuers: Callable[[], Collection[str]]) -> None:
        self.store = store
        self.audit = audit
        self.backends = backends
        self.catalog = catalog
        self.trusted_issuers = trusted_issuers  # the identity verifier's configured issuers

    # -- agents --------------------------------------------------------------------------
    def put_agent(self, agent: Agent, actor: str) -> tuple[dict[str, Any], bool]:
        with self.store.write() as conn:
            for i, profile in enumerate(agent.profiles):
                if self.store.get_profile(conn, profile) is None:
                    raise InvalidInput(f"profiles[{i}]", f'task profile "{profile}" does not exist')
            trusted = self.trusted_issuers()
            for i, b in enumerate(agent.bindings):
                if b.issuer not in trusted:  # nobody could ever present a token for this binding
                    raise InvalidInput(f"identities[{i}].issuer",
                                       f'issuer "{b.issuer}" is not configured; configured: {sorted(trusted)}')
                owner = self.store.identity_owner(conn, b.issuer, b.subject)
                if owner is not None and owner != agent.name:
                    raise InvalidInput(f"identities[{i}]",
                                       f'issuer/subject is already bound to agent "{owner}"')
            created = self.store.put_agent(conn, agent)
            self.audit.append(conn, "admin.changed", actor=actor, outcome="created" if created else "updated",
                              data={"entity": "agent", "name": agent.name, "owner": agent.owner,
                                    "trust_level": agent.trust_level.value, "profiles": list(agent.profiles),
                                    "identities": [{"issuer": b.issuer, "subject": b.subject}
                                                   for b in agent.bindings],
                                    "owner_identity": agent.owner_identity.to_dict()
                                    if agent.owner_identity is not None else None})
        return self.get("agent", agent.name), created

    # -- profiles ------------------------------------------------------------------------
    def put_profile(self, profile: TaskProfile, actor: str) -> tuple[dict[str, Any], bool]:
        catalog = self.catalog()
        for i, action in enumerate(profile.allowed_actions):
            if action not in catalog:
                raise InvalidInput(f"allowed_actions[{i}]",
                                   f'action "{action}" is not in the action catalog; known: {sorted(catalog)}')
        with self.store.write() as conn:
            created = self.store.put_profile(conn, profile)
            self.audit.append(conn, "admin.changed", actor=actor, outcome="created" if created else "updated",
                              data={"entity": "profile", "name": profile.name,
                                    "allowed_actions": list(profile.allowed_actions),
                                    "ceiling": profile.ceiling.value,
                                    "max_lifetime_seconds": profile.max_lifetime_seconds})
        return self.get("profile", profile.name), created

    # -- resources -----------------------------------------------------------------------
    def put_resource(self, resource: Resource, actor: str) -> tuple[dict[str, Any], bool]:
        backend = self.backends.get(resource.kind)
        if backend is None:
            raise InvalidInput("kind", f'backend "{resource.kind}" is not available; configured: '
                                       f"{sorted(self.backends)}")
        settings = backend.validate_settings(resource.settings)
        resource = replace(resource, settings=settings)
        with self.store.write() as conn:
            created = self.store.put_resource(conn, resource)
            self.audit.append(conn, "admin.changed", actor=actor, outcome="created" if created else "updated",
                              data={"entity": "resource", "name": resource.name, "kind": resource.kind,
                                    "sensitivity": resource.sensitivity.value,
                                    "environment": resource.environment.value, "settings": settings})
        return self.get("resource", resource.name), created

    # -- generic -------------------------------------------------------------------------
    def get(self, entity: str, name: str) -> dict[str, Any]:
        with self.store.read() as conn:
            row = self.store.get_row(conn, TABLES[entity], name)
        if row is None:
            raise NotFound(f'{entity} "{name}" does not exist')
        return self._present(entity, row)

    def list(self, entity: str) -> list[dict[str, Any]]:
        with self.store.read() as conn:
            return [self._present(entity, r) for r in self.store.list_rows(conn, TABLES[entity])]

    def delete(self, entity: str, name: str, actor: str) -> None:
        with self.store.write() as conn:
            if entity == "profile":
                users = self.store.agents_using_profile(conn, name)
                if users:
                    raise Conflict(f'profile "{name}" is still allowed for agents {users}; remove it there first')
            if not self.store.delete_named(conn, TABLES[entity], name):
                raise NotFound(f'{entity} "{name}" does not exist')
            self.audit.append(conn, "admin.changed", actor=actor, outcome="deleted",
                              data={"entity": entity, "name": name})

    @staticmethod
    def _present(entity: str, row: dict[str, Any]) -> dict[str, Any]:
        row = _iso(dict(row))
        if entity == "resource":
            settings = row.pop("settings") or {}
            row.update(settings)
        return row
