"""View models of the console's Findings and Audit pages: bounded, keyset-paginated, filtered lists
(filters validated, each refusal naming its field), and the audit chain's verification status."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import datetime

from broker.api.console.query import NAME, check_limit, checked, keyset, member
from broker.audit.log import AuditEvent
from broker.audit.reading import Reading
from broker.container import Container
from broker.errors import InvalidInput
from broker.models import FindingStatus
from broker.store.findings import StoredFinding

PAGE_SIZE = 50
_RULE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")
_KIND = re.compile(r"^[a-z][a-z0-9_.]{0,63}$")
_TASK = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_ACTOR = re.compile(r"^[^\x00-\x1f\x7f]{1,256}$")


class FindingSource(enum.StrEnum):
    FILES = "files"
    GIT = "git"
    S3 = "s3"
    OPENBAO_KV = "openbao_kv"


@dataclass(frozen=True, slots=True)
class FindingFilters:
    status: FindingStatus | None = None
    job: str | None = None
    rule: str | None = None
    source: FindingSource | None = None

    @classmethod
    def parse(cls, *, status: str | None, job: str | None, rule: str | None, source: str | None) -> FindingFilters:
        return cls(
            status=member("status", status, FindingStatus),
            job=checked("job", job, NAME, "a job name (a-z 0-9 . _ -)"),
            rule=checked("rule", rule, _RULE, "a rule id (letters, digits . _ : / -)"),
            source=member("source", source, FindingSource),
        )


@dataclass(frozen=True, slots=True)
class FindingPage:
    items: tuple[StoredFinding, ...]
    filters: FindingFilters
    next_before: str | None  # the finding id to continue after


def finding_page(c: Container, filters: FindingFilters, *, before: str | None, limit: int = PAGE_SIZE) -> FindingPage:
    check_limit(limit)
    findings = c.scan_jobs.findings
    cursor: tuple[datetime, str] | None = None
    if before:
        checked("before", before, _TASK, "a finding id")
        last = findings.get(before)
        cursor = (last.last_seen, last.finding_id)
    rows = findings.list(
        status=filters.status.value if filters.status else None,
        job=filters.job,
        rule=filters.rule,
        source=filters.source.value if filters.source else None,
        before=cursor,
        limit=limit + 1,
    )
    items, after = keyset(rows, limit, lambda f: f.finding_id)
    return FindingPage(items, filters, after)


@dataclass(frozen=True, slots=True)
class AuditFilters:
    kind: str | None = None
    task_id: str | None = None
    actor: str | None = None

    @classmethod
    def parse(cls, *, kind: str | None, task_id: str | None, actor: str | None) -> AuditFilters:
        return cls(
            kind=checked("kind", kind, _KIND, "an event kind such as credential.issued"),
            task_id=checked("task_id", task_id, _TASK, "a task id"),
            actor=checked("actor", actor, _ACTOR, "an actor such as person:alice (no control characters)"),
        )


@dataclass(frozen=True, slots=True)
class AuditPage:
    """One page of audit events, newest first, and the chain's verification status."""

    items: tuple[AuditEvent, ...]
    filters: AuditFilters
    next_before: int | None  # the seq to continue below
    status: Reading


def audit_page(c: Container, filters: AuditFilters, *, before: int | None, limit: int = PAGE_SIZE) -> AuditPage:
    check_limit(limit)
    if before is not None and before < 1:
        raise InvalidInput("before", f"{before} is not allowed: a positive event number")
    rows = c.audit.page(
        kind=filters.kind, task_id=filters.task_id, actor=filters.actor, before_seq=before, limit=limit + 1
    )
    items, after = keyset(rows, limit, lambda e: e.seq)
    return AuditPage(items, filters, after, c.audit_reader.reading())
