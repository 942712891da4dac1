"""The policy test runner: the default bundle's cases pass and cover every consequence class."""

from __future__ import annotations

from pathlib import Path

from broker.models import Consequence
from broker.policy.testing import run_tests
from policies import DEFAULT_BUNDLE


def test_default_bundle_cases_all_pass() -> None:
    report = run_tests(DEFAULT_BUNDLE)
    failures = [(r.file, r.line, r.name, r.failures) for r in report.results if not r.passed]
    assert failures == [] and report.problems == ()
    assert report.passed and len(report.results) >= 20


def test_default_bundle_cases_cover_every_consequence_class_and_outcome() -> None:
    report = run_tests(DEFAULT_BUNDLE)
    assert report.uncovered == ()
    catalog_classes = {r.decision.inputs["consequence"] for r in report.results if r.decision.inputs["consequence"]}
    assert catalog_classes == {c.value for c in Consequence}
    assert {r.decision.outcome.value for r in report.results} == {"allow", "step_up", "deny"}
    assert {r.decision.mode.value for r in report.results if r.decision.outcome.value == "allow"} == {
        "monitor",
        "review",
        "inline",
    }


def test_a_wrong_expectation_fails_with_file_line_and_difference(bundle_copy: Path) -> None:
    path = bundle_copy / "tests" / "layers.yaml"
    path.write_text(
        path.read_text().replace(
            "expect: {outcome: allow, tier: low, mode: monitor, ttl: 3600, uses: 0, policies: [layer-monitor]}",
            "expect: {outcome: allow, tier: low, mode: inline, ttl: 60, uses: 0, policies: [layer-monitor]}",
        )
    )
    report = run_tests(bundle_copy)
    failed = [r for r in report.results if not r.passed]
    assert len(failed) == 1 and not report.passed
    case = failed[0]
    assert case.file == "tests/layers.yaml" and case.name == "demo db.read on demo-data is low, monitored, one hour"
    assert path.read_text().splitlines()[case.line - 1].lstrip().startswith("- name: demo db.read")
    assert case.failures == ("mode: expected 'inline', got 'monitor'", "ttl: expected 60, got 3600")


def test_a_malformed_case_is_an_error_naming_file_and_line(bundle_copy: Path) -> None:
    (bundle_copy / "tests" / "bad.yaml").write_text(
        "cases:\n  - name: typo\n    request: {action: db.read, resource: x, trust: high}\n"
        "    expect: {outcome: allow}\n"
    )
    report = run_tests(bundle_copy)
    assert not report.passed
    assert [str(p) for p in report.problems] == [
        "tests/bad.yaml:3: cases[0].request: needs 'action' and 'resource'; allowed keys "
        "['acting_for', 'action', 'allowed_actions', "
        "'approval', 'ceiling', 'chain', 'on_behalf_of', 'remaining_seconds', 'resource', 'trust_level']"
    ]


def test_the_example_finance_bundle_passes_its_own_cases() -> None:
    example = Path(__file__).resolve().parents[2] / "policies" / "examples" / "finance-payments"
    report = run_tests(example)
    assert report.passed, [str(p) for p in report.problems] + [r.failures for r in report.results if r.failures]
    names = {r.name for r in report.results}
    assert "a charge for a verified person outside finance is denied, approval or not" in names
