"""Shared builders for policy tests: the demo seed's agent, profile and resources."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from broker.decisions import ApprovalContext, ChainSummary, DecisionInput
from broker.models import (
    Agent,
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
from broker.policy import CedarDecisionEngine, load_bundle
from policies import DEFAULT_BUNDLE

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
DEMO_ACTIONS = ("db.read", "db.write", "secrets.read", "data.export", "payments.charge")
RESOURCES = {
    "demo-data": (Sensitivity.INTERNAL, Environment.DEV),
    "demo-secrets": (Sensitivity.CONFIDENTIAL, Environment.DEV),
    "prod-payments": (Sensitivity.RESTRICTED, Environment.PROD),
}


def resource(
    name: str,
    sensitivity: Sensitivity | None = None,
    environment: Environment | None = None,
    external: bool = False,
) -> Resource:
    s, e = RESOURCES.get(name, (Sensitivity.INTERNAL, Environment.DEV))
    return Resource(
        name=name,
        kind="vault_token",
        sensitivity=sensitivity or s,
        environment=environment or e,
        settings={},
        external=external,
    )


def make_input(
    action: str,
    resource_name: str,
    *,
    res: Resource | None = None,
    approved: bool | None = None,
    on_behalf_of: str | None = None,
    trust: TrustLevel = TrustLevel.STANDARD,
    allowed: tuple[str, ...] = DEMO_ACTIONS,
    ceiling: Tier = Tier.CRITICAL,
    remaining: int = 3600,
    chain: ChainSummary | None = None,
    decision_id: str = "d-1",
    engine: CedarDecisionEngine | None = None,
) -> DecisionInput:
    catalog = (engine or default_engine()).bundle.catalog
    agent = Agent(name="demo-agent", owner="demo-owner", trust_level=trust, bindings=(), profiles=("demo",))
    profile = TaskProfile(name="demo", allowed_actions=allowed, ceiling=ceiling, max_lifetime_seconds=3600)
    task = Task(
        task_id=TaskId("t-1"),
        agent=agent.name,
        profile="demo",
        purpose="test",
        on_behalf_of=on_behalf_of,
        # a named person here stands for one the token exchange verified (human present)
        acting_for=VerifiedHuman("policy-test", on_behalf_of) if on_behalf_of else None,
        state=TaskState.ACTIVE,
        created_at=NOW - timedelta(minutes=1),
        expires_at=NOW + timedelta(seconds=remaining),
    )
    approval = None if approved is None else ApprovalContext(approval_id="ap-1", approved=approved)
    return DecisionInput(
        decision_id=DecisionId(decision_id),
        agent=agent,
        profile=profile,
        task=task,
        action_name=action,
        resource_name=resource_name,
        action=catalog.get(action),
        resource=res if res is not None else resource(resource_name),
        chain=chain or ChainSummary(),
        now=NOW,
        approval=approval,
    )


_ENGINE: CedarDecisionEngine | None = None


def default_engine() -> CedarDecisionEngine:
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = CedarDecisionEngine(load_bundle(DEFAULT_BUNDLE))
    return _ENGINE


@pytest.fixture
def engine() -> CedarDecisionEngine:
    return default_engine()


@pytest.fixture
def bundle_copy(tmp_path: Path) -> Path:
    """A writable copy of the default bundle."""
    target = tmp_path / "bundle"
    shutil.copytree(DEFAULT_BUNDLE, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target
