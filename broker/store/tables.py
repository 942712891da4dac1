"""Table definitions (the single source of truth; migrations under ``migrations/``)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    true,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _ts(name: str, nullable: bool = False) -> Column[object]:
    return Column(name, DateTime(timezone=True), nullable=nullable)


agents = Table(
    "agents",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("owner", String(256), nullable=False),
    Column("trust_level", String(16), nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("identities", JSON, nullable=False),
    Column("profiles", JSON, nullable=False),
    _ts("created_at"),
    _ts("updated_at"),
    Column("owner_identity", JSON),  # {"person"} or {"issuer", "subject"}; migration 0011
)

agent_identities = Table(
    "agent_identities",
    metadata,
    Column("issuer", String(512), primary_key=True),
    Column("subject", String(512), primary_key=True),
    Column("agent", String(128), nullable=False, index=True),
)

profiles = Table(
    "profiles",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("allowed_actions", JSON, nullable=False),
    Column("ceiling", String(16), nullable=False),
    Column("max_lifetime_seconds", Integer, nullable=False),
    Column("description", Text, nullable=False, default=""),
    _ts("created_at"),
    _ts("updated_at"),
)

resources = Table(
    "resources",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("sensitivity", String(16), nullable=False),
    Column("environment", String(16), nullable=False),
    Column("external", Boolean, nullable=False, default=False),
    Column("description", Text, nullable=False, default=""),
    Column("settings", JSON, nullable=False),
    _ts("created_at"),
    _ts("updated_at"),
    # migration 0018: may the agent be handed the credential (False: the broker only injects it)
    Column("agent_may_hold", Boolean, nullable=False, default=True, server_default=true()),
)

tasks = Table(
    "tasks",
    metadata,
    Column("task_id", String(64), primary_key=True),
    Column("agent", String(128), nullable=False, index=True),
    Column("profile", String(128), nullable=False),
    Column("purpose", Text, nullable=False),
    Column("on_behalf_of", String(256)),
    Column("state", String(16), nullable=False, index=True),
    Column("state_reason", Text),
    _ts("created_at"),
    _ts("expires_at"),
    _ts("ended_at", nullable=True),
    Column("acting_for", JSON),  # the verified person (issuer, subject, attributes), migration 0010
    Column("parent_task_id", String(64), index=True),  # delegated sub-tasks, migration 0012
    Column("delegation", JSON),
    Index("ix_tasks_created_at", "created_at"),  # the console's newest-first list, migration 0014
    Index("ix_tasks_state_expires_at", "state", "expires_at"),  # the worker's task expiry sweep (0016)
)

# task-level handles a backend created (e.g. the OpenBao parent token's accessor)
task_handles = Table(
    "task_handles",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("task_id", String(64), nullable=False, index=True),
    Column("backend", String(32), nullable=False),
    Column("reference", JSON, nullable=False),
    Column("state", String(16), nullable=False),
    _ts("created_at"),
)

decisions = Table(
    "decisions",
    metadata,
    Column("decision_id", String(64), primary_key=True),
    Column("task_id", String(64), nullable=False, index=True),
    Column("agent", String(128), nullable=False),
    Column("action", String(128), nullable=False),
    Column("resource", String(128), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("tier", String(16), nullable=False),
    Column("mode", String(16), nullable=False),
    Column("ttl_seconds", Integer, nullable=False),
    Column("bundle_hash", String(64), nullable=False),
    Column("record", JSON, nullable=False),
    # facts the chain detectors read on every request (0008); NULL on older rows: read the record
    Column("consequence", String(32)),
    Column("sensitivity", String(16)),
    Column("external", Boolean),
    _ts("created_at"),
    Index("ix_decisions_created_at", "created_at"),
    # covers the request path's compact chain history (broker/chain/store.py), migration 0018
    Index(
        "ix_decisions_task_chain",
        "task_id",
        "action",
        "resource",
        "outcome",
        "tier",
        "consequence",
        "sensitivity",
        "external",
        "created_at",
        "decision_id",
    ),
)

grants = Table(
    "grants",
    metadata,
    Column("grant_id", String(64), primary_key=True),
    Column("task_id", String(64), nullable=False, index=True),
    Column("decision_id", String(64), nullable=False),
    Column("backend", String(32), nullable=False),
    Column("resource", String(128), nullable=False),
    Column("action", String(128), nullable=False),
    Column("lease_id", String(512)),
    Column("accessor", String(256)),
    Column("fingerprints", JSON, nullable=False),
    Column("revocation", JSON, nullable=False),
    Column("covered_by_task_handle", Boolean, nullable=False, default=False),
    Column("public", JSON, nullable=False),
    Column("secret_lengths", JSON),  # {fingerprint: length}, narrows leak matching (0007)
    _ts("issued_at"),
    _ts("expires_at"),
    Column("state", String(16), nullable=False, index=True),
    _ts("revoked_at", nullable=True),
    # the revocation worker's expiry sweep (state = active AND expires_at <= now) on every tick:
    # a range over this index, not a scan of every active grant in the store (0016)
    Index("ix_grants_state_expires_at", "state", "expires_at"),
    # a task's active grants (counted on every credential request): task and state in one index,
    # so no planner takes the state prefix above and walks every active grant (0016)
    Index("ix_grants_task_state", "task_id", "state"),
)

# the revocation outbox: written before a revocation is attempted, retried until confirmed
revocations = Table(
    "revocations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("task_id", String(64), nullable=False, index=True),
    Column("grant_id", String(64)),
    Column("handle_id", Integer),
    Column("backend", String(32), nullable=False),
    Column("reference", JSON, nullable=False),
    Column("reason", Text, nullable=False),
    Column("state", String(16), nullable=False, index=True),  # pending | done
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text),
    _ts("created_at"),
    _ts("next_attempt_at"),
    _ts("completed_at", nullable=True),
    Column("last_error_kind", String(16)),  # unavailable | error (0002)
)

audit_events = Table(
    "audit_events",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("event_id", String(64), nullable=False, unique=True),
    _ts("ts"),
    Column("kind", String(64), nullable=False, index=True),
    Column("actor", String(256), nullable=False),
    Column("task_id", String(64), index=True),
    Column("outcome", String(32)),
    Column("data", JSON, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", Integer, nullable=False),
    Column("hash", String(64), nullable=False),
    Column("key_id", String(64)),  # the audit key the chain is keyed with (0009); NULL: not keyed yet
)

seen_jti = Table(
    "seen_jti",
    metadata,
    Column("issuer", String(512), primary_key=True),
    Column("jti", String(256), primary_key=True),
    _ts("expires_at"),
    UniqueConstraint("issuer", "jti", name="uq_seen_jti_issuer_jti"),
)

# small key/value for broker-wide state (e.g. schema facts, worker heartbeats)
kv = Table(
    "kv",
    metadata,
    Column("key", String(128), primary_key=True),
    Column("value", JSON, nullable=False),
)

# -- chains (issue 4) ---------------------------------------------------------------------------
# each event an agent reports (POST /v1/tasks/{id}/events), each leak/review report, and each
# escalation is a chain step; the raw text is never stored (its length and an HMAC fingerprint)
chain_events = Table(
    "chain_events",
    metadata,
    Column("event_id", String(64), primary_key=True),
    Column("task_id", String(64), nullable=False, index=True),
    Column("kind", String(32), nullable=False),
    Column("action", String(128)),
    Column("resource", String(128)),
    Column("text_length", Integer),
    Column("text_fingerprint", String(64)),
    Column("detail", JSON, nullable=False),
    _ts("created_at"),
    Index("ix_chain_events_task_created", "task_id", "created_at"),
)

# -- rotation of managed static secrets (issue 7) -------------------------------------------------
# values live only in OpenBao KV; the store keeps where they are, HMAC fingerprints and the state
managed_secrets = Table(
    "managed_secrets",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("kv_mount", String(128)),
    Column("kv_path", String(512)),
    Column("settings", JSON, nullable=False),
    Column("max_age_seconds", Integer),
    Column("overlap_seconds", Integer, nullable=False),
    Column("state", String(16), nullable=False),  # pending | active | rotating | failed
    Column("fingerprints_current", JSON, nullable=False),
    Column("fingerprints_previous", JSON, nullable=False),
    Column("current_ref", JSON, nullable=False),  # non-secret handle: kv_version, access_key_id, ...
    Column("previous_ref", JSON),  # what retire_due still has to retire
    _ts("retire_at", nullable=True),
    _ts("rotated_at", nullable=True),
    _ts("next_attempt_at", nullable=True),
    Column("last_error", Text),
    _ts("created_at"),
    _ts("updated_at"),
)

# -- scheduled leak scans (issue 7) ---------------------------------------------------------------
# job definitions (the schedule itself also lives in APScheduler's own ``apscheduler_jobs`` table)
scan_jobs = Table(
    "scan_jobs",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("spec", JSON, nullable=False),  # {"source": ..., "schedule": ..., "on_finding": ...}
    Column("last_run", JSON),  # {"run_id", "status", "started_at", "duration_ms", "bytes", "findings", ...}
    _ts("created_at"),
    _ts("updated_at"),
)

# one row per job: who runs it now, until when, and the last scheduled slot that ran (once-only
# across replicas sharing one store)
scan_job_leases = Table(
    "scan_job_leases",
    metadata,
    Column("job", String(128), primary_key=True),
    Column("holder", String(128)),
    _ts("until", nullable=True),
    Column("last_slot", Integer),
)

# incremental state of a job's source (file offsets/inodes, git tips, S3 ETags), written in the
# same transaction as the findings of the chunk that advanced it
scan_state = Table(
    "scan_state",
    metadata,
    Column("job", String(128), primary_key=True),
    Column("key", String(1024), primary_key=True),
    Column("value", JSON, nullable=False),
)

scan_runs = Table(
    "scan_runs",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("job", String(128), nullable=False, index=True),
    Column("holder", String(128), nullable=False),
    Column("trigger", String(16), nullable=False),  # schedule | manual
    Column("status", String(16), nullable=False),  # running | ok | failed
    _ts("started_at"),
    _ts("finished_at", nullable=True),
    Column("bytes", Integer, nullable=False, default=0),
    Column("findings", Integer, nullable=False, default=0),
    Column("new_findings", Integer, nullable=False, default=0),
    Column("error", Text),
)

# a detected secret: never the secret, only its fingerprint, rule and a redacted excerpt;
# de-duplicated by (fingerprint, location) through ``dedup_key``
scan_findings = Table(
    "scan_findings",
    metadata,
    Column("finding_id", String(64), primary_key=True),
    Column("dedup_key", String(64), nullable=False, unique=True),
    Column("job", String(128), nullable=False, index=True),
    Column("source_kind", String(16), nullable=False),
    Column("location", Text, nullable=False),
    Column("line", Integer),
    Column("rule", String(128), nullable=False, index=True),
    Column("severity", String(16), nullable=False),
    Column("fingerprint", String(64), nullable=False, index=True),
    Column("excerpt", Text, nullable=False),
    Column("status", String(16), nullable=False, index=True),  # open|resolved|false_positive|revoked|rotated
    Column("detail", JSON, nullable=False),  # commit, path, grant/task, managed secret, action taken
    Column("occurrences", Integer, nullable=False, default=1),
    _ts("first_seen"),
    _ts("last_seen"),
    Index("ix_scan_findings_last_seen", "last_seen"),  # the console's list, migration 0014
)

# -- step-up approvals and post-action reviews (issue 3, phase 2) ----------------------------------
# an approval is bound to the exact request that needed it: task, agent, action, resource and a
# hash of the resource's scope (kind, settings, sensitivity, environment) at request time.
# ``votes``: [{"approver", "subject", "reason", "at"}] — the authenticated approver (0011); never a secret.
approvals = Table(
    "approvals",
    metadata,
    Column("approval_id", String(64), primary_key=True),
    Column("task_id", String(64), nullable=False, index=True),
    Column("agent", String(128), nullable=False),
    Column("owner", String(256), nullable=False),
    Column("action", String(128), nullable=False),
    Column("resource", String(128), nullable=False),
    Column("scope_hash", String(64), nullable=False),
    Column("decision_id", String(64), nullable=False),
    Column("tier", String(16), nullable=False),
    Column("reasons", JSON, nullable=False),
    Column("state", String(16), nullable=False, index=True),  # pending|approved|denied|expired|collected
    Column("votes", JSON, nullable=False),
    Column("decided_by", String(256)),
    Column("decided_by_subject", JSON),  # how the decider authenticated (migration 0011)
    Column("decision_reason", Text),
    _ts("created_at"),
    _ts("expires_at"),
    _ts("decided_at", nullable=True),
    _ts("collected_at", nullable=True),
    Column("collected_decision_id", String(64)),
    Column("grant_id", String(64)),
    Column("collect_error", Text),
)

# actions decided in mode ``review`` (and allowed): a human marks each fine or flags it
reviews = Table(
    "reviews",
    metadata,
    Column("review_id", String(64), primary_key=True),
    Column("decision_id", String(64), nullable=False, unique=True),
    Column("task_id", String(64), nullable=False, index=True),
    Column("agent", String(128), nullable=False),
    Column("action", String(128), nullable=False),
    Column("resource", String(128), nullable=False),
    Column("tier", String(16), nullable=False),
    Column("grant_id", String(64)),
    Column("state", String(16), nullable=False, index=True),  # pending | fine | flagged
    Column("reviewer", String(256)),
    Column("reviewer_subject", JSON),  # how the reviewer authenticated (migration 0011)
    Column("reason", Text),
    Column("escalation", JSON),
    _ts("created_at"),
    _ts("resolved_at", nullable=True),
)


# -- people: the humans who approve, review, audit and administer (migration 0011) -----------------
people = Table(
    "people",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("display_name", String(256), nullable=False, default=""),
    Column("roles", JSON, nullable=False),  # sorted list of admin|approver|reviewer|auditor
    Column("identities", JSON, nullable=False),  # [{"issuer", "subject"}], mirrored in person_identities
    Column("disabled", Boolean, nullable=False, default=False),
    _ts("created_at"),
    _ts("updated_at"),
)

# an OIDC identity belongs to one person (the primary key makes that so)
person_identities = Table(
    "person_identities",
    metadata,
    Column("issuer", String(512), primary_key=True),
    Column("subject", String(512), primary_key=True),
    Column("person", String(128), nullable=False, index=True),
)

# per-person API tokens: only a salted HMAC-SHA256 of the secret part is kept
person_tokens = Table(
    "person_tokens",
    metadata,
    Column("token_id", String(64), primary_key=True),
    Column("person", String(128), nullable=False, index=True),
    Column("salt", String(64), nullable=False),
    Column("secret_hmac", String(64), nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("created_by", String(256), nullable=False),
    _ts("created_at"),
    _ts("expires_at"),
    _ts("revoked_at", nullable=True),
    _ts("last_used_at", nullable=True),
)

# web console sessions (docs/console.md): the session id's HMAC only, never the id itself
console_sessions = Table(
    "console_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("person", String(128), nullable=False, index=True),
    Column("issuer", String(512), nullable=False),
    Column("subject", String(512), nullable=False),
    _ts("created_at"),
    _ts("last_seen_at"),
    _ts("expires_at"),
    _ts("ended_at", nullable=True),
)

# -- the registry's version: every agent/profile/resource change increments it (migration 0015) ----
registry_version = Table(
    "registry_version",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("version", BigInteger, nullable=False),
)
