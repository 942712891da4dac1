"""The source port: what a scheduled scan reads, as a stream of pieces and checkpoints.

A source yields, in order:

- :class:`Piece` — text to scan (at most ``BLOCK`` bytes, so memory stays flat) with where it
  came from; ``line_map`` gives the line number of each of its lines when they are not
  consecutive (added lines of a git diff);
- :class:`Observation` — a finding the source made itself, by fingerprint (the OpenBao KV
  sweep compares fingerprints of values; it never hands a value to anyone);
- :class:`Checkpoint` — the incremental state reached so far. The runner commits the findings
  of everything since the previous checkpoint *together with* this state in one transaction: a
  crash replays at most one chunk, never skips one, and never counts a finding twice.

Sources read their previous state through :class:`StateView` (a snapshot taken at run start).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

BLOCK = 1 << 20  # 1 MiB of text per piece
Fingerprint = Callable[[str], str]


@dataclass(frozen=True, slots=True)
class Piece:
    text: str
    location: str  # de-duplication location: a file path, repo:path, s3://bucket/key
    first_line: int = 1
    line_map: Sequence[int] | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)  # commit, path, bucket, key, etag
    nbytes: int = 0

    def line_of(self, line_in_text: int) -> int:
        if self.line_map is not None and 0 < line_in_text <= len(self.line_map):
            return self.line_map[line_in_text - 1]
        return self.first_line + line_in_text - 1


@dataclass(frozen=True, slots=True)
class Observation:
    rule: str
    fingerprint: str
    location: str
    excerpt: str
    severity: str = "high"
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    state: Mapping[str, Any | None]  # key -> new value (None deletes the key)
    nbytes: int = 0  # bytes read that were not handed over as pieces (KV values)


Item = Piece | Observation | Checkpoint


class StateView(Protocol):
    def get(self, key: str) -> Any | None: ...

    def items(self, prefix: str = "") -> Iterator[tuple[str, Any]]: ...


class DictState:
    """A snapshot of a job's state (``scan_state`` rows), read once at run start."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self._values = dict(values)

    def get(self, key: str) -> Any | None:
        return self._values.get(key)

    def items(self, prefix: str = "") -> Iterator[tuple[str, Any]]:
        for k, v in self._values.items():
            if k.startswith(prefix):
                yield k, v


class KvReader(Protocol):
    """Read access to a KV secrets engine (the broker's adapter: ``broker/backends/openbao_kv_reader.py``).
    Both methods raise :class:`SourceError` with a message that is safe to show."""

    def list(self, mount: str, path: str, version: int) -> list[str]:
        """Keys under ``path`` (sub-folders end with ``/``); empty when the path does not exist."""
        ...

    def read(self, mount: str, path: str, version: int) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class SourceContext:
    """What a source may use: the keyed fingerprint (for state and sprawl), a private cache
    directory, default endpoints, a KV reader, and matchers for known fingerprints."""

    job: str
    fingerprint: Fingerprint
    cache_dir: Path
    aws_region: str | None = None  # default region and endpoint for S3 sources
    aws_endpoint_url: str | None = None
    kv: Callable[[], AbstractContextManager[KvReader]] | None = None
    is_managed: Callable[[str], Mapping[str, Any] | None] = lambda _fp: None  # -> {"name", "location"}
    is_grant: Callable[[str], bool] = lambda _fp: False
    # a local file found while the job runs may be read (real path under a scan root, not refused)
    path_allowed: Callable[[str], bool] = lambda _path: True


class SourceAdapter(Protocol):
    kind: str

    def items(self, state: StateView) -> Iterator[Item]: ...


class SourceError(Exception):
    """A source could not be read (message safe to show: names the source, never a secret)."""


def split_block(data: bytes, final: bool) -> tuple[bytes, bytes]:
    """Cut ``data`` after its last newline: ``(complete lines, remainder)``; with ``final`` or no
    newline in a full block, everything is complete."""
    cut = data.rfind(b"\n")
    if final or (cut < 0 and len(data) >= BLOCK):
        return data, b""
    if cut < 0:
        return b"", data
    return data[: cut + 1], data[cut + 1 :]
