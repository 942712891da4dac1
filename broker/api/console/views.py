"""What an approver or reviewer needs to see about one request, gathered for a template.

The context of a step-up approval or a post-action review: the agent and its bound owner, the
verified human the task acts for, the action and its consequence class, the resource's
sensitivity and environment, the tier and its factors, the Cedar policies that decided, the task's
chain so far, and what the credential grants (backend, scope, TTL, uses). Read only: bodies come
from :mod:`broker.api.presenters` where the API has them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from broker.api.presenters import decision_body, task_view_body
from broker.approvals.model import Approval, ApprovalState
from broker.container import Container
from broker.errors import BrokerError
from broker.models import Tier
from broker.people.model import Caller

_SECRET_KEY: Final = re.compile(r"secret|token|password|passwd|credential|private|api_?key", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class RequestContext:
    agent: dict[str, Any] | None
    owner: dict[str, str] | None
    task: dict[str, Any] | None
    chain: list[dict[str, Any]]
    decision: dict[str, Any] | None
    action: dict[str, Any]
    resource: dict[str, Any] | None
    grant: dict[str, Any]


def request_context(c: Container, *, task_id: str, decision_id: str, action: str, resource: str) -> RequestContext:
    with c.store.read() as conn:
        task_row = c.store.get_task(conn, task_id)
        agent = c.store.get_agent(conn, task_row.agent) if task_row is not None else None
        res = c.store.get_resource(conn, resource)
        stored = c.store.get_decision(conn, decision_id)
    decision = decision_body(stored, naive_timestamps=False) if stored is not None else None
    try:
        view = task_view_body(c.tasks.view(task_id))
    except BrokerError:
        view = None
    spec = c.policies.catalog().get(action)
    ttl, uses, basis = _grant_terms(c, decision)
    scope = {k: v for k, v in (res.settings.items() if res is not None else ()) if not _SECRET_KEY.search(k)}
    return RequestContext(
        agent=(
            {"name": agent.name, "owner": agent.owner, "trust_level": agent.trust_level.value}
            if agent is not None
            else None
        ),
        owner=agent.owner_identity.to_dict() if agent is not None and agent.owner_identity is not None else None,
        task=view["task"] if view is not None else None,
        chain=list(view["chain"]["steps"]) if view is not None else [],
        decision=decision,
        action={
            "name": action,
            "consequence": spec.consequence.value if spec is not None else "unknown (not in the catalog)",
            "reversible": spec.reversible if spec is not None else None,
            "description": spec.description if spec is not None else "",
        },
        resource=(
            {
                "name": res.name,
                "kind": res.kind,
                "sensitivity": res.sensitivity.value,
                "environment": res.environment.value,
                "description": res.description,
            }
            if res is not None
            else None
        ),
        grant={
            "backend": res.kind if res is not None else None,
            "scope": scope,
            "ttl_seconds": ttl,
            "uses": uses,
            "basis": basis,
        },
    )


def _grant_terms(c: Container, decision: dict[str, Any] | None) -> tuple[int | None, int | None, str]:
    """TTL and uses of the credential: the decision's own when it allowed one, else (a step-up, not
    issued yet) what the tier gives at collection, from the active risk table."""
    if decision is None:
        return None, None, ""
    if int(decision.get("ttl_seconds") or 0) > 0:
        return int(decision["ttl_seconds"]), int(decision.get("uses") or 0), "as decided"
    try:
        cost = c.policies.engine().bundle.risk.table.tiers[Tier(decision["tier"])]
    except (KeyError, ValueError):
        return None, None, ""
    return cost.ttl_seconds, cost.uses, f"when collected (tier {decision['tier']}, capped by the task's lifetime)"


def own_request(c: Container, caller: Caller, agent: str) -> bool:
    """Whether ``caller`` is the agent's bound owner (or the agent): they may not approve or review
    it. The server refuses such a vote anyway (four-eyes in the approval and review services);
    this only greys the button out. An agent without a bound owner counts as the caller's own:
    nothing is approvable until an owner is bound."""
    parties = c.people.parties(agent)
    if parties.owner is None:
        return True
    return bool(caller.subject_keys() & (parties.owner | parties.agent))


def pending_first(items: list[Approval]) -> list[Approval]:
    return sorted(items, key=lambda a: (a.state is not ApprovalState.PENDING, -a.created_at.timestamp()))
