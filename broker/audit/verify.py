"""Walking the audit chain: every link, the key anchor, the head, and the exported checkpoints.

What each check catches (an attacker with the database but without the audit key):

- an edited row: its MAC no longer verifies;
- a row inserted or deleted in the middle: the sequence or the ``prev_hash`` link breaks;
- every event re-chained (with another key, or as "legacy" plain SHA-256): the anchor's MAC does
  not verify, or a keyed chain falls back to unkeyed links, or the hashes no longer match the
  signed checkpoints;
- the last events deleted and the head moved back: the store ends before the latest checkpoint
  exported outside the database.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from broker.audit.chain import ANCHOR_KIND, GENESIS, event_fields, keyed_digest, legacy_digest
from broker.audit.checkpoints import Checkpoint
from broker.audit.keys import AuditKey


@dataclass(frozen=True, slots=True)
class ChainHead:
    seq: int
    hash: str
    key_id: str | None


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    events: int  # events walked by this verification
    problem: str | None = None
    seq: int | None = None  # the event the problem is at, when there is one
    head_seq: int = 0
    head_hash: str = GENESIS
    keyed_from: int | None = None  # seq of the ``audit.chain_keyed`` anchor (full walks)
    chain_id: str | None = None  # event_id of the anchor: names the chain in checkpoints
    checkpoint: Checkpoint | None = None  # the latest checkpoint the chain was checked against

    def summary(self) -> str:
        if not self.ok:
            return f"audit trail BROKEN after {self.events} good events: {self.problem}"
        text = f"audit trail intact: {self.events} events"
        if self.keyed_from is not None and self.keyed_from > 1:
            text += f" ({self.keyed_from - 1} legacy events before the key anchor at event {self.keyed_from})"
        elif self.keyed_from is None and self.head_seq:
            text += " (not keyed yet: the broker keys the chain on its next start)"
        if self.checkpoint is not None:
            text += f"; latest checkpoint: event {self.checkpoint.seq} at {self.checkpoint.ts}"
        return text


def _fail(events: int, problem: str, seq: int | None, head: ChainHead) -> VerifyResult:
    return VerifyResult(False, events, problem, seq, head_seq=head.seq, head_hash=head.hash)


def walk(
    key: AuditKey,
    rows: Iterable[Mapping[str, Any]],
    head: ChainHead,
    checkpoints: Sequence[Checkpoint] = (),
    *,
    start: tuple[int, str] | None = None,
) -> VerifyResult:
    """``rows`` in seq order up to ``head.seq``. With ``start`` (a keyed point verified before),
    ``rows`` begin right after it."""
    expected, prev = (start[0] + 1, start[1]) if start else (1, GENESIS)
    keyed = start is not None
    keyed_from: int | None = None
    chain_id: str | None = None
    by_seq: dict[int, list[Checkpoint]] = {}
    for cp in checkpoints:
        by_seq.setdefault(cp.seq, []).append(cp)
    latest = max(checkpoints, key=lambda c: c.seq, default=None)
    if latest is not None and latest.seq > head.seq:
        return _fail(
            0,
            f"the store ends at event {head.seq} but the checkpoint exported at {latest.ts} covers "
            f"event {latest.seq}: the last events were deleted and the head moved back",
            head.seq,
            head,
        )
    if start is not None and head.seq < start[0]:
        return _fail(
            0,
            f"the store ends at event {head.seq} but event {start[0]} was verified before: the last "
            f"events were deleted and the head moved back",
            head.seq,
            head,
        )
    count = 0
    for row in rows:
        seq = int(row["seq"])
        if seq != expected:
            return _fail(count, f"event {expected} is missing (next is {seq})", expected, head)
        if row["prev_hash"] != prev:
            return _fail(count, f"event {seq} does not link to the event before it", seq, head)
        event = event_fields(row)
        if keyed:
            if keyed_digest(key, prev, event) != row["hash"]:
                return _fail(
                    count,
                    f"event {seq} was modified (its MAC does not verify under the audit key {key.key_id})",
                    seq,
                    head,
                )
            if row["kind"] == ANCHOR_KIND:
                return _fail(
                    count,
                    f"event {seq} re-anchors a chain that was already keyed (the head row's key id was cleared)",
                    seq,
                    head,
                )
        elif row["kind"] == ANCHOR_KIND:
            if keyed_digest(key, prev, event) != row["hash"]:
                return _fail(
                    count,
                    f"event {seq} (the chain's key anchor) is not keyed with the audit key "
                    f"{key.key_id}: the chain was rewritten, or the key is not this chain's",
                    seq,
                    head,
                )
            keyed, keyed_from, chain_id = True, seq, str(row["event_id"])
        elif legacy_digest(prev, event) != row["hash"]:
            return _fail(count, f"event {seq} was modified", seq, head)
        for cp in by_seq.get(seq, ()):
            if cp.hash != row["hash"]:
                return _fail(
                    count,
                    f"event {seq} differs from the checkpoint exported at {cp.ts} (the chain "
                    f"was rewritten from there on)",
                    seq,
                    head,
                )
        prev, expected, count = str(row["hash"]), expected + 1, count + 1
    if expected - 1 != head.seq or head.hash != prev:
        return _fail(
            count,
            f"the chain ends at event {expected - 1} but the head says {head.seq} (events were deleted from the end)",
            head.seq,
            head,
        )
    if checkpoints and not keyed:
        return _fail(
            count,
            "the chain is not keyed but checkpoints of a keyed chain were exported: the chain "
            "was rewritten without its key anchor",
            head.seq,
            head,
        )
    if chain_id is not None and latest is not None and latest.chain != chain_id:
        return _fail(
            count, f"the checkpoints name chain {latest.chain} but this store's chain is {chain_id}", head.seq, head
        )
    return VerifyResult(
        True, count, head_seq=head.seq, head_hash=prev, keyed_from=keyed_from, chain_id=chain_id, checkpoint=latest
    )
