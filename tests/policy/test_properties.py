"""Property tests over random requests: fail closed, and TTL within the tier's and the task's bounds."""

from __future__ import annotations

import shutil
from unittest import mock

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from broker.decisions import ChainSummary, DecisionInput
from broker.models import Environment, Outcome, Sensitivity, Tier, TrustLevel
from broker.policy import CedarDecisionEngine, load_bundle
from policies import DEFAULT_BUNDLE
from tests.policy.conftest import default_engine, make_input, resource

ACTIONS = [*sorted(default_engine().bundle.catalog), "db.drop"]


@st.composite
def requests(draw: st.DrawFn) -> DecisionInput:
    action = draw(st.sampled_from(ACTIONS))
    registered = draw(st.sampled_from([True] * 9 + [False]))
    res = resource(
        "r",
        draw(st.sampled_from(list(Sensitivity))),
        draw(st.sampled_from(list(Environment))),
        external=draw(st.booleans()),
    )
    chain_actions = tuple(draw(st.lists(st.sampled_from(ACTIONS), max_size=4)))
    catalog = default_engine().bundle.catalog
    chain = ChainSummary(
        steps=len(chain_actions),
        actions=chain_actions,
        consequences=tuple(catalog[a].consequence.value for a in chain_actions if a in catalog),
        max_tier=draw(st.none() | st.sampled_from(list(Tier))),
        grants_active=draw(st.integers(0, 5)),
    )
    # mostly plausible requests (in the profile, under a high ceiling, task alive), some not
    likely = st.sampled_from([True, True, True, True, False])
    allowed = tuple(draw(st.lists(st.sampled_from(ACTIONS), max_size=3))) + ((action,) if draw(likely) else ())
    req = make_input(
        action,
        "r",
        res=res,
        approved=draw(st.none() | st.booleans()),
        on_behalf_of=draw(st.none() | st.just("alice")),
        trust=draw(st.sampled_from(list(TrustLevel))),
        allowed=allowed,
        ceiling=Tier.CRITICAL if draw(likely) else draw(st.sampled_from(list(Tier))),
        remaining=draw(st.integers(1, 50_000) if draw(likely) else st.integers(-600, 600)),
        chain=chain,
    )
    if not registered:
        req = DecisionInput(**{f: getattr(req, f) for f in DecisionInput.__slots__ if f != "resource"}, resource=None)
    return req


@pytest.fixture(scope="module")
def ghost_engine(tmp_path_factory: pytest.TempPathFactory) -> CedarDecisionEngine:
    """The default bundle plus a forbid that fails to evaluate for every production resource."""
    target = tmp_path_factory.mktemp("ghost") / "bundle"
    shutil.copytree(DEFAULT_BUNDLE, target)
    (target / "policies" / "50-ghost.cedar").write_text(
        '@id("ghost-check")\nforbid (principal, action, resource)\n'
        'when { resource.environment == "prod" && Resource::"ghost".environment == "prod" };\n'
    )
    return CedarDecisionEngine(load_bundle(target))


def _remaining(req: DecisionInput) -> int:
    return int((req.task.expires_at - req.now).total_seconds())


@settings(max_examples=400, deadline=None)
@given(req=requests())
def test_ttl_never_exceeds_the_tier_bound_or_the_task_remaining_lifetime(req: DecisionInput) -> None:
    engine = default_engine()
    d = engine.decide(req)
    event(d.outcome.value)
    bound = engine.bundle.risk.cost(d.tier).ttl_seconds
    assert 0 <= d.ttl_seconds <= bound
    assert d.ttl_seconds <= max(_remaining(req), 0)
    if d.outcome is Outcome.ALLOW:
        assert d.ttl_seconds >= 1
        if engine.bundle.risk.cost(d.tier).uses == 1:
            assert d.uses == 1
    else:
        assert d.ttl_seconds == 0
    if d.outcome is Outcome.STEP_UP:
        assert not (req.approval and req.approval.approved)
    assert d.bundle_hash == engine.bundle_hash


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(req=requests())
def test_no_request_with_an_evaluation_error_is_ever_allowed(
    ghost_engine: CedarDecisionEngine, req: DecisionInput
) -> None:
    d = ghost_engine.decide(req)
    errored = any("policy evaluation error" in r for r in d.reasons)
    event("evaluation error" if errored else "no evaluation error")
    if errored:
        assert d.outcome is Outcome.DENY
    if req.resource is not None and req.resource.environment is Environment.PROD:
        assert d.outcome is Outcome.DENY  # every prod request reaching Cedar hits the failing forbid
    assert d.outcome is Outcome.DENY or not errored


@settings(max_examples=150, deadline=None)
@given(
    req=requests(),
    where=st.sampled_from(
        [
            "broker.policy.engine.cedarpy.is_authorized",
            "broker.policy.engine.build",
            "broker.risk.model.RiskModel.assess",
        ]
    ),
    exc=st.sampled_from([RuntimeError, ValueError, KeyError, MemoryError]),
)
def test_an_exception_anywhere_in_evaluation_denies(req: DecisionInput, where: str, exc: type[BaseException]) -> None:
    with mock.patch(where, side_effect=exc("boom")):
        d = default_engine().decide(req)
    assert d.outcome is Outcome.DENY and d.ttl_seconds == 0 and d.uses == 0


def test_the_generator_reaches_every_outcome() -> None:
    seen: set[Outcome] = set()

    @settings(max_examples=300, deadline=None)
    @given(req=requests())
    def collect(req: DecisionInput) -> None:
        seen.add(default_engine().decide(req).outcome)

    collect()
    assert seen == set(Outcome)
