"""The registry: agents, task profiles and resources, validated and audited.

Cross-entity rules live here (a profile an agent names must exist, a profile's actions must be
in the catalog, a resource's settings must exist at its backend); field shapes are checked at
the edge (pydantic). Every change is an ``admin.changed`` audit event.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import replace

from broker.audit import AuditLog
from broker.backends.port import CredentialBackend
from broker.errors import Conflict, InvalidInput, NotFound
from broker.models import Action, Agent, Resource, TaskProfile
from broker.store.repo import Store
from broker.store.rows import Entity, Registered

# kinds whose credential only the broker uses (the gateway injects it), never handed to an agent
INJECT_ONLY_KINDS = frozenset({"http_api"})


def agent_may_hold(kind: str, requested: bool | None) -> bool:
    """May an agent be handed this resource's credential? ``requested`` None: the kind's default
    (yes, except for inject-only kinds, which can never say yes)."""
    if kind in INJECT_ONLY_KINDS:
        if requested:
            raise InvalidInput(
                "agent_may_hold",
                f"a {kind} resource's credential is only injected by the gateway; it cannot be handed to an agent",
            )
        return False
    return True if requested is None else requested


class RegistryService:
    def __init__(
        self,
        store: Store,
        audit: AuditLog,
        backends: Mapping[str, CredentialBackend],
        catalog: Callable[[], Mapping[str, Action]],
        trusted_issuers: Callable[[], Collection[str]],
    ) -> None:
        self.store = store
        self.audit = audit
        self.backends = backends
        self.catalog = catalog
        self.trusted_issuers = trusted_issuers  # the identity verifier's configured issuers

    # -- agents --------------------------------------------------------------------------
    def put_agent(self, agent: Agent, actor: str) -> tuple[Registered, bool]:
        with self.store.write() as conn:
            for i, profile in enumerate(agent.profiles):
                if self.store.get_profile(conn, profile) is None:
                    raise InvalidInput(f"profiles[{i}]", f'task profile "{profile}" does not exist')
            trusted = self.trusted_issuers()
            for i, b in enumerate(agent.bindings):
                if b.issuer not in trusted:  # nobody could ever present a token for this binding
                    raise InvalidInput(
                        f"identities[{i}].issuer",
                        f'issuer "{b.issuer}" is not configured; configured: {sorted(trusted)}',
                    )
                owner = self.store.identity_owner(conn, b.issuer, b.subject)
                if owner is not None and owner != agent.name:
                    raise InvalidInput(f"identities[{i}]", f'issuer/subject is already bound to agent "{owner}"')
            created = self.store.put_agent(conn, agent)
            self.audit.append(
                conn,
                "admin.changed",
                actor=actor,
                outcome="created" if created else "updated",
                data={
                    "entity": "agent",
                    "name": agent.name,
                    "owner": agent.owner,
                    "trust_level": agent.trust_level.value,
                    "profiles": list(agent.profiles),
                    "identities": [{"issuer": b.issuer, "subject": b.subject} for b in agent.bindings],
                    "owner_identity": agent.owner_identity.to_dict() if agent.owner_identity is not None else None,
                },
            )
        return self.get(Entity.AGENT, agent.name), created

    # -- profiles ------------------------------------------------------------------------
    def put_profile(self, profile: TaskProfile, actor: str) -> tuple[Registered, bool]:
        catalog = self.catalog()
        for i, action in enumerate(profile.allowed_actions):
            if action not in catalog:
                raise InvalidInput(
                    f"allowed_actions[{i}]", f'action "{action}" is not in the action catalog; known: {sorted(catalog)}'
                )
        with self.store.write() as conn:
            created = self.store.put_profile(conn, profile)
            self.audit.append(
                conn,
                "admin.changed",
                actor=actor,
                outcome="created" if created else "updated",
                data={
                    "entity": "profile",
                    "name": profile.name,
                    "allowed_actions": list(profile.allowed_actions),
                    "ceiling": profile.ceiling.value,
                    "max_lifetime_seconds": profile.max_lifetime_seconds,
                },
            )
        return self.get(Entity.PROFILE, profile.name), created

    # -- resources -----------------------------------------------------------------------
    def put_resource(self, resource: Resource, actor: str) -> tuple[Registered, bool]:
        backend = self.backends.get(resource.kind)
        if backend is None:
            raise InvalidInput(
                "kind", f'backend "{resource.kind}" is not available; configured: {sorted(self.backends)}'
            )
        settings = backend.validate_settings(resource.settings)
        resource = replace(resource, settings=settings)
        with self.store.write() as conn:
            created = self.store.put_resource(conn, resource)
            self.audit.append(
                conn,
                "admin.changed",
                actor=actor,
                outcome="created" if created else "updated",
                data={
                    "entity": "resource",
                    "name": resource.name,
                    "kind": resource.kind,
                    "sensitivity": resource.sensitivity.value,
                    "environment": resource.environment.value,
                    "agent_may_hold": resource.agent_may_hold,
                    "settings": settings,
                },
            )
        return self.get(Entity.RESOURCE, resource.name), created

    # -- generic -------------------------------------------------------------------------
    def get(self, entity: Entity, name: str) -> Registered:
        with self.store.read() as conn:
            entry = self.store.registered(conn, entity, name)
        if entry is None:
            raise NotFound(f'{entity.value} "{name}" does not exist')
        return entry

    def list(self, entity: Entity) -> list[Registered]:
        with self.store.read() as conn:
            return self.store.list_registered(conn, entity)

    def delete(self, entity: Entity, name: str, actor: str) -> None:
        with self.store.write() as conn:
            if entity is Entity.PROFILE:
                users = self.store.agents_using_profile(conn, name)
                if users:
                    raise Conflict(f'profile "{name}" is still allowed for agents {users}; remove it there first')
            if not self.store.delete_named(conn, entity, name):
                raise NotFound(f'{entity.value} "{name}" does not exist')
            self.audit.append(
                conn, "admin.changed", actor=actor, outcome="deleted", data={"entity": entity.value, "name": name}
            )
