"""Repositories: the only code that speaks SQL. Rows come back as plain dicts or domain types.

Write transactions go through :meth:`Store.write`; on SQLite they are serialised in-process (one
writer at a time is SQLite's model anyway, and it avoids lock-upgrade failures under WAL).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, assert_never

from sqlalchemy import Connection, Engine, and_, bindparam, delete, func, insert, or_, select, text, update
from sqlalchemy.exc import IntegrityError

from broker.models import (
    Agent,
    Delegation,
    Environment,
    Grant,
    GrantId,
    GrantState,
    IdentityBinding,
    Outcome,
    OwnerIdentity,
    Resource,
    Sensitivity,
    Task,
    TaskId,
    TaskProfile,
    TaskState,
    Tier,
    TrustLevel,
    VerifiedHuman,
)
from broker.store import tables as t
from broker.store.registry_cache import RegistryCache, RegistryView
from broker.store.rows import (
    DecisionStep,
    Entity,
    GrantFingerprints,
    HandleId,
    HandleState,
    Registered,
    StoredDecision,
    TaskHandle,
    aware_ts,
    grant_from_row,
)

# hot-path statements, built once and bound at execution (SQLAlchemy's statement construction
# costs more than SQLite's execution for these one-row lookups)
_AGENT_BY_IDENTITY = select(t.agent_identities.c.agent).where(
    and_(t.agent_identities.c.issuer == bindparam("issuer"), t.agent_identities.c.subject == bindparam("subject"))
)
_AGENT = select(t.agents).where(t.agents.c.name == bindparam("name"))
_PROFILE = select(t.profiles).where(t.profiles.c.name == bindparam("name"))
_RESOURCE = select(t.resources).where(t.resources.c.name == bindparam("name"))
_TASK = select(t.tasks).where(t.tasks.c.task_id == bindparam("task_id"))
_GRANT = select(t.grants).where(t.grants.c.grant_id == bindparam("grant_id"))
# FOR SHARE on PostgreSQL (SQLite renders none: its writers are serialised anyway)
_TASK_STATE_SHARED = select(t.tasks.c.state).where(t.tasks.c.task_id == bindparam("task_id")).with_for_update(read=True)
_DECISION_STEPS = (
    select(t.decisions.c.action, t.decisions.c.tier, t.decisions.c.outcome)
    .where(t.decisions.c.task_id == bindparam("task_id"))
    .order_by(t.decisions.c.created_at)
)
_ACTIVE_GRANTS = (
    select(func.count())
    .select_from(t.grants)
    .where(and_(t.grants.c.task_id == bindparam("task_id"), t.grants.c.state == "active"))
)
_INSERT_DECISION = insert(t.decisions)
_INSERT_GRANT = insert(t.grants)
_INSERT_JTI = insert(t.seen_jti)
# PostgreSQL NOTIFY channel; payload: the grant as :func:`grant_notice` writes it (JSON), or the
# bare grant id when that would not fit (the grant feed then reads it)
GRANT_CHANNEL = "nhi_grant_issued"
GRANT_NOTICE_MAX_BYTES = 7000  # PostgreSQL's payload limit is 8000 bytes
_NOTIFY_GRANT = text("SELECT pg_notify(:channel, :grant_id)")
_REGISTRY_TABLES = {Entity.AGENT: t.agents, Entity.PROFILE: t.profiles, Entity.RESOURCE: t.resources}
_BUMP_REGISTRY = (
    update(t.registry_version).where(t.registry_version.c.id == 1).values(version=t.registry_version.c.version + 1)
)


def grant_notice(grant: Grant, agent: str | None) -> str:
    """The grant feed's notification for ``grant``: JSON with the grant id, task, agent and
    fingerprint → secret length; the bare grant id when the agent is unknown or it is too long."""
    if agent is None:
        return grant.grant_id
    notice = json.dumps(
        {
            "grant_id": grant.grant_id,
            "task_id": grant.task_id,
            "agent": agent,
            "fingerprints": {fp: grant.secret_lengths.get(fp) for fp in grant.fingerprints},
        },
        separators=(",", ":"),
    )
    return notice if len(notice.encode()) <= GRANT_NOTICE_MAX_BYTES else grant.grant_id


def utcnow() -> datetime:
    return datetime.now(UTC)


class Store:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sqlite = engine.dialect.name == "sqlite"
        # reads on PostgreSQL run in autocommit: under READ COMMITTED every statement sees what
        # was committed when it started, in a transaction or not, so BEGIN and ROLLBACK were two
        # round trips per read that bought nothing (docs/design-notes.md, "Round trips to
        # PostgreSQL"); SQLite's driver begins no transaction for a read anyway
        self._autocommit = engine if self._sqlite else engine.execution_options(isolation_level="AUTOCOMMIT")
        self._write_lock = threading.RLock()
        self.registry_cache = RegistryCache()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def write(self) -> Iterator[Connection]:
        if self._sqlite:
            with self._write_lock, self.engine.begin() as conn:
                yield conn
        else:
            with self.engine.begin() as conn:
                yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self._autocommit.connect() as conn:
            yield conn

    # -- registry: agents, profiles, resources -------------------------------------------
    def bump_registry(self, conn: Connection) -> None:
        """Every registry change increments the version, in its own transaction: the cached
        copies of every process are stale from the moment it commits (:mod:`registry_cache`)."""
        conn.execute(_BUMP_REGISTRY)

    def registry(self, conn: Connection) -> RegistryView:
        """The registry at the version ``conn`` reads now; lookups through it are cached."""
        return self.registry_cache.view(conn)

    def cached_agent(self, view: RegistryView, name: str) -> Agent | None:
        agent: Agent | None = view.get("agent", name, lambda c: self.get_agent(c, name))
        return agent

    def cached_identity_owner(self, view: RegistryView, issuer: str, subject: str) -> str | None:
        owner: str | None = view.get("identity", (issuer, subject), lambda c: self.identity_owner(c, issuer, subject))
        return owner

    def cached_profile(self, view: RegistryView, name: str) -> TaskProfile | None:
        profile: TaskProfile | None = view.get("profile", name, lambda c: self.get_profile(c, name))
        return profile

    def cached_resource(self, view: RegistryView, name: str) -> Resource | None:
        resource: Resource | None = view.get("resource", name, lambda c: self.get_resource(c, name))
        return resource

    def _upsert(self, conn: Connection, table: Any, key: str, name: str, values: Mapping[str, Any]) -> bool:
        self.bump_registry(conn)
        now = utcnow()
        existing = conn.execute(select(table.c[key]).where(table.c[key] == name)).first()
        if existing is None:
            conn.execute(insert(table).values({key: name, **values, "created_at": now, "updated_at": now}))
            return True
        conn.execute(update(table).where(table.c[key] == name).values({**values, "updated_at": now}))
        return False

    def put_agent(self, conn: Connection, agent: Agent) -> bool:
        created = self._upsert(
            conn,
            t.agents,
            "name",
            agent.name,
            {
                "owner": agent.owner,
                "trust_level": agent.trust_level.value,
                "description": agent.description,
                "identities": [
                    {"issuer": b.issuer, "subject": b.subject, "claims": dict(b.claims)} for b in agent.bindings
                ],
                "profiles": list(agent.profiles),
                "owner_identity": agent.owner_identity.to_dict() if agent.owner_identity is not None else None,
            },
        )
        conn.execute(delete(t.agent_identities).where(t.agent_identities.c.agent == agent.name))
        for b in agent.bindings:
            conn.execute(insert(t.agent_identities).values(issuer=b.issuer, subject=b.subject, agent=agent.name))
        return created

    def identity_owner(self, conn: Connection, issuer: str, subject: str) -> str | None:
        row = conn.execute(_AGENT_BY_IDENTITY, {"issuer": issuer, "subject": subject}).first()
        return row[0] if row else None

    @staticmethod
    def _agent(row: Any) -> Agent:
        return Agent(
            name=row.name,
            owner=row.owner,
            trust_level=TrustLevel(row.trust_level),
            bindings=tuple(
                IdentityBinding(i["issuer"], i["subject"], dict(i.get("claims") or {})) for i in row.identities
            ),
            profiles=tuple(row.profiles),
            description=row.description,
            owner_identity=OwnerIdentity.from_dict(row.owner_identity) if row.owner_identity else None,
        )

    def get_agent(self, conn: Connection, name: str) -> Agent | None:
        row = conn.execute(_AGENT, {"name": name}).first()
        return self._agent(row) if row else None

    def _registered(self, entity: Entity, row: Any) -> Registered:
        item: Agent | TaskProfile | Resource
        match entity:
            case Entity.AGENT:
                item = self._agent(row)
            case Entity.PROFILE:
                item = self._profile(row)
            case Entity.RESOURCE:
                item = self._resource(row)
            case _:
                assert_never(entity)
        return Registered(item=item, created_at=aware_ts(row.created_at), updated_at=aware_ts(row.updated_at))

    def registered(self, conn: Connection, entity: Entity, name: str) -> Registered | None:
        """A registry entry with its timestamps (agent, profile or resource by name)."""
        table = _REGISTRY_TABLES[entity]
        row = conn.execute(select(table).where(table.c.name == name)).first()
        return self._registered(entity, row) if row else None

    def list_registered(self, conn: Connection, entity: Entity) -> list[Registered]:
        table = _REGISTRY_TABLES[entity]
        return [self._registered(entity, r) for r in conn.execute(select(table).order_by(table.c.name))]

    def delete_named(self, conn: Connection, entity: Entity, name: str) -> bool:
        table = _REGISTRY_TABLES[entity]
        self.bump_registry(conn)
        if entity is Entity.AGENT:
            conn.execute(delete(t.agent_identities).where(t.agent_identities.c.agent == name))
        return bool(conn.execute(delete(table).where(table.c.name == name)).rowcount)

    def put_profile(self, conn: Connection, p: TaskProfile) -> bool:
        return self._upsert(
            conn,
            t.profiles,
            "name",
            p.name,
            {
                "allowed_actions": list(p.allowed_actions),
                "ceiling": p.ceiling.value,
                "max_lifetime_seconds": p.max_lifetime_seconds,
                "description": p.description,
            },
        )

    @staticmethod
    def _profile(row: Any) -> TaskProfile:
        return TaskProfile(
            name=row.name,
            allowed_actions=tuple(row.allowed_actions),
            ceiling=Tier(row.ceiling),
            max_lifetime_seconds=row.max_lifetime_seconds,
            description=row.description,
        )

    def get_profile(self, conn: Connection, name: str) -> TaskProfile | None:
        row = conn.execute(_PROFILE, {"name": name}).first()
        return self._profile(row) if row else None

    def put_resource(self, conn: Connection, r: Resource) -> bool:
        return self._upsert(
            conn,
            t.resources,
            "name",
            r.name,
            {
                "kind": r.kind,
                "sensitivity": r.sensitivity.value,
                "environment": r.environment.value,
                "external": r.external,
                "description": r.description,
                "settings": dict(r.settings),
                "agent_may_hold": r.agent_may_hold,
            },
        )

    @staticmethod
    def _resource(row: Any) -> Resource:
        return Resource(
            name=row.name,
            kind=row.kind,
            sensitivity=Sensitivity(row.sensitivity),
            environment=Environment(row.environment),
            settings=dict(row.settings),
            description=row.description,
            external=bool(row.external),
            agent_may_hold=bool(row.agent_may_hold),
        )

    def get_resource(self, conn: Connection, name: str) -> Resource | None:
        row = conn.execute(_RESOURCE, {"name": name}).first()
        return self._resource(row) if row else None

    def agents_using_profile(self, conn: Connection, profile: str) -> list[str]:
        return [
            r.name for r in conn.execute(select(t.agents.c.name, t.agents.c.profiles)) if profile in (r.profiles or [])
        ]

    # -- tasks ---------------------------------------------------------------------------
    def create_task(self, conn: Connection, task: Task) -> None:
        conn.execute(
            insert(t.tasks).values(
                task_id=task.task_id,
                agent=task.agent,
                profile=task.profile,
                purpose=task.purpose,
                on_behalf_of=task.on_behalf_of,
                state=task.state.value,
                state_reason=task.state_reason,
                created_at=task.created_at,
                expires_at=task.expires_at,
                acting_for=task.acting_for.to_dict() if task.acting_for is not None else None,
                parent_task_id=task.parent_task_id,
                delegation=task.delegation.to_dict() if task.delegation is not None else None,
            )
        )

    @staticmethod
    def _task(row: Any) -> Task:
        return Task(
            task_id=TaskId(row.task_id),
            agent=row.agent,
            profile=row.profile,
            purpose=row.purpose,
            on_behalf_of=row.on_behalf_of,
            state=TaskState(row.state),
            created_at=aware_ts(row.created_at),
            expires_at=aware_ts(row.expires_at),
            state_reason=row.state_reason,
            acting_for=VerifiedHuman.from_dict(row.acting_for) if row.acting_for else None,
            parent_task_id=TaskId(row.parent_task_id) if row.parent_task_id else None,
            delegation=Delegation.from_dict(row.delegation) if row.delegation else None,
        )

    def get_task(self, conn: Connection, task_id: str) -> Task | None:
        row = conn.execute(_TASK, {"task_id": task_id}).first()
        return self._task(row) if row else None

    def set_task_state(
        self,
        conn: Connection,
        task_id: str,
        state: TaskState,
        reason: str,
        *,
        only_from: tuple[TaskState, ...] = (TaskState.ACTIVE,),
    ) -> bool:
        result = conn.execute(
            update(t.tasks)
            .where(and_(t.tasks.c.task_id == task_id, t.tasks.c.state.in_([s.value for s in only_from])))
            .values(state=state.value, state_reason=reason, ended_at=utcnow())
        )
        return bool(result.rowcount)

    def child_tasks(self, conn: Connection, task_id: str) -> list[Task]:
        rows = conn.execute(
            select(t.tasks).where(t.tasks.c.parent_task_id == task_id).order_by(t.tasks.c.created_at)
        ).all()
        return [self._task(r) for r in rows]

    def list_tasks(
        self,
        conn: Connection,
        *,
        states: tuple[TaskState, ...] = (),
        agent: str | None = None,
        before: tuple[datetime, str] | None = None,
        limit: int = 50,
    ) -> list[Task]:
        """Tasks newest first (the console's task list). ``states``: only these (all when empty);
        ``before``: the (created_at, task_id) of the last row of the previous page (keyset)."""
        c = t.tasks.c
        q = select(t.tasks)
        if states:
            q = q.where(c.state.in_([s.value for s in states]))
        if agent is not None:
            q = q.where(c.agent == agent)
        if before is not None:
            at, task_id = before
            q = q.where(or_(c.created_at < at, and_(c.created_at == at, c.task_id < task_id)))
        rows = conn.execute(q.order_by(c.created_at.desc(), c.task_id.desc()).limit(limit)).all()
        return [self._task(r) for r in rows]

    def active_children_of_inactive_parents(self, conn: Connection, limit: int = 100) -> list[tuple[str, str]]:
        """(child, parent) pairs where the parent ended, expired or escalated and the child is
        still active: a cascade a crash interrupted, finished by the revocation worker."""
        parent = t.tasks.alias("parent")
        rows = conn.execute(
            select(t.tasks.c.task_id, parent.c.task_id)
            .join(parent, parent.c.task_id == t.tasks.c.parent_task_id)
            .where(and_(t.tasks.c.state == TaskState.ACTIVE.value, parent.c.state != TaskState.ACTIVE.value))
            .limit(limit)
        )
        return [(r[0], r[1]) for r in rows]

    def expired_active_tasks(self, conn: Connection, now: datetime, limit: int = 100) -> list[str]:
        return [
            r[0]
            for r in conn.execute(
                select(t.tasks.c.task_id)
                .where(and_(t.tasks.c.state == TaskState.ACTIVE.value, t.tasks.c.expires_at <= now))
                .limit(limit)
            )
        ]

    # -- task handles, grants ------------------------------------------------------------
    def add_handle(self, conn: Connection, task_id: str, backend: str, reference: Mapping[str, Any]) -> int:
        result = conn.execute(
            insert(t.task_handles).values(
                task_id=task_id,
                backend=backend,
                reference=dict(reference),
                state=HandleState.ACTIVE.value,
                created_at=utcnow(),
            )
        )
        return int(result.inserted_primary_key[0])  # type: ignore[index]

    def handles(
        self, conn: Connection, task_id: str, state: HandleState | None = HandleState.ACTIVE
    ) -> list[TaskHandle]:
        q = select(t.task_handles).where(t.task_handles.c.task_id == task_id)
        if state:
            q = q.where(t.task_handles.c.state == state.value)
        return [
            TaskHandle(
                id=HandleId(r.id),
                task_id=TaskId(r.task_id),
                backend=r.backend,
                reference=dict(r.reference or {}),
                state=HandleState(r.state),
                created_at=aware_ts(r.created_at),
            )
            for r in conn.execute(q.order_by(t.task_handles.c.id))
        ]

    def add_grant(self, conn: Connection, grant: Grant, *, agent: str | None = None) -> None:
        """Insert ``grant``; on PostgreSQL also notify every replica's grant feed at commit, with
        what its known-grant index needs (the grant's task, ``agent``, its fingerprints and
        secret lengths — keyed fingerprints, never a secret), so the feed need not read it."""
        conn.execute(
            _INSERT_GRANT,
            {
                "grant_id": grant.grant_id,
                "task_id": grant.task_id,
                "decision_id": grant.decision_id,
                "backend": grant.backend,
                "resource": grant.resource,
                "action": grant.action,
                "lease_id": grant.lease_id,
                "accessor": grant.accessor,
                "fingerprints": list(grant.fingerprints),
                "revocation": dict(grant.revocation),
                "covered_by_task_handle": grant.covered_by_task_handle,
                "public": dict(grant.public),
                "secret_lengths": dict(grant.secret_lengths),
                "issued_at": grant.issued_at,
                "expires_at": grant.expires_at,
                "state": grant.state.value,
            },
        )
        if not self._sqlite:  # delivered at commit to every replica's grant feed (LISTEN)
            conn.execute(_NOTIFY_GRANT, {"channel": GRANT_CHANNEL, "grant_id": grant_notice(grant, agent)})

    def grants(self, conn: Connection, task_id: str, state: GrantState | None = None) -> list[Grant]:
        q = select(t.grants).where(t.grants.c.task_id == task_id)
        if state:
            q = q.where(t.grants.c.state == state.value)
        return [grant_from_row(r._mapping) for r in conn.execute(q.order_by(t.grants.c.issued_at))]

    def task_state_shared(self, conn: Connection, task_id: str) -> TaskState | None:
        """The task's state, read in the caller's write transaction under a share lock of its row
        (PostgreSQL ``FOR SHARE``). Every state change is an ``UPDATE`` of that row that the
        revocation of the task's grants follows in the same transaction, so a grant inserted in
        this transaction is either seen by that revocation (this one committed first) or this read
        waits for it and returns the new state (it committed first)."""
        state = conn.execute(_TASK_STATE_SHARED, {"task_id": task_id}).scalar()
        return TaskState(state) if state is not None else None

    def get_grant(self, conn: Connection, grant_id: str) -> Grant | None:
        row = conn.execute(_GRANT, {"grant_id": grant_id}).first()
        return grant_from_row(row._mapping) if row else None

    def active_grant_fingerprints(
        self, conn: Connection, *, since: datetime | None = None, grant_id: str | None = None
    ) -> list[GrantFingerprints]:
        """Active grants' fingerprints (all, issued at or after ``since``, or one grant)."""
        q = (
            select(
                t.grants.c.grant_id,
                t.grants.c.task_id,
                t.grants.c.fingerprints,
                t.grants.c.secret_lengths,
                t.tasks.c.agent,
            )
            .join(t.tasks, t.tasks.c.task_id == t.grants.c.task_id)
            .where(t.grants.c.state == GrantState.ACTIVE.value)
        )
        if since is not None:
            q = q.where(t.grants.c.issued_at >= since)
        if grant_id is not None:
            q = q.where(t.grants.c.grant_id == grant_id)
        return [
            GrantFingerprints(
                grant_id=GrantId(r.grant_id),
                task_id=TaskId(r.task_id),
                agent=r.agent,
                fingerprints=tuple(r.fingerprints or ()),
                secret_lengths=dict(r.secret_lengths or {}),
            )
            for r in conn.execute(q)
        ]

    def count_active_grants(self, conn: Connection, task_id: str) -> int:
        return int(conn.execute(_ACTIVE_GRANTS, {"task_id": task_id}).scalar_one())

    # -- decisions -----------------------------------------------------------------------
    def add_decision(
        self,
        conn: Connection,
        record: Mapping[str, Any],
        task_id: str,
        agent: str,
        action: str,
        resource: str,
        created_at: datetime,
    ) -> None:
        inputs = record.get("inputs") or {}
        conn.execute(
            _INSERT_DECISION,
            dict(
                decision_id=record["decision_id"],
                task_id=task_id,
                agent=agent,
                action=action,
                resource=resource,
                outcome=record["outcome"],
                tier=record["tier"],
                mode=record["mode"],
                ttl_seconds=record["ttl_seconds"],
                bundle_hash=record["bundle_hash"],
                record=dict(record),
                created_at=created_at,
                consequence=inputs.get("consequence"),
                sensitivity=inputs.get("sensitivity"),
                external=inputs.get("resource_external"),
            ),
        )

    def get_decision(self, conn: Connection, decision_id: str) -> StoredDecision | None:
        row = conn.execute(select(t.decisions).where(t.decisions.c.decision_id == decision_id)).first()
        return StoredDecision.from_row(row._mapping) if row else None

    def decisions(
        self, conn: Connection, *, task_id: str | None = None, since: datetime | None = None, limit: int = 10000
    ) -> list[StoredDecision]:
        q = select(t.decisions)
        if task_id:
            q = q.where(t.decisions.c.task_id == task_id)
        if since:
            q = q.where(t.decisions.c.created_at >= since)
        return [
            StoredDecision.from_row(r._mapping) for r in conn.execute(q.order_by(t.decisions.c.created_at).limit(limit))
        ]

    def recent_decisions(
        self,
        conn: Connection,
        *,
        outcome: Outcome | None = None,
        agent: str | None = None,
        before: tuple[datetime, str] | None = None,
        limit: int = 50,
    ) -> list[StoredDecision]:
        """Decisions newest first (the console's list); ``before``: the (created_at, decision_id)
        of the last row of the previous page."""
        c = t.decisions.c
        q = select(t.decisions)
        if outcome is not None:
            q = q.where(c.outcome == outcome.value)
        if agent is not None:
            q = q.where(c.agent == agent)
        if before is not None:
            at, decision_id = before
            q = q.where(or_(c.created_at < at, and_(c.created_at == at, c.decision_id < decision_id)))
        rows = conn.execute(q.order_by(c.created_at.desc(), c.decision_id.desc()).limit(limit))
        return [StoredDecision.from_row(r._mapping) for r in rows]

    def decision_steps(self, conn: Connection, task_id: str) -> list[DecisionStep]:
        """The chain's decisions in order, without their (large) JSON records."""
        return [
            DecisionStep(action=r.action, tier=Tier(r.tier), outcome=Outcome(r.outcome))
            for r in conn.execute(_DECISION_STEPS, {"task_id": task_id})
        ]

    # -- replay guard ----------------------------------------------------------------------
    def record_jti(self, issuer: str, jti: str, expires_at: datetime) -> bool:
        """Record a token's ``jti``; False when it was recorded before (a replay). Committed before
        this returns. On PostgreSQL one statement in autocommit: atomic and durable on its own,
        without the BEGIN and COMMIT round trips of a transaction (it runs on every request)."""
        params = {"issuer": issuer, "jti": jti, "expires_at": expires_at}
        try:
            if self._sqlite:
                with self.write() as conn:
                    conn.execute(_INSERT_JTI, params)
            else:
                with self._autocommit.connect() as conn:
                    conn.execute(_INSERT_JTI, params)
            return True
        except IntegrityError:
            return False

    def purge_jti(self, now: datetime) -> int:
        with self.write() as conn:
            return int(conn.execute(delete(t.seen_jti).where(t.seen_jti.c.expires_at < now)).rowcount)
