"""Scan job definitions: what to scan (a source), when (a schedule), what to do on a finding.

Validated with pydantic at the edge (the admin API and the stored JSON); every error names its
field, e.g. ``schedule.cron: invalid cron expression "61 * * * *"``. Stored as JSON in
``scan_jobs.spec``; the schedule is also given to APScheduler (``trigger``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# interval slots are counted from here, so every replica computes the same fire times
ANCHOR = datetime(2000, 1, 1, tzinfo=UTC)
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
_KV_PATH = re.compile(r"^[A-Za-z0-9_.\-/]*$")
GIT_SCHEMES = ("https", "ssh")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FilesSource(_Strict):
    kind: Literal["files"]
    path: str = Field(
        min_length=1,
        max_length=1024,
        description="a directory (every file under it) or a glob such as /var/log/agents/*.log",
    )

    @field_validator("path")
    @classmethod
    def _absolute(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError("must be an absolute path or glob")
        return v


class GitSource(_Strict):
    kind: Literal["git"]
    repo: str = Field(
        min_length=1,
        max_length=1024,
        description="a local repository path (under a scan root), or an https:// or ssh:// URL (mirrored)",
    )
    refs: list[str] = Field(
        default_factory=lambda: ["--all"],
        max_length=64,
        description='refs to follow; default every branch and tag ("--all")',
    )

    @field_validator("repo")
    @classmethod
    def _repo(cls, v: str) -> str:
        if v.startswith("/"):
            return v
        if not re.match(r"^(https|ssh|http)://", v):
            raise ValueError("must be an absolute path or an https:// or ssh:// URL")
        # a token before the @ would be stored and shown back by the API: refused here already (use
        # an SSH key or a git credential helper on the broker host); the broker's outbound policy
        # checks the rest when the job is accepted and before each run
        netloc = v.split("://", 1)[1].split("/", 1)[0]
        user, at, _ = netloc.rpartition("@")
        if at and (not v.startswith("ssh://") or ":" in user or not re.fullmatch(r"[A-Za-z0-9._-]{1,32}", user)):
            raise ValueError(
                "must not carry credentials (user:password@ or a token before @); use an SSH "
                "key or a git credential helper on the broker host"
            )
        return v

    @field_validator("refs")
    @classmethod
    def _refs(cls, v: list[str]) -> list[str]:
        for ref in v:
            if ref == "--all":
                continue
            if ref.startswith("-") or not re.fullmatch(r"[A-Za-z0-9_./\-]{1,200}", ref):
                raise ValueError(f'invalid ref "{ref[:40]}": a branch, tag or "--all"')
        return v


class S3Source(_Strict):
    kind: Literal["s3"]
    bucket: str
    prefix: str = Field(default="", max_length=1024)
    endpoint_url: str | None = Field(
        default=None, max_length=2048, description="default: the broker's aws.endpoint_url (https://)"
    )
    region: str | None = Field(default=None, pattern=r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, v: str) -> str:
        if not _BUCKET.match(v):
            raise ValueError("must be an S3 bucket name (3-63 characters: a-z 0-9 . -)")
        return v


class OpenBaoKvSource(_Strict):
    kind: Literal["openbao_kv"]
    mount: str = Field(default="secret", pattern=r"^[A-Za-z0-9_.\-]{1,128}$")
    path: str = Field(default="", max_length=512, description="sub-path to sweep (default: the whole mount)")
    version: Literal[1, 2] = 2

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        if not _KV_PATH.match(v) or ".." in v.split("/"):
            raise ValueError("must be a KV path (A-Z a-z 0-9 _ . - /)")
        return v.strip("/")


Source = Annotated[FilesSource | GitSource | S3Source | OpenBaoKvSource, Field(discriminator="kind")]


class Schedule(_Strict):
    every_seconds: int | None = Field(default=None, ge=1, le=7 * 86400)
    cron: str | None = Field(default=None, max_length=128, description='five-field crontab, e.g. "0 * * * *" (UTC)')

    @model_validator(mode="after")
    def _exactly_one(self) -> Schedule:
        if (self.every_seconds is None) == (self.cron is None):
            raise ValueError("exactly one of every_seconds, cron must be set")
        return self

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                CronTrigger.from_crontab(v, timezone=UTC)
            except ValueError as exc:
                raise ValueError(f'invalid cron expression "{v}": {exc}') from None
        return v

    def trigger(self) -> BaseTrigger:
        if self.every_seconds is not None:
            return IntervalTrigger(seconds=self.every_seconds, start_date=ANCHOR, timezone=UTC)
        assert self.cron is not None
        return CronTrigger.from_crontab(self.cron, timezone=UTC)

    def period_seconds(self) -> int:
        """The slot width used for once-only runs across replicas."""
        return self.every_seconds if self.every_seconds is not None else 60

    def slot(self, now: datetime) -> int:
        """The scheduled slot ``now`` falls in (interval: multiples since ANCHOR; cron: the minute)."""
        return int((now - ANCHOR).total_seconds() // self.period_seconds())


class OnFinding(_Strict):
    """What to do on a finding. ``broker_issued``: revoke the grant and escalate its task;
    ``managed``: rotate the static secret; anything else opens a finding and alerts."""

    broker_issued: Literal["revoke", "alert"] = "revoke"
    managed: Literal["rotate", "alert"] = "rotate"
    alert: bool = True


class ScanJobIn(_Strict):
    source: Source | None = Field(default=None, description="required when the job is created")
    schedule: Schedule
    on_finding: OnFinding = OnFinding()
    enabled: bool = True


class ScanJobSpec(_Strict):
    source: Source
    schedule: Schedule
    on_finding: OnFinding = OnFinding()
    enabled: bool = True

    @classmethod
    def load(cls, raw: Mapping[str, Any]) -> ScanJobSpec:
        return cls.model_validate(raw)

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)
