"""Issue requests for backend adapter tests and benchmarks (domain objects, no servers)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from broker.backends.port import IssueRequest
from broker.models import (
    Action,
    Agent,
    Consequence,
    DecisionId,
    Environment,
    GrantId,
    Resource,
    Sensitivity,
    Task,
    TaskId,
    TaskState,
    TrustLevel,
)

# -- requests ------------------------------------------------------------------------------------
ACTIONS = {
    "db.read": Action("db.read", Consequence.READ_SENSITIVE, True),
    "db.write": Action("db.write", Consequence.WRITE, True),
    "storage.read": Action("storage.read", Consequence.READ_SENSITIVE, True),
    "storage.write": Action("storage.write", Consequence.WRITE, True),
    "secrets.read": Action("secrets.read", Consequence.SECRET_ACCESS, False),
    "iam.modify": Action("iam.modify", Consequence.PRIVILEGE, False),
    "data.export": Action("data.export", Consequence.EXPORT, False),
}


def make_resource(kind: str, settings: dict[str, Any], name: str = "res") -> Resource:
    return Resource(
        name=name, kind=kind, sensitivity=Sensitivity.INTERNAL, environment=Environment.DEV, settings=settings
    )


def make_task(task_id: str | None = None, agent: str = "demo-agent") -> Task:
    now = datetime.now(UTC)
    return Task(
        task_id=TaskId(task_id or "tsk_" + uuid.uuid4().hex),
        agent=agent,
        profile="demo",
        purpose="test",
        on_behalf_of=None,
        state=TaskState.ACTIVE,
        created_at=now,
        expires_at=now + timedelta(hours=1),
    )


def make_request(
    resource: Resource,
    action: str,
    *,
    ttl: int = 300,
    uses: int = 0,
    task: Task | None = None,
    persist_handle: Callable[[dict[str, Any]], None] | None = None,
) -> IssueRequest:
    task = task or make_task()
    agent = Agent(name=task.agent, owner="owner", trust_level=TrustLevel.STANDARD, bindings=(), profiles=("demo",))
    return IssueRequest(
        task=task,
        agent=agent,
        action=ACTIONS[action],
        resource=resource,
        ttl_seconds=ttl,
        uses=uses,
        decision_id=DecisionId("dec_" + uuid.uuid4().hex),
        grant_id=GrantId("grt_" + uuid.uuid4().hex),
        persist_handle=persist_handle,
    )
