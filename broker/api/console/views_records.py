"""View models of the console's Findings and Audit pages: bounded, keyset-paginated, filtered lists
(filters validated, each refusal naming its field), and the audit chain's verification status."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from broker.audit.log import AuditEvent
from broker.audit.reading import Reading
from broker.container import Container
from broker.errors import InvalidInput
from broker.models import FindingStatus
from broker.store.findings import StoredFinding

PAGE_SIZE = 50
MAX_PAGE = 200
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")
_RULE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")
_KIND = re.compile(r"^[a-z][a-z0-9_.]{0,63}$")
_TASK = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_ACTOR = re.compile(r"^[^\x00-\x1f\x7f]{1,256}$")


class FindingSource(enum.StrEnum):
    FILES = "files"
    GIT = "git"
    S3 = "s3"
    OPENBAO_KV = "openbao_kv"


def checked(field: str, value: str | None, pattern: re.Pattern[str], allowed: str) -> str | None:
    if value is None or value == "":
        return None
    if not pattern.fullmatch(value):
        raise InvalidInput(field, f"{value[:80]!r} is not allowed: {allowed}")
    return value


E = TypeVar("E", bound=enum.StrEnum)


def member(field: str, value: str | None, kind: type[E]) -> E | None:
    """``value`` as a member of ``kind`` (None when empty), or 422 naming the field and what is allowed."""
    if not value:
        return None
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(m.value for m in kind)
        raise InvalidInput(field, f"{value[:80]!r} is not allowed: one of {allowed}") from None


def _limit(limit: int) -> int:
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput("limit", f"{limit} is not allowed: between 1 and {MAX_PAGE}")
    return limit


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
    _limit(limit)
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
    more = len(rows) > limit
    items = tuple(rows[:limit])
    return FindingPage(items, filters, items[-1].finding_id if more else None)


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
    _limit(limit)
    if before is not None and before < 1:
        raise InvalidInput("before", f"{before} is not allowed: a positive event number")
    rows = c.audit.page(
        kind=filters.kind, task_id=filters.task_id, actor=filters.actor, before_seq=before, limit=limit + 1
    )
    more = len(rows) > limit
    items = tuple(rows[:limit])
    return AuditPage(items, filters, items[-1].seq if more else None, c.audit_reader.reading())
