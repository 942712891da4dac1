"""CedarDecisionEngine: the demo outcomes, forbids, step-up, obligations, and fail closed."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import cedarpy
import pytest

from broker.decisions import ChainSummary, DecisionEngine
from broker.models import Environment, Mode, Outcome, Sensitivity, Tier, TrustLevel
from broker.policy import BundleError, CedarDecisionEngine, load_bundle
from broker.policy.request import build
from broker.risk.model import RiskInput
from tests.policy.conftest import make_input, resource


def _engine_with(bundle: Path, name: str, text: str) -> CedarDecisionEngine:
    (bundle / "policies" / name).write_text(text)
    return CedarDecisionEngine(load_bundle(bundle))


def test_cedar_engine_satisfies_the_decision_engine_port(engine: CedarDecisionEngine) -> None:
    port: DecisionEngine = engine
    assert port.bundle_hash == engine.bundle.bundle_hash


def test_demo_db_read_on_demo_data_is_low_monitored_and_allowed(engine: CedarDecisionEngine) -> None:
    d = engine.decide(make_input("db.read", "demo-data"))
    assert (d.outcome, d.tier, d.mode, d.ttl_seconds, d.uses) == (
        Outcome.ALLOW,
        Tier.LOW,
        Mode.MONITOR,
        3600,
        0,
    )
    assert d.policy_ids == ("layer-monitor",)
    assert d.bundle_hash == engine.bundle_hash


def test_demo_secrets_read_is_allowed_inline_high_300s_single_use(engine: CedarDecisionEngine) -> None:
    d = engine.decide(make_input("secrets.read", "demo-secrets"))
    assert (d.outcome, d.tier, d.mode, d.ttl_seconds, d.uses) == (
        Outcome.ALLOW,
        Tier.HIGH,
        Mode.INLINE,
        300,
        1,
    )
    assert "secret-retrieval-single-use" in d.policy_ids


def test_demo_payments_charge_without_approval_is_step_up_not_deny(engine: CedarDecisionEngine) -> None:
    d = engine.decide(make_input("payments.charge", "prod-payments"))
    assert (d.outcome, d.tier, d.mode, d.ttl_seconds) == (Outcome.STEP_UP, Tier.CRITICAL, Mode.INLINE, 0)
    assert d.policy_ids == ("step-up-critical", "step-up-prod-payments")
    assert d.reasons[-1] == "step-up approval required"


def test_demo_payments_charge_with_granted_approval_is_allowed_120s_single_use(
    engine: CedarDecisionEngine,
) -> None:
    d = engine.decide(make_input("payments.charge", "prod-payments", approved=True))
    assert (d.outcome, d.tier, d.ttl_seconds, d.uses) == (Outcome.ALLOW, Tier.CRITICAL, 120, 1)
    assert d.inputs["approval_id"] == "ap-1"


def test_pending_approval_keeps_the_request_at_step_up(engine: CedarDecisionEngine) -> None:
    d = engine.decide(make_input("payments.charge", "prod-payments", approved=False))
    assert d.outcome is Outcome.STEP_UP
    assert "approval 'ap-1' is not granted yet" in d.reasons


def test_forbid_policy_denies_with_its_id_in_the_decision(engine: CedarDecisionEngine) -> None:
    d = engine.decide(
        make_input(
            "data.export",
            "demo-data",
            on_behalf_of="alice",
            chain=ChainSummary(steps=1, actions=("secrets.read",), consequences=("secret-access",), max_tier=Tier.HIGH),
        )
    )
    assert d.outcome is Outcome.DENY
    assert d.policy_ids == ("forbid-export-after-secret-retrieval",)
    assert any("forbid-export-after-secret-retrieval" in r for r in d.reasons)
    assert d.ttl_seconds == 0


def test_hard_forbid_is_not_lifted_by_an_approval(engine: CedarDecisionEngine) -> None:
    d = engine.decide(
        make_input("iam.modify", "staging-app", trust=TrustLevel.LOW, approved=True, allowed=("iam.modify",))
    )
    assert d.outcome is Outcome.DENY
    assert "forbid-low-trust-privilege" in d.policy_ids


def test_step_up_is_refused_when_an_approval_would_not_help(bundle_copy: Path) -> None:
    engine = _engine_with(
        bundle_copy,
        "50-no-prod-payments.cedar",
        '@id("no-payments-on-fridays")\nforbid (principal, action in Action::"financial", resource)\n'
        'when { resource.environment == "prod" && context.task_remaining_seconds > 0 };\n',
    )
    d = engine.decide(make_input("payments.charge", "prod-payments"))
    assert d.outcome is Outcome.DENY
    assert "no-payments-on-fridays" in d.policy_ids


def test_max_ttl_annotation_shortens_the_credential(engine: CedarDecisionEngine) -> None:
    res = resource("prod-metrics", Sensitivity.INTERNAL, Environment.PROD)
    d = engine.decide(make_input("db.read", "prod-metrics", res=res))
    assert d.tier is Tier.MEDIUM and d.outcome is Outcome.ALLOW
    assert d.ttl_seconds == 600  # medium is 900s; prod-credentials-max-10m caps it
    assert "prod-credentials-max-10m" in d.policy_ids


def test_mode_annotation_raises_the_control_mode(engine: CedarDecisionEngine) -> None:
    res = resource("partner", Sensitivity.PUBLIC, Environment.DEV, external=True)
    d = engine.decide(make_input("db.write", "partner", res=res))
    assert d.outcome is Outcome.ALLOW and d.tier is Tier.MEDIUM
    assert d.mode is Mode.INLINE  # risk.yaml says review; external-write-inline raises it
    assert d.ttl_seconds == 300


def test_ttl_never_outlives_the_task(engine: CedarDecisionEngine) -> None:
    d = engine.decide(make_input("db.read", "demo-data", remaining=42))
    assert d.ttl_seconds == 42


def test_profile_floor_denies_before_cedar(engine: CedarDecisionEngine) -> None:
    d = engine.decide(make_input("data.export", "demo-data", allowed=("db.read",)))
    assert d.outcome is Outcome.DENY and d.policy_ids == ()
    assert "not allowed by profile 'demo'" in d.reasons[-1]


def test_tier_above_profile_ceiling_is_denied_not_stepped_up(engine: CedarDecisionEngine) -> None:
    d = engine.decide(make_input("payments.charge", "prod-payments", ceiling=Tier.HIGH))
    assert d.outcome is Outcome.DENY
    assert "above the ceiling high" in d.reasons[-1]


def test_unknown_action_and_unregistered_resource_are_denied(engine: CedarDecisionEngine) -> None:
    assert engine.decide(make_input("db.drop", "demo-data", allowed=("db.drop",))).outcome is Outcome.DENY
    req = make_input("db.read", "nowhere")
    d = engine.decide(req.__class__(**{**{f: getattr(req, f) for f in req.__slots__}, "resource": None}))
    assert d.outcome is Outcome.DENY and "not registered" in d.reasons[0]


def test_policy_evaluation_error_denies_even_when_a_permit_matched(bundle_copy: Path) -> None:
    # in prod the forbid reads an entity that does not exist: Cedar skips the forbid and allows
    engine = _engine_with(
        bundle_copy,
        "50-ghost.cedar",
        '@id("ghost-check")\nforbid (principal, action, resource)\n'
        'when { resource.environment == "prod" && Resource::"ghost".environment == "prod" };\n',
    )
    req = make_input("db.read", "prod-metrics", res=resource("prod-metrics", Sensitivity.INTERNAL, Environment.PROD))
    b = engine.bundle
    assert req.resource is not None
    action = b.catalog["db.read"]
    risk = b.risk.assess(RiskInput(req.agent, action, req.resource, req.human_present))
    cr = build(
        req,
        action,
        req.resource,
        risk,
        mode=b.risk.mode(action, req.resource, risk.tier),
        tier_ttl=900,
        remaining=3600,
    )
    premise = cedarpy.is_authorized(cr.request, b.policy_set, cr.entities, b.schema)
    assert premise.allowed and premise.diagnostics.errors  # real Cedar skips the erroring forbid and allows ...
    d = engine.decide(req)
    assert d.outcome is Outcome.DENY  # ... and the engine refuses to trust the rest
    assert any("policy evaluation error" in r and "ghost-check" in r for r in d.reasons)
    assert "denied (fail closed)" in d.reasons
    assert engine.decide(make_input("db.read", "demo-data")).outcome is Outcome.ALLOW


def test_policy_that_errors_on_every_request_is_refused_at_load(bundle_copy: Path) -> None:
    (bundle_copy / "policies" / "50-ghost.cedar").write_text(
        '\n@id("ghost-check")\nforbid (principal, action, resource)\n'
        'when { Resource::"ghost".environment == "prod" };\n'
    )
    with pytest.raises(BundleError, match=r"policies/50-ghost.cedar:2: policy 'ghost-check' fails to evaluate"):
        load_bundle(bundle_copy)


def test_exception_inside_evaluation_denies_and_says_why(engine: CedarDecisionEngine) -> None:
    with mock.patch("broker.policy.engine.cedarpy.is_authorized", side_effect=RuntimeError("engine exploded")):
        d = engine.decide(make_input("db.read", "demo-data"))
    assert d.outcome is Outcome.DENY and d.ttl_seconds == 0
    assert d.reasons == ("evaluation error (RuntimeError: engine exploded); denied (fail closed)",)
    assert d.bundle_hash == engine.bundle_hash


def test_decision_record_carries_inputs_factors_policies_and_hash(engine: CedarDecisionEngine) -> None:
    record = engine.decide(make_input("secrets.read", "demo-secrets")).record()
    assert record["inputs"]["action"] == "secrets.read" and record["inputs"]["sensitivity"] == "confidential"
    assert record["factors"]["unattended_irreversible"] == {"value": True, "weight": 1}
    assert record["bundle_hash"] == engine.bundle_hash and record["policy_ids"]


def test_entity_cache_never_serves_another_requests_entities_under_the_same_names(
    engine: CedarDecisionEngine,
) -> None:
    """Every variant below has the same agent, profile, task and resource names; the cached
    entities are keyed by content, so a warm engine decides each exactly as a cold one does."""
    variants = [
        make_input(
            action,
            name,
            trust=trust,
            on_behalf_of=human,
            ceiling=ceiling,
            res=res,
            allowed=tuple(engine.bundle.catalog),
        )
        # the default policies read principal.trust_level (privilege) and resource.sensitivity (export)
        for action, name in (("db.read", "demo-data"), ("iam.modify", "demo-data"), ("data.export", "demo-data"))
        for trust in (TrustLevel.LOW, TrustLevel.HIGH)
        for human in (None, "alice")
        for ceiling in (Tier.MEDIUM, Tier.CRITICAL)
        for res in (
            None,
            resource(name, Sensitivity.RESTRICTED, Environment.PROD),
            resource(name, Sensitivity.PUBLIC, Environment.DEV, external=True),
        )
    ]
    for request in [*variants, *reversed(variants)]:
        warm, cold = engine.decide(request), CedarDecisionEngine(engine.bundle).decide(request)
        assert (warm.outcome, warm.tier, warm.mode, warm.ttl_seconds, warm.policy_ids, warm.reasons) == (
            cold.outcome,
            cold.tier,
            cold.mode,
            cold.ttl_seconds,
            cold.policy_ids,
            cold.reasons,
        )


def test_decision_input_does_not_grow_with_the_tasks_history(engine: CedarDecisionEngine) -> None:
    """A long chain of the same actions reaches Cedar and the decision record as sets: the
    context and the record of step 1,000 are as large as those of step 3 (cost growth, issue 14)."""

    def summary(steps: int) -> ChainSummary:
        actions = tuple(("db.read", "db.write", "db.read")[i % 3] for i in range(steps))
        consequences = tuple({"db.read": "read", "db.write": "write"}[a] for a in actions)
        return ChainSummary(steps, actions, consequences, Tier.LOW, 0)

    short = engine.decide(make_input("db.read", "demo-data", chain=summary(3)))
    long = engine.decide(make_input("db.read", "demo-data", chain=summary(1000)))
    assert long.inputs["chain"]["actions"] == ["db.read", "db.write"]
    assert long.inputs["chain"]["consequences"] == ["read", "write"]
    assert long.inputs["chain"]["steps"] == 1000
    assert len(str(long.record())) <= len(str(short.record())) + 8  # "1000" vs "3" and the like
    assert (long.outcome, long.tier, long.policy_ids) == (short.outcome, short.tier, short.policy_ids)
    b = engine.bundle
    action, res = b.catalog["db.read"], resource("demo-data")
    risk = b.risk.assess(
        RiskInput(agent=make_input("db.read", "demo-data").agent, action=action, resource=res, human_present=False)
    )
    cr = build(
        make_input("db.read", "demo-data", chain=summary(1000)),
        action,
        res,
        risk,
        mode=Mode.MONITOR,
        tier_ttl=60,
        remaining=60,
    )
    assert cr.request["context"]["chain"]["actions"] == ["db.read", "db.write"]
