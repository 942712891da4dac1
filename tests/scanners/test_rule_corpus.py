"""Every rule has a true positive and a near-miss negative; positives cover the whole secret."""

from __future__ import annotations

import random

import pytest

from scanners import Scanner
from scanners.rules import RuleError, load_rules
from tests.scanners.corpus import load_cases

CASES = load_cases()


def test_rule_set_covers_at_least_150_credential_types_each_with_positive_and_negative_case() -> None:
    ids = {r.id for r in load_rules()}
    assert len(ids) >= 150
    assert ids == {c.rule for c in CASES if c.should_flag}
    assert ids == {c.rule for c in CASES if not c.should_flag}


@pytest.mark.parametrize("case", CASES, ids=[f"{c.lineno}-{c.rule}-{'tp' if c.should_flag else 'tn'}" for c in CASES])
def test_rule_flags_exactly_the_labelled_cases(scanner: Scanner, case) -> None:
    found = scanner.scan(case.text)
    if case.should_flag:
        for span in case.spans:
            assert any(f.rule_id == case.rule and (f.start, f.end) == span for f in found), [
                (f.rule_id, f.start, f.end) for f in found
            ]
    else:
        assert not [f for f in found if f.rule_id == case.rule]


NOISE = [
    "request_id=3f2b8c1e-9a4d-4e6f-8b2a-1c3d5e7f9a0b trace=4bf92f3577b34da6a3ce929d0e0e4736",
    'ETag: "33a64df551425fcc55e4d42a148795d9f25f89d4"',
    "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    '"integrity": "sha512-7Ah4pP4l2iEKbU1bHZX1D3b0vA/Q3yJ8gkq0ZtfUcXvJ8bH1S0pY8e0fKq3s8bQ9tA6dM4ZkTn5yR0xV+w=="',
    "commit 1a410efbd13591db07496601ebc7a059dd55cfe9 Merge: 5d1c3f2 9e8b7a6",
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==",
    "!function(e,t){var n=t.createElement('script');n.async=!0,n.src='https://cdn.example.org/a.js';e.apiKey=t.apiKey}(window,document);",
    'resolved "https://registry.yarnpkg.com/lodash/-/lodash-4.17.21.tgz#679591c564c3bffaae8454cf0b3df370c3d6911c"',
    "password: ${{ secrets.DB_PASSWORD }}  token: ${GITHUB_TOKEN}  api_key: <YOUR_API_KEY>",
    "2026-11-24T01:02:03Z INFO user=alice session=5f4dcc3b5aa765d61d8327deb882cf99 status=200 bytes=5120",
]


@pytest.mark.parametrize("text", NOISE)
def test_common_log_and_code_noise_produces_no_finding(scanner: Scanner, text: str) -> None:
    assert scanner.scan(text) == []


def test_loading_a_rule_with_a_bad_field_names_file_rule_and_field(tmp_path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(
        "family: x\nrules:\n  - id: my-rule\n    description: d\n    severity: extreme\n"
        "    keywords: [abc]\n    pattern: 'abc'\n"
    )
    with pytest.raises(RuleError, match=r"bad.yaml: rule my-rule: severity: 'extreme' is not one of"):
        load_rules([f])


def test_loading_a_rule_without_prefilter_is_refused(tmp_path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("family: x\nrules:\n  - id: my-rule\n    description: d\n    severity: low\n    pattern: 'abc'\n")
    with pytest.raises(RuleError, match="keywords: a rule needs keywords or prefilter"):
        load_rules([f])


def test_planted_corpus_end_to_end_counts(scanner: Scanner) -> None:
    """Prose/log/code corpus with planted secrets: every planted one found, nothing else."""
    from scanners.synth_corpus import build

    text, planted = build(random.Random(7), size=300_000, secret_every=2000)
    found = {(f.start, f.end) for f in scanner.scan(text)}
    missing = [p for p in planted if (p[0], p[1]) not in found]
    extra = found - {(s, e) for s, e, _ in planted}
    assert not missing, missing[:5]
    assert not extra, [text[s - 20 : e + 5] for s, e in list(extra)[:5]]
    assert len(planted) >= 100
