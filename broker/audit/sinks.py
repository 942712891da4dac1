"""Where checkpoints go, outside the database: a file, syslog, a webhook.

- :class:`FileSink` — ``O_APPEND`` (each checkpoint is one ``write`` of one line, under an
  exclusive ``flock`` so replicas sharing the file never interleave), ``fsync``, mode ``0600``.
  The file can be read back: it is what start-up and ``nhi-broker audit verify`` check against.
  Make it append-only for the broker's own user too with ``chattr +a`` where the filesystem allows.
- :class:`SyslogSink` — one RFC 3164 message per checkpoint to ``host:port`` (UDP) or a unix
  socket (``/dev/log``); ship it to a log host the broker cannot rewrite.
- :class:`WebhookSink` — a JSON POST per checkpoint (short timeout).

A sink that fails raises :class:`SinkError`; the guard logs it, counts it and alerts, and keeps
exporting to the others.
"""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path
from typing import Protocol, runtime_checkable

import httpx

from broker.audit.checkpoints import Checkpoint
from broker.config import CheckpointSinkSettings
from broker.errors import BrokerError

FACILITIES = {"user": 1, "daemon": 3, "auth": 4, "authpriv": 10, **{f"local{i}": 16 + i for i in range(8)}}
SEVERITY_NOTICE = 5


class SinkError(BrokerError):
    """A checkpoint could not be exported to a sink (the message names the sink, never a secret)."""


class CheckpointSink(Protocol):
    name: str

    def export(self, checkpoint: Checkpoint) -> None: ...


@runtime_checkable
class ReadableSink(Protocol):
    """A sink the broker can read back (the file): what verification checks the chain against."""

    name: str

    def read_lines(self) -> list[str]: ...


class FileSink:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = f"file:{path}"

    def export(self, checkpoint: Checkpoint) -> None:
        data = checkpoint.to_line().encode()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                written = os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)  # closing releases the lock
        except OSError as exc:
            raise SinkError(f"checkpoint sink {self.name}: {exc.strerror or type(exc).__name__}") from None
        if written != len(data):
            raise SinkError(f"checkpoint sink {self.name}: short write ({written} of {len(data)} bytes)")

    def read_lines(self) -> list[str]:
        if not self.path.exists():
            return []
        with self.path.open(encoding="utf-8", errors="replace", newline="") as fh:
            return fh.read().splitlines(keepends=True)


class SyslogSink:
    def __init__(self, address: str, facility: str = "authpriv", *, timeout: float = 2.0) -> None:
        self.name = f"syslog:{address}"
        self._priority = FACILITIES[facility] * 8 + SEVERITY_NOTICE
        self._timeout = timeout
        if address.startswith("/"):
            self._family, self._target = socket.AF_UNIX, address
        else:
            host, sep, port = address.rpartition(":")
            if not sep or not port.isdigit() or not host:
                raise SinkError(f"checkpoint sink syslog: address {address!r} must be host:port or a socket path")
            self._family, self._target = socket.AF_INET, (host.strip("[]"), int(port))  # type: ignore[assignment]

    def export(self, checkpoint: Checkpoint) -> None:
        message = f"<{self._priority}>nhi-broker-audit: {checkpoint.to_line().strip()}".encode()
        try:
            with socket.socket(self._family, socket.SOCK_DGRAM) as sock:
                sock.settimeout(self._timeout)
                sock.sendto(message, self._target)
        except OSError as exc:
            raise SinkError(f"checkpoint sink {self.name}: {exc.strerror or type(exc).__name__}") from None


class WebhookSink:
    def __init__(self, url: str, *, timeout: float = 2.0) -> None:
        self._url = url
        self._timeout = timeout
        self.name = "webhook"  # the URL may carry a token in its path: never printed

    def __repr__(self) -> str:
        return "WebhookSink(url=**********)"

    def export(self, checkpoint: Checkpoint) -> None:
        try:
            resp = httpx.post(
                self._url,
                content=checkpoint.to_line().encode(),
                timeout=self._timeout,
                headers={"content-type": "application/json"},
                follow_redirects=False,
            )
        except httpx.HTTPError as exc:
            raise SinkError(f"checkpoint sink webhook: {type(exc).__name__}") from None
        if resp.status_code >= 300:
            raise SinkError(f"checkpoint sink webhook: status {resp.status_code}")


def build_sinks(configured: list[CheckpointSinkSettings], data_dir: Path) -> list[CheckpointSink]:
    sinks: list[CheckpointSink] = []
    for s in configured:
        if s.kind == "file":
            sinks.append(FileSink(s.path or data_dir / "audit-checkpoints.jsonl"))
        elif s.kind == "syslog":
            assert s.address is not None  # the settings validator requires it
            sinks.append(SyslogSink(s.address, s.facility, timeout=s.timeout_seconds))
        else:
            assert s.url is not None
            sinks.append(WebhookSink(s.url, timeout=s.timeout_seconds))
    return sinks
