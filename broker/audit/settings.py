"""Settings of the keyed audit trail (``audit:`` in the YAML file, ``NHI_BROKER_AUDIT__*`` in env).

See docs/operations.md, "Audit trail". Defaults: the key in ``<data_dir>/audit.key`` (0600),
checkpoints appended to ``<data_dir>/audit-checkpoints.jsonl``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator


class CheckpointSinkSettings(BaseModel):
    """One place checkpoints are exported to, outside the database."""

    kind: Literal["file", "syslog", "webhook"]
    # file: path of an append-only JSON-lines file (default: <data_dir>/audit-checkpoints.jsonl)
    path: Path | None = None
    # syslog: "host:port" (UDP) or the path of a unix socket such as /dev/log
    address: str | None = Field(default=None, max_length=512)
    facility: Literal["auth", "authpriv", "daemon", "local0", "local1", "local2", "local3", "local4",
                      "local5", "local6", "local7", "user"] = "authpriv"
    # webhook: a JSON POST per checkpoint
    url: str | None = Field(default=None, max_length=2048)
    timeout_seconds: float = Field(default=2.0, gt=0, le=30)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("url must be an http(s) URL with a host")
        if parts.username or parts.password:
            raise ValueError("url must not carry credentials (user:password@)")
        return v

    @model_validator(mode="after")
    def _target(self) -> CheckpointSinkSettings:
        if self.kind == "syslog" and not self.address:
            raise ValueError("a syslog sink needs address (host:port or a unix socket path)")
        if self.kind == "webhook" and not self.url:
            raise ValueError("a webhook sink needs url")
        return self


class AuditSettings(BaseModel):
    # hex, at least 32 bytes; when empty the key file is used (created 0600 on first start)
    key: SecretStr = SecretStr("")
    key_file: Path | None = None  # default: <data_dir>/audit.key
    # verify the new events and export a checkpoint of the head this often (when it moved)
    checkpoint_interval_seconds: float = Field(default=10.0, gt=0, le=86400)
    # walk the whole chain again this often (and once at start-up)
    verify_interval_seconds: float = Field(default=3600.0, gt=0, le=7 * 86400)
    sinks: list[CheckpointSinkSettings] = Field(
        default_factory=lambda: [CheckpointSinkSettings(kind="file")], max_length=8)
