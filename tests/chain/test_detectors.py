"""Detector logic and chain.yaml validation (pure; no server)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import yaml

from broker.chain import config as chain_config
from broker.chain.detectors import BurstDetector, CeilingDetector, SequenceDetector, inline_detectors
from broker.chain.model import ChainContext, ChainStep, StepKind
from broker.errors import InvalidInput
from broker.models import Outcome, Tier
from policies import DEFAULT_BUNDLE

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
CATALOG = ["db.read", "db.write", "secrets.read", "data.export", "iam.modify", "storage.write"]
CONSEQUENCE = {
    "db.read": "read-sensitive",
    "db.write": "write",
    "secrets.read": "secret-access",
    "data.export": "export",
    "iam.modify": "privilege",
    "storage.write": "write",
}


def req(
    action: str,
    *,
    sensitivity: str = "internal",
    external: bool = False,
    tier: Tier = Tier.LOW,
    outcome: Outcome = Outcome.ALLOW,
    at: int = 0,
    kind: StepKind = StepKind.CREDENTIAL_REQUEST,
) -> ChainStep:
    return ChainStep(
        ref=f"ref-{action}-{at}",
        kind=kind,
        at=T0 + timedelta(seconds=at),
        action=action,
        resource="r",
        consequence=CONSEQUENCE.get(action),
        sensitivity=sensitivity,
        external=external,
        tier=tier,
        outcome=outcome if kind is StepKind.CREDENTIAL_REQUEST else None,
    )


def default_config() -> chain_config.ChainConfig:
    return chain_config.load(DEFAULT_BUNDLE, catalog=CATALOG)


def fired(history: list[ChainStep], candidate: ChainStep, ceiling: Tier = Tier.CRITICAL) -> str | None:
    ctx = ChainContext(history=tuple(history), candidate=candidate, ceiling=ceiling, now=candidate.at)
    for d in inline_detectors(default_config()):
        hit = d.check(ctx)
        if hit is not None:
            return f"{hit.detector}:{hit.rule}" if hit.rule else hit.detector
    return None


@pytest.mark.parametrize(
    ("history", "candidate", "expected"),
    [
        # the chain: db.read -> secrets.read -> data.export escalates on the third
        (
            [req("db.read"), req("secrets.read", tier=Tier.HIGH, at=1)],
            req("data.export", tier=Tier.HIGH, at=2),
            "dangerous_sequence:secret_then_export",
        ),
        ([req("db.read")], req("data.export", at=1), None),
        # a denied secrets.read never happened: no sequence
        ([req("secrets.read", outcome=Outcome.DENY)], req("data.export", at=1), None),
        # the candidate counts even if its own decision is a deny
        (
            [req("secrets.read")],
            req("data.export", outcome=Outcome.DENY, at=1),
            "dangerous_sequence:secret_then_export",
        ),
        # a reported tool call counts as done; a prompt mentioning it does not
        (
            [req("secrets.read", kind=StepKind.TOOL_CALL)],
            req("data.export", at=1),
            "dangerous_sequence:secret_then_export",
        ),
        ([req("secrets.read", kind=StepKind.PROMPT)], req("data.export", at=1), None),
        # restricted read then a write to an external resource
        (
            [req("db.read", sensitivity="restricted")],
            req("storage.write", external=True, at=1),
            "dangerous_sequence:restricted_read_then_external_write",
        ),
        ([req("db.read", sensitivity="restricted")], req("storage.write", external=False, at=1), None),
        ([req("db.read", sensitivity="confidential")], req("storage.write", external=True, at=1), None),
        # privilege change then anything
        (
            [req("iam.modify", tier=Tier.HIGH)],
            req("db.read", at=1),
            "dangerous_sequence:privilege_change_then_anything",
        ),
        # order matters: export first, then secrets.read is not the sequence
        ([req("data.export")], req("secrets.read", at=1), None),
    ],
)
def test_sequence_detector_table(history, candidate, expected):
    assert fired(history, candidate) == expected


def test_ceiling_detector_fires_only_for_an_assessed_request_above_the_ceiling():
    assert fired([], req("secrets.read", tier=Tier.HIGH), ceiling=Tier.MEDIUM) == "ceiling_exceeded"
    assert fired([], req("secrets.read", tier=Tier.MEDIUM), ceiling=Tier.MEDIUM) is None
    unknown = ChainStep(
        ref="x",
        kind=StepKind.CREDENTIAL_REQUEST,
        at=T0,
        action="nope",
        resource="r",
        tier=Tier.CRITICAL,
        outcome=Outcome.DENY,
    )  # a typo is denied, never escalated
    assert CeilingDetector().check(ChainContext((), unknown, Tier.LOW, T0)) is None


def test_burst_counts_requests_at_or_above_the_tier_inside_the_window_only():
    cfg = chain_config.BurstConfig(max_requests=2, window_seconds=10, min_tier=Tier.HIGH)
    d = BurstDetector(cfg)
    high = [req("secrets.read", tier=Tier.HIGH, at=i) for i in range(2)]
    assert d.check(ChainContext(tuple(high), req("secrets.read", tier=Tier.HIGH, at=3), Tier.CRITICAL, T0))
    assert d.check(ChainContext(tuple(high), req("db.read", tier=Tier.LOW, at=3), Tier.CRITICAL, T0)) is None
    old = [req("secrets.read", tier=Tier.HIGH, at=i) for i in range(2)]
    late = req("secrets.read", tier=Tier.CRITICAL, at=30)
    assert d.check(ChainContext(tuple(old), late, Tier.CRITICAL, T0)) is None


def test_sequence_within_seconds_limits_the_window():
    seq = chain_config.Sequence(
        name="s",
        first=chain_config.StepMatch(actions=("secrets.read",)),
        then=chain_config.StepMatch(actions=("data.export",)),
        within_seconds=5,
    )
    d = SequenceDetector([seq])
    assert d.check(ChainContext((req("secrets.read"),), req("data.export", at=4), Tier.CRITICAL, T0))
    assert d.check(ChainContext((req("secrets.read"),), req("data.export", at=6), Tier.CRITICAL, T0)) is None


@pytest.mark.parametrize(
    ("raw", "field", "message"),
    [
        ({"on_escalation": "shrug"}, "on_escalation", "quarantine"),
        ({"detectors": {"burst": {"max_requests": 0}}}, "detectors.burst.max_requests", "greater than or equal"),
        ({"detectors": {"burst": {"min_tier": "extreme"}}}, "detectors.burst.min_tier", "low"),
        ({"detectors": {"nope": {}}}, "detectors.nope", "Extra inputs"),
        (
            {"detectors": {"dangerous_sequence": {"sequences": [{"name": "x", "first": {}, "then": {"any": True}}]}}},
            "detectors.dangerous_sequence.sequences[0].first",
            "at least one condition",
        ),
        (
            {
                "detectors": {
                    "dangerous_sequence": {
                        "sequences": [{"name": "x", "first": {"actions": ["secrets.raed"]}, "then": {"any": True}}]
                    }
                }
            },
            "detectors.dangerous_sequence.sequences[0].first.actions",
            "not in the action catalog",
        ),
        (
            {
                "detectors": {
                    "dangerous_sequence": {
                        "sequences": [{"name": "x", "first": {"consequences": ["explode"]}, "then": {"any": True}}]
                    }
                }
            },
            "detectors.dangerous_sequence.sequences[0].first.consequences[0]",
            "observe",
        ),
    ],
)
def test_chain_yaml_problems_name_the_field(raw, field, message):
    with pytest.raises(InvalidInput, match=message) as exc:
        chain_config.parse(raw, catalog=CATALOG, source="chain.yaml")
    assert exc.value.field == f"chain.yaml:{field}"


def test_default_bundle_chain_yaml_loads_with_every_detector_on():
    cfg = default_config()
    names = [d.name for d in inline_detectors(cfg)]
    assert names == ["ceiling_exceeded", "dangerous_sequence", "burst"]
    assert cfg.detectors.leaked_secret.enabled and cfg.detectors.review_flagged.enabled
    assert cfg.on_escalation is chain_config.OnEscalation.QUARANTINE


def test_bundle_without_chain_yaml_falls_back_to_the_default_detectors(tmp_path):
    assert chain_config.load(tmp_path, catalog=CATALOG) == default_config()


def test_disabled_detector_is_not_run(tmp_path):
    raw = yaml.safe_load((DEFAULT_BUNDLE / "chain.yaml").read_text())
    raw["detectors"]["ceiling_exceeded"]["enabled"] = False
    raw["detectors"]["dangerous_sequence"]["enabled"] = False
    (tmp_path / "chain.yaml").write_text(yaml.safe_dump(raw))
    assert [d.name for d in inline_detectors(chain_config.load(tmp_path, catalog=CATALOG))] == ["burst"]
