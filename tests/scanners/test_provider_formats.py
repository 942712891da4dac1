"""Issue 18 accuracy targets on the labelled provider-format corpus, for the shipped combination.

The corpus (tests/data/scanner/provider_formats.yaml) holds one real-format positive and one near
miss per credential type, each citing where the format is documented. Scoring is by line.
"""

from __future__ import annotations

from collections import defaultdict

import pytest

from scanners import Scanner
from scanners.format_corpus import LabelledCase, load

CASES = load()
NAMED_FAMILIES = {
    "sidekiq",
    "snyk",
    "sonarqube",
    "sourcegraph",
    "sumologic",
    "meta",
    "freemius",
    "42-intra",
    "curl",
    "slack",
    "kubernetes",
    "package-registries",
    "private-keys",
    "jwt",
}


def _lines(scanner: Scanner, case: LabelledCase) -> set[int]:
    if case.path.endswith(".p12"):
        return {f.line for f in scanner.scan_binary(case.data, path=case.path)}
    text = case.text
    return {
        ln
        for f in scanner.scan(text, path=case.path)
        for ln in range(f.line, f.line + text.count("\n", f.start, f.end) + 1)
    }


def test_corpus_names_every_family_of_the_issue_and_cites_a_source_per_type() -> None:
    assert {c.family for c in CASES} >= NAMED_FAMILIES
    assert all(c.source.startswith("https://") for c in CASES)
    types = {c.type for c in CASES}
    assert len(types) >= 90
    assert {c.type for c in CASES if c.positive} == {c.type for c in CASES if not c.positive} == types


def test_shipped_scanner_meets_recall_and_near_miss_targets(shipped: Scanner) -> None:
    pos = [c for c in CASES if c.positive]
    neg = [c for c in CASES if not c.positive]
    missed = [c.type for c in pos if not (_lines(shipped, c) & c.lines)]
    flagged = [c.type for c in neg if _lines(shipped, c)]
    assert 1 - len(missed) / len(pos) >= 0.97, missed
    assert len(flagged) / len(neg) <= 0.01, flagged


def test_no_named_family_has_zero_coverage(shipped: Scanner) -> None:
    found: dict[str, int] = defaultdict(int)
    for c in CASES:
        if c.positive and _lines(shipped, c) & c.lines:
            found[c.family] += 1
    assert {fam for fam in NAMED_FAMILIES if found[fam] == 0} == set()


@pytest.mark.parametrize("case", [c for c in CASES if c.positive], ids=lambda c: c.type)
def test_real_format_positive_is_found(shipped: Scanner, case: LabelledCase) -> None:
    assert _lines(shipped, case) & case.lines, case.text[:200]


@pytest.mark.parametrize("case", [c for c in CASES if not c.positive], ids=lambda c: c.type)
def test_near_miss_is_not_flagged(shipped: Scanner, case: LabelledCase) -> None:
    assert not _lines(shipped, case), case.text[:200]
