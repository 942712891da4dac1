"""An OpenBao KV mount: secret sprawl, found by comparing keyed fingerprints of values.

Every secret under ``mount/path`` is read and each secret-like field value is fingerprinted
(HMAC, the broker's key); the value itself goes nowhere. Observations:

- ``kv-secret-sprawl`` — the same value stored under several paths (one observation per place);
- ``managed-secret-copy`` — the current value of a static secret the broker manages, copied
  outside its own path;
- ``broker-issued-secret`` — a credential the broker issued, parked in KV.

A sweep reads the whole sub-tree every run (sprawl needs every fingerprint); findings are
de-duplicated by fingerprint and location, so a repeated sweep only refreshes ``last_seen``.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterator

from scanners.checksums import shannon_entropy
from scanners.sources.base import Checkpoint, Item, KvReader, Observation, SourceContext, SourceError, StateView

_SECRETISH = re.compile(r"pass|secret|token|key|cred|auth|private|api", re.IGNORECASE)
MAX_SECRETS = 100_000


def secret_like(field: str, value: str) -> bool:
    """Values worth comparing: named like a secret, or long and random enough to be one."""
    if len(value) < 8 or value.isdigit():
        return False
    return bool(_SECRETISH.search(field)) or (len(value) >= 16 and shannon_entropy(value) >= 3.5)


class OpenBaoKvAdapter:
    kind = "openbao_kv"

    def __init__(self, mount: str, path: str, version: int, ctx: SourceContext) -> None:
        self.mount = mount
        self.path = path
        self.version = version
        self.ctx = ctx

    def _walk(self, kv: KvReader) -> Iterator[str]:
        stack = [self.path]
        count = 0
        while stack:
            prefix = stack.pop()
            for key in sorted(kv.list(self.mount, prefix, self.version)):
                full = f"{prefix}/{key}" if prefix else key
                if key.endswith("/"):
                    stack.append(full.rstrip("/"))
                else:
                    count += 1
                    if count > MAX_SECRETS:
                        raise SourceError(f"KV mount {self.mount}: more than {MAX_SECRETS} secrets")
                    yield full

    def items(self, state: StateView) -> Iterator[Item]:
        places: dict[str, list[str]] = defaultdict(list)
        nbytes = 0
        if self.ctx.kv is None:
            raise SourceError(f"OpenBao KV mount {self.mount}: no KV reader is configured for scans")
        with self.ctx.kv() as kv:
            for path in self._walk(kv):
                for name, value in sorted(kv.read(self.mount, path, self.version).items()):
                    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
                    nbytes += len(text)
                    if secret_like(name, text):
                        places[self.ctx.fingerprint(text)].append(f"{self.mount}/{path}#{name}")
        for fp, where in places.items():
            yield from self._observe(fp, where)
        yield Checkpoint({}, nbytes=nbytes)

    def _observe(self, fp: str, where: list[str]) -> Iterator[Observation]:
        managed = self.ctx.is_managed(fp)
        for loc in where:
            field = loc.rsplit("#", 1)[1]
            others = [w for w in where if w != loc]
            if self.ctx.is_grant(fp):
                yield Observation(
                    "broker-issued-secret",
                    fp,
                    loc,
                    f"{field}: [broker-issued secret]",
                    "critical",
                    {"path": loc},
                )
            elif managed is not None and not _home(loc, str(managed.get("location", ""))):
                yield Observation(
                    "managed-secret-copy",
                    fp,
                    loc,
                    f"{field}: [copy of managed secret {managed.get('name')}]",
                    "high",
                    {"path": loc, "managed": managed.get("name")},
                )
            elif managed is None and others:
                shown = ", ".join(others[:5]) + (f" (+{len(others) - 5})" if len(others) > 5 else "")
                yield Observation(
                    "kv-secret-sprawl",
                    fp,
                    loc,
                    f"{field}: [same value also at {shown}]",
                    "medium",
                    {"path": loc, "also_at": others[:20]},
                )


def _home(loc: str, managed_location: str) -> bool:
    """The managed secret's own place (``mount/path``, any field, or ``mount/path#field``)."""
    return bool(managed_location) and (loc == managed_location or loc.rsplit("#", 1)[0] == managed_location)
