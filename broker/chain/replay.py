"""Chain detectors in replay: reproduce what ``burst``, ``dangerous_sequence`` and
``ceiling_exceeded`` (and ``on_escalation: step_up_only``) did to recorded decisions.

Live, a decision the engine allowed can still become a ``deny`` because of the task's chain
(:meth:`broker.chain.service.ChainService.review_request`). Replaying the engine alone would report
every such decision as changed even under an unchanged bundle. :class:`ChainReplay` rebuilds each
task's chain as replay goes — the replayed decisions (with the candidate's tier and outcome) and
the chain events the broker recorded (tool calls, leak and review reports, escalations) — and runs
the candidate bundle's detectors (its ``chain.yaml``) over it, exactly as the live service does.

Each replayed decision says when its detectors ran (``detection``: ``pre_issuance`` or
``post_issuance``, from the candidate bundle's ``chain.yaml``); a post-issuance hit keeps the
``allow`` (live, the credential went out, then the task escalated) and names the detector in the
reasons.

Records must be fed in time order (``observe`` for those replay skips, e.g. before ``--since``, so
they still count as history). Without recorded events (a JSONL export of decisions only), a
sequence completed by a reported tool call cannot be reproduced; replay from the store has them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from broker.chain.config import ChainConfig, OnEscalation
from broker.chain.detectors import inline_detectors
from broker.chain.model import ChainContext, ChainStep, Detector, StepKind
from broker.decisions import Decision, Detection
from broker.models import Outcome, Tier


def _at(record: Mapping[str, Any]) -> datetime:
    """When the step joined the chain: the store's time when known, else the decision's."""
    raw = record.get("recorded_at") or record["inputs"]["decided_at"]
    return raw if isinstance(raw, datetime) else datetime.fromisoformat(str(raw))


def _step(record: Mapping[str, Any], tier: Tier, outcome: Outcome) -> ChainStep:
    i = record["inputs"]
    external = i.get("resource_external")
    return ChainStep(
        ref=str(record["decision_id"]),
        kind=StepKind.CREDENTIAL_REQUEST,
        at=_at(record),
        action=i.get("action"),
        resource=i.get("resource"),
        consequence=i.get("consequence"),
        sensitivity=i.get("sensitivity"),
        external=bool(external) if external is not None else None,
        tier=tier,
        outcome=outcome,
        collection=bool(i.get("approval_id")),
    )


class ChainReplay:
    def __init__(self, config: ChainConfig, events: Mapping[str, Iterable[ChainStep]] | None = None) -> None:
        self.config = config
        self.detectors: list[Detector] = inline_detectors(config)
        self._events = {task: sorted(steps, key=lambda s: s.at) for task, steps in (events or {}).items()}
        self._decisions: dict[str, list[ChainStep]] = defaultdict(list)

    def _history(self, task_id: str, before: datetime) -> list[ChainStep]:
        steps = [s for s in self._events.get(task_id, ()) if s.at < before] + self._decisions[task_id]
        return sorted(steps, key=lambda s: s.at)

    def observe(self, record: Mapping[str, Any]) -> None:
        """A recorded decision that is not replayed still belongs to its task's chain."""
        task_id = str(record["inputs"]["task_id"])
        self._decisions[task_id].append(_step(record, Tier(record["tier"]), Outcome(record["outcome"])))

    def review(self, record: Mapping[str, Any], decision: Decision) -> Decision:
        """The candidate engine's ``decision`` for ``record``, after the chain detectors, as live."""
        i = record["inputs"]
        task_id = str(i["task_id"])
        candidate = _step(record, decision.tier, decision.outcome)
        history = self._history(task_id, candidate.at)
        post = decision.outcome is Outcome.ALLOW and not self.config.detection.before_issuance(decision.mode)
        decision = replace(decision, detection=Detection.POST_ISSUANCE if post else Detection.PRE_ISSUANCE)
        ctx = ChainContext(
            history=tuple(s for s in history if s.kind is not StepKind.ESCALATION),
            candidate=candidate,
            ceiling=Tier(i["profile_ceiling"]),
            now=candidate.at,
        )
        for detector in self.detectors:
            hit = detector.check(ctx)
            if hit is None:
                continue
            if post:  # live, the credential went out and the task escalated right after
                reason = f"chain escalated after issuance by detector {hit.detector}: {hit.reason}"
                decision = replace(decision, reasons=(*decision.reasons, reason))
            else:
                decision = replace(
                    decision,
                    outcome=Outcome.DENY,
                    ttl_seconds=0,
                    uses=0,
                    reasons=(*decision.reasons, f"chain escalated by detector {hit.detector}: {hit.reason}"),
                )
            break
        else:
            escalated_before = any(s.kind is StepKind.ESCALATION for s in history)
            if (
                self.config.on_escalation is OnEscalation.STEP_UP_ONLY
                and escalated_before
                and decision.outcome is Outcome.ALLOW
                and not i.get("approval_approved")
            ):
                decision = replace(
                    decision,
                    outcome=Outcome.STEP_UP,
                    ttl_seconds=0,
                    detection=Detection.PRE_ISSUANCE,
                    reasons=(
                        *decision.reasons,
                        "the task's chain escalated earlier: every request needs step-up approval",
                    ),
                )
        self._decisions[task_id].append(replace(candidate, outcome=decision.outcome))
        return decision
