"""Loading a bundle: every problem names its file and line; a bad bundle is never half-loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.policy import BundleError, check_bundle, content_hash, load_bundle
from policies import DEFAULT_BUNDLE

GOOD_POLICY = '@id("ok")\npermit (principal, action, resource);\n'


def _write(bundle: Path, name: str, text: str) -> None:
    (bundle / name).parent.mkdir(parents=True, exist_ok=True)
    (bundle / name).write_text(text)


def _problems(bundle: Path) -> list[str]:
    loaded, problems = check_bundle(bundle)
    assert loaded is None
    return [str(p) for p in problems]


def test_default_bundle_loads_with_every_policy_named() -> None:
    bundle = load_bundle(DEFAULT_BUNDLE)
    assert "step-up-critical" in bundle.policies
    assert bundle.policies["step-up-critical"].step_up
    assert bundle.policies["prod-credentials-max-10m"].max_ttl == 600
    assert len(bundle.bundle_hash) == 64


def test_policy_syntax_error_is_reported_with_file_and_line(bundle_copy: Path) -> None:
    _write(
        bundle_copy,
        "policies/50-broken.cedar",
        '// a comment\n\n@id("first")\npermit (principal, action, resource);\n\n'
        '@id("broken")\nforbid (principal, action, resource)\nwhen { context.tier == };\n',
    )
    assert _problems(bundle_copy) == ["policies/50-broken.cedar:8: syntax error: unexpected token `}`"]


def test_unterminated_string_is_located_on_its_line(bundle_copy: Path) -> None:
    _write(
        bundle_copy,
        "policies/50-broken.cedar",
        '@id("a")\npermit (principal, action, resource)\nwhen { context.tier == "low };\n',
    )
    problems = _problems(bundle_copy)
    assert len(problems) == 1
    assert problems[0].startswith("policies/50-broken.cedar:3: syntax error")


def test_policy_naming_an_action_outside_the_catalog_fails_lint(bundle_copy: Path) -> None:
    _write(
        bundle_copy,
        "policies/50-typo.cedar",
        '\n@id("typo")\nforbid (principal, action == Action::"db.drop", resource);\n',
    )
    problems = _problems(bundle_copy)
    assert any(
        p.startswith('policies/50-typo.cedar:2: policy "typo" names Action::"db.drop", which is not in catalog.yaml')
        for p in problems
    )


def test_policy_without_id_is_refused(bundle_copy: Path) -> None:
    _write(bundle_copy, "policies/50-noid.cedar", "permit (principal, action, resource);\n")
    assert _problems(bundle_copy) == [
        'policies/50-noid.cedar:1: policy has no @id("...") annotation (every policy needs a unique id)'
    ]


def test_duplicate_policy_id_names_both_places(bundle_copy: Path) -> None:
    _write(bundle_copy, "policies/50-dup.cedar", '@id("layer-monitor")\npermit (principal, action, resource);\n')
    problems = _problems(bundle_copy)
    assert problems == ['policies/50-dup.cedar:1: duplicate @id("layer-monitor"): also at policies/10-layers.cedar:13']


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('@id("x")\n@max_tll("60")\npermit (principal, action, resource);\n', "unknown annotation @max_tll"),
        (
            '@id("x")\n@max_ttl("1h")\npermit (principal, action, resource);\n',
            '@max_ttl("1h") must be a whole number',
        ),
        (
            '@id("x")\n@mode("strict")\npermit (principal, action, resource);\n',
            '@mode("strict") must be one of',
        ),
        ('@id("x")\n@step_up\npermit (principal, action, resource);\n', "@step_up belongs on a forbid"),
        ('@id("x")\n@max_ttl("60")\nforbid (principal, action, resource);\n', "obligations of a permit"),
    ],
)
def test_bad_annotation_is_refused_with_its_line(bundle_copy: Path, text: str, message: str) -> None:
    _write(bundle_copy, "policies/50-ann.cedar", text)
    problems = _problems(bundle_copy)
    assert len(problems) == 1
    assert problems[0].startswith('policies/50-ann.cedar:1: policy "x": ')
    assert message in problems[0]


def test_policy_that_does_not_typecheck_against_the_schema_is_refused(bundle_copy: Path) -> None:
    _write(
        bundle_copy,
        "policies/50-type.cedar",
        GOOD_POLICY + '\n@id("bad-attr")\nforbid (principal, action, resource)\nwhen { resource.colour == "red" };\n',
    )
    problems = _problems(bundle_copy)
    assert len(problems) == 1
    assert problems[0].startswith('policies/50-type.cedar:4: schema: policy "bad-attr": attribute `colour`')


def test_schema_syntax_error_is_reported_with_its_line(bundle_copy: Path) -> None:
    schema = (bundle_copy / "schema.cedarschema").read_text().replace("external: Bool,", "external: Bool,,")
    _write(bundle_copy, "schema.cedarschema", schema)
    line = next(i for i, ln in enumerate(schema.splitlines(), 1) if "external: Bool,," in ln)
    problems = _problems(bundle_copy)
    assert problems[0].startswith(f"schema.cedarschema:{line}: ")


def test_schema_that_declares_actions_itself_is_refused(bundle_copy: Path) -> None:
    path = bundle_copy / "schema.cedarschema"
    _write(bundle_copy, "schema.cedarschema", path.read_text() + '\naction "db.read";\n')
    line = len(path.read_text().splitlines())
    assert any(
        p.startswith(f"schema.cedarschema:{line}: declare actions in catalog.yaml") for p in _problems(bundle_copy)
    )


def test_schema_context_drift_is_caught_at_load(bundle_copy: Path) -> None:
    path = bundle_copy / "schema.cedarschema"
    _write(
        bundle_copy,
        "schema.cedarschema",
        path.read_text().replace("  task_remaining_seconds: Long,", "  task_remaining_seconds: String,"),
    )
    problems = _problems(bundle_copy)
    assert any(
        p.startswith("schema.cedarschema: the broker's request for action") and "failed to build request" in p
        for p in problems
    )


def test_risk_table_error_names_the_yaml_line(bundle_copy: Path) -> None:
    risk = (bundle_copy / "risk.yaml").read_text().replace("high:     {ttl_seconds: 300,", "high:     {ttl_seconds: 0,")
    _write(bundle_copy, "risk.yaml", risk)
    line = next(i for i, ln in enumerate(risk.splitlines(), 1) if "ttl_seconds: 0," in ln)
    assert _problems(bundle_copy) == [f"risk.yaml:{line}: tiers.high.ttl_seconds: must be between 1 and 43200"]


def test_catalog_error_names_the_yaml_line_even_for_dotted_action_names(bundle_copy: Path) -> None:
    catalog = (
        (bundle_copy / "catalog.yaml")
        .read_text()
        .replace("db.write:         {consequence: write,", "db.write:         {consequence: delete,")
    )
    _write(bundle_copy, "catalog.yaml", catalog)
    line = next(i for i, ln in enumerate(catalog.splitlines(), 1) if "consequence: delete" in ln)
    problems = _problems(bundle_copy)
    assert problems[0].startswith(f"catalog.yaml:{line}: actions.db.write.consequence: must be one of")


def test_yaml_syntax_error_names_the_line(bundle_copy: Path) -> None:
    _write(bundle_copy, "risk.yaml", "weights:\n  consequence: [unclosed\n")
    problems = _problems(bundle_copy)
    assert problems[0].startswith("risk.yaml:3: YAML syntax error")


def test_bundle_without_any_permit_is_refused(tmp_path: Path) -> None:
    for name in ("catalog.yaml", "risk.yaml", "schema.cedarschema"):
        _write(tmp_path, name, (DEFAULT_BUNDLE / name).read_text())
    _write(tmp_path, "policies/only.cedar", '@id("no")\nforbid (principal, action, resource);\n')
    assert _problems(tmp_path) == ["policies/: no permit policy: every request would be denied"]


def test_missing_required_files_are_each_named(tmp_path: Path) -> None:
    problems = _problems(tmp_path)
    assert "catalog.yaml: required file is missing" in problems
    assert "schema.cedarschema: required file is missing" in problems
    assert "policies/: no *.cedar policy file" in problems


def test_load_bundle_raises_with_every_problem(bundle_copy: Path) -> None:
    _write(bundle_copy, "policies/50-a.cedar", "permit (principal, action, resource);\n")
    _write(bundle_copy, "policies/51-b.cedar", '@id("b")\npermit (principal, action, resource)\n')
    with pytest.raises(BundleError, match=r"invalid policy bundle: policies/50-a.cedar:1: .*1 more problem") as info:
        load_bundle(bundle_copy)
    assert [p.file for p in info.value.problems] == ["policies/50-a.cedar", "policies/51-b.cedar"]


def test_content_hash_changes_with_policies_but_not_with_test_cases(bundle_copy: Path) -> None:
    before = content_hash(bundle_copy)
    assert before == load_bundle(bundle_copy).bundle_hash
    _write(bundle_copy, "tests/extra.yaml", "cases: []\n")
    assert content_hash(bundle_copy) == before
    _write(bundle_copy, "policies/50-more.cedar", GOOD_POLICY)
    assert content_hash(bundle_copy) != before
