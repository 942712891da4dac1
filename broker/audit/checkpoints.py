"""Signed checkpoints of the audit chain, exported to sinks outside the database.

A checkpoint says "event ``seq`` of chain ``chain`` had hash ``hash`` at ``ts``", signed with the
audit key (HMAC-SHA256 under the label ``nhi-broker audit checkpoint v1``, so it can never be
confused with an event MAC). One JSON object per line::

    {"v":1,"chain":"…","seq":1234,"hash":"…","ts":"2026-12-01T01:02:03+00:00",
     "key_id":"local:…","replica":"host:pid","sig":"…"}

Sinks (:mod:`broker.audit.sinks`): an append-only file (the default, readable back for
verification), syslog, a webhook. Several replicas may export to one sink: every checkpoint stands
alone (a real committed event of the chain), lines may arrive out of order, and verification uses
them all and the highest ``seq`` as "latest".
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from broker.audit.keys import AuditKey

LABEL = b"nhi-broker audit checkpoint v1\n"
VERSION = 1
MAX_LINE = 4096


@dataclass(frozen=True, slots=True)
class Checkpoint:
    chain: str
    seq: int
    hash: str
    ts: str
    key_id: str
    replica: str
    sig: str = ""

    def _payload(self) -> bytes:
        body = {
            "v": VERSION,
            "chain": self.chain,
            "seq": self.seq,
            "hash": self.hash,
            "ts": self.ts,
            "key_id": self.key_id,
            "replica": self.replica,
        }
        return LABEL + json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    def signed(self, key: AuditKey) -> Checkpoint:
        return Checkpoint(
            self.chain, self.seq, self.hash, self.ts, self.key_id, self.replica, key.mac(self._payload()).hex()
        )

    def signature_ok(self, key: AuditKey) -> bool:
        return self.key_id == key.key_id and hmac.compare_digest(key.mac(self._payload()).hex(), self.sig)

    def to_line(self) -> str:
        return json.dumps({"v": VERSION, **asdict(self)}, sort_keys=True, separators=(",", ":")) + "\n"


@dataclass(frozen=True, slots=True)
class CheckpointFile:
    """What a sink's file held: the checkpoints whose signature verified, and what did not."""

    checkpoints: tuple[Checkpoint, ...]
    problems: tuple[str, ...]  # a forged or unreadable line: tampering with the sink
    notes: tuple[str, ...]  # e.g. a torn last line (a crash while writing)


def parse(lines: Iterable[str], key: AuditKey, *, source: str) -> CheckpointFile:
    good: list[Checkpoint] = []
    problems: list[str] = []
    notes: list[str] = []
    all_lines = list(lines)
    for n, line in enumerate(all_lines, 1):
        if not line.strip():
            continue
        last = n == len(all_lines)
        try:
            if len(line) > MAX_LINE:
                raise ValueError("line too long")
            raw = json.loads(line[line.find("{") :])  # lines collected from syslog keep their prefix
            if not isinstance(raw, dict) or raw.get("v") != VERSION:
                raise ValueError("not a version 1 checkpoint")
            cp = Checkpoint(
                chain=str(raw["chain"]),
                seq=int(raw["seq"]),
                hash=str(raw["hash"]),
                ts=str(raw["ts"]),
                key_id=str(raw["key_id"]),
                replica=str(raw["replica"]),
                sig=str(raw["sig"]),
            )
        except (ValueError, KeyError, TypeError):
            if last and not line.endswith("\n"):
                notes.append(f"{source}: line {n} is incomplete (a write was cut short); ignored")
            else:
                problems.append(f"{source}: line {n} is not a checkpoint")
            continue
        if cp.key_id != key.key_id:
            problems.append(f"{source}: line {n} was signed with key {cp.key_id}, not the audit key {key.key_id}")
        elif not cp.signature_ok(key):
            problems.append(
                f"{source}: line {n} has a signature that does not verify under the audit key "
                f"(written by someone without the key)"
            )
        else:
            good.append(cp)
    return CheckpointFile(tuple(good), tuple(problems), tuple(notes))
