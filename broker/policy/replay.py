"""Replay recorded decisions against a candidate bundle: what would change if it shipped?

:func:`replay` is pure: it takes the records the broker stored (``Decision.record()`` dicts, which
carry ``inputs``) from anywhere — a JSONL export today, the broker's store later — rebuilds each
:class:`DecisionInput`, decides it with the candidate engine and reports every difference in
outcome, tier, mode, TTL or use count. Records too old to carry what replay needs are listed as
skipped with the missing field, never guessed.

With ``chain`` (a :class:`broker.chain.replay.ChainReplay`), the chain detectors run after the
engine, over each task's chain rebuilt in time order, as they do live: a decision the ``burst``,
``dangerous_sequence`` or ``ceiling_exceeded`` detector turned into a deny is reproduced, so an
unchanged bundle reports no change.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from broker.decisions import ApprovalContext, ChainSummary, Decision, DecisionEngine, DecisionInput
from broker.errors import InvalidInput
from broker.models import (
    Action,
    Agent,
    Consequence,
    DecisionId,
    Environment,
    Resource,
    Sensitivity,
    Task,
    TaskId,
    TaskProfile,
    TaskState,
    Tier,
    TrustLevel,
    VerifiedHuman,
)


@dataclass(frozen=True, slots=True)
class Summary:
    outcome: str
    tier: str
    mode: str
    ttl_seconds: int
    uses: int
    policy_ids: tuple[str, ...]
    detection: str | None = None  # pre_issuance | post_issuance; None on records older than the field

    @classmethod
    def of(cls, record: Mapping[str, Any]) -> Summary:
        return cls(
            str(record["outcome"]),
            str(record["tier"]),
            str(record["mode"]),
            int(record["ttl_seconds"]),
            int(record.get("uses", 0)),
            tuple(record.get("policy_ids") or ()),
            record.get("detection"),
        )


@dataclass(frozen=True, slots=True)
class Change:
    decision_id: str
    agent: str
    action: str
    resource: str
    decided_at: str
    before: Summary
    after: Summary
    kinds: tuple[str, ...]  # e.g. "allow→deny", "ttl 300→60", "mode monitor→inline"


@dataclass(frozen=True, slots=True)
class Skipped:
    decision_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class ReplayReport:
    bundle_hash: str
    replayed: int
    changes: tuple[Change, ...]
    skipped: tuple[Skipped, ...]
    filtered: int  # older than --since

    @property
    def unchanged(self) -> int:
        return self.replayed - len(self.changes)


class ChainReview(Protocol):
    """What the chain detectors make of a replayed decision (broker.chain.replay.ChainReplay)."""

    def observe(self, record: Mapping[str, Any]) -> None: ...

    def review(self, record: Mapping[str, Any], decision: Decision) -> Decision: ...


def replay(
    records: Iterable[Mapping[str, Any]],
    engine: DecisionEngine,
    *,
    since: datetime | None = None,
    chain: ChainReview | None = None,
) -> ReplayReport:
    changes: list[Change] = []
    skipped: list[Skipped] = []
    parsed: list[tuple[Mapping[str, Any], DecisionInput]] = []
    replayed = filtered = 0
    for record in records:
        decision_id = str(record.get("decision_id", "?"))
        try:
            parsed.append((record, input_from_record(record)))
        except (KeyError, ValueError, TypeError) as exc:
            skipped.append(Skipped(decision_id, f"not replayable: {_why(exc)}"))
    parsed.sort(key=lambda pair: pair[1].now)  # a task's chain is rebuilt in time order
    for record, request in parsed:
        if since is not None and request.now < since:
            filtered += 1
            if chain is not None:
                chain.observe(record)
            continue
        before = Summary.of(record)
        decided = engine.decide(request)
        if chain is not None:
            decided = chain.review(record, decided)
        after = Summary.of(decided.public())
        replayed += 1
        kinds = _differences(before, after)
        if kinds:
            changes.append(
                Change(
                    str(record["decision_id"]),
                    request.agent.name,
                    request.action_name,
                    request.resource_name,
                    request.now.isoformat(),
                    before,
                    after,
                    kinds,
                )
            )
    return ReplayReport(engine.bundle_hash, replayed, tuple(changes), tuple(skipped), filtered)


def _why(exc: BaseException) -> str:
    return f"missing field {exc.args[0]!r}" if isinstance(exc, KeyError) else str(exc)


def _differences(a: Summary, b: Summary) -> tuple[str, ...]:
    kinds = []
    for name in ("outcome", "tier", "mode"):
        if getattr(a, name) != getattr(b, name):
            kinds.append(
                f"{getattr(a, name)}→{getattr(b, name)}"
                if name == "outcome"
                else f"{name} {getattr(a, name)}→{getattr(b, name)}"
            )
    if a.ttl_seconds != b.ttl_seconds:
        kinds.append(f"ttl {a.ttl_seconds}→{b.ttl_seconds}")
    if a.uses != b.uses:
        kinds.append(f"uses {a.uses}→{b.uses}")
    if a.detection and b.detection and a.detection != b.detection:
        kinds.append(f"detection {a.detection}→{b.detection}")
    return tuple(kinds)


def input_from_record(record: Mapping[str, Any]) -> DecisionInput:
    """Rebuild the :class:`DecisionInput` a stored decision record was made from."""
    i = record["inputs"]
    action = (
        Action(name=i["action"], consequence=Consequence(i["consequence"]), reversible=bool(i["reversible"]))
        if i.get("consequence") is not None
        else None
    )
    resource = (
        Resource(
            name=i["resource"],
            kind=str(i["resource_kind"]),
            sensitivity=Sensitivity(i["sensitivity"]),
            environment=Environment(i["environment"]),
            settings={},
            external=bool(i["resource_external"]),
        )
        if i.get("sensitivity") is not None
        else None
    )
    agent = Agent(
        name=i["agent"],
        owner=str(i["agent_owner"]),
        trust_level=TrustLevel(i["agent_trust"]),
        bindings=(),
        profiles=tuple(i.get("agent_profiles") or (i["profile"],)),
    )
    profile = TaskProfile(
        name=i["profile"],
        allowed_actions=tuple(i["profile_allowed_actions"]),
        ceiling=Tier(i["profile_ceiling"]),
        max_lifetime_seconds=int(i["profile_max_lifetime_seconds"]),
    )
    now = _aware(i["decided_at"])
    expires = _aware(i["task_expires_at"])
    task = Task(
        task_id=TaskId(i["task_id"]),
        agent=agent.name,
        profile=profile.name,
        purpose=str(i["task_purpose"]),
        on_behalf_of=i.get("on_behalf_of"),
        acting_for=_acting_for(i),
        state=TaskState.ACTIVE,
        created_at=now,
        expires_at=expires,
    )
    c = i.get("chain") or {}
    chain = ChainSummary(
        steps=int(c.get("steps", 0)),
        actions=tuple(c.get("actions") or ()),
        consequences=tuple(c.get("consequences") or ()),
        max_tier=Tier(c["max_tier"]) if c.get("max_tier") else None,
        grants_active=int(c.get("grants_active", 0)),
    )
    approval = (
        ApprovalContext(approval_id=str(i["approval_id"]), approved=bool(i.get("approval_approved")))
        if i.get("approval_id")
        else None
    )
    return DecisionInput(
        decision_id=DecisionId(str(record["decision_id"])),
        agent=agent,
        profile=profile,
        task=task,
        action_name=i["action"],
        resource_name=i["resource"],
        action=action,
        resource=resource,
        chain=chain,
        now=now,
        approval=approval,
    )


def _aware(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp {value!r} has no timezone")
    return parsed


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Decision records, one JSON object a line; a bad line raises naming file and line."""
    with Path(path).open() as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidInput(f"{path}:{number}", f"not JSON ({exc.msg})") from None
            if not isinstance(value, dict):
                raise InvalidInput(f"{path}:{number}", "each line must be a JSON object (a decision record)")
            yield value


def _acting_for(record: Mapping[str, Any]) -> VerifiedHuman | None:
    """The verified person of a recorded decision. Records written before verified persons existed
    (no ``acting_for`` key) were decided with a typed ``on_behalf_of`` counting as present: replay
    them that way, so an unchanged bundle reproduces them."""
    if "acting_for" in record:
        raw = record["acting_for"]
        return VerifiedHuman.from_dict(raw) if isinstance(raw, Mapping) else None
    typed = record.get("on_behalf_of")
    return VerifiedHuman("unverified-legacy", str(typed)) if typed else None
