"""Load and check a policy bundle directory, once; evaluation then only uses parsed handles.

Layout (relative to the bundle directory)::

    catalog.yaml           the action catalog: consequence class and reversibility per action
    risk.yaml              the risk table: factor weights, tier thresholds, tier cost, mode rules
    schema.cedarschema     Cedar entity types and the RequestContext type (no actions: they are
                           generated from catalog.yaml, grouped by consequence class)
    policies/**/*.cedar    Cedar policies, each with a unique @id
    tests/*.yaml           policy test cases (not part of the content hash: they decide nothing)

Every problem is reported with file and line. The content hash is sha256 over the decision
files (sorted relative path, NUL, bytes, NUL), computed from the very bytes that were parsed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cedarpy
import yaml

from broker.errors import InvalidInput
from broker.models import Action, Consequence, Mode
from broker.policy import cedar_source as src
from broker.policy.problems import Problem, yaml_error_problem, yaml_line
from broker.risk.model import RiskModel, parse_catalog, parse_risk_table

CATALOG, RISK, SCHEMA, POLICY_DIR, TEST_DIR = (
    "catalog.yaml",
    "risk.yaml",
    "schema.cedarschema",
    "policies",
    "tests",
)
ANNOTATIONS = frozenset({"id", "reason", "step_up", "max_ttl", "single_use", "mode"})
MAX_TTL_LIMIT = 43200


@dataclass(frozen=True, slots=True)
class PolicyInfo:
    """One policy and the obligations its annotations carry."""

    policy_id: str
    effect: str  # permit | forbid
    file: str
    line: int | None
    reason: str | None  # @reason: shown in the decision's reasons
    step_up: bool  # @step_up on a forbid: an approval lifts it
    max_ttl: int | None  # @max_ttl("60") on a permit: caps the TTL when it matches
    single_use: bool  # @single_use on a permit: one use when it matches
    mode: Mode | None  # @mode("inline") on a permit: raises the control mode when it matches


@dataclass(frozen=True, slots=True, eq=False)
class Bundle:
    directory: Path
    bundle_hash: str
    catalog: Mapping[str, Action]
    risk: RiskModel
    schema: cedarpy.Schema
    policy_set: cedarpy.PolicySet  # every policy
    lifted_set: cedarpy.PolicySet  # without the @step_up forbids: used once an approval is granted
    policies: Mapping[str, PolicyInfo]
    files: tuple[str, ...]
    loaded_at: datetime
    # the attribute names a policy could read (:func:`read_names`); the engine leaves the other
    # top-level attributes out of what it hands Cedar (:func:`broker.policy.request.prune`); empty:
    # leave nothing out
    names: frozenset[str] = frozenset()


def read_names(ests: Iterable[Any]) -> frozenset[str]:
    """The attribute names the policies read (``x.name``, ``x has name``, keys of record literals),
    from their parsed form (Cedar's JSON policy format). Empty — prune nothing — when a policy uses
    the ``context`` record other than by reading an attribute of it (compares it whole, say), where
    leaving an attribute out would change what the policy sees."""
    names: set[str] = set()
    whole = False

    def walk(node: Any) -> None:
        nonlocal whole
        if isinstance(node, list):
            for item in node:
                walk(item)
            return
        if not isinstance(node, dict):
            return
        for op in (".", "has"):
            access = node.get(op)
            if isinstance(access, dict) and isinstance(access.get("attr"), str):
                names.add(access["attr"])
                if access.get("left") != {"Var": "context"}:
                    walk(access.get("left"))
                return
        if node.get("Var") == "context":
            whole = True
            return
        record = node.get("Record")
        if isinstance(record, dict):
            names.update(k for k in record if isinstance(k, str))
        for value in node.values():
            walk(value)

    for est in ests:
        walk(est)
    return frozenset() if whole else frozenset(names)


def decision_files(directory: Path) -> list[str]:
    """The files whose content decides (and is hashed), as sorted relative paths."""
    # chain.yaml (escalation detectors) decides too: it is hashed, so a change is a new bundle
    names = [n for n in (CATALOG, RISK, SCHEMA, "chain.yaml") if (directory / n).is_file()]
    policy_root = directory / POLICY_DIR
    if policy_root.is_dir():
        names += [p.relative_to(directory).as_posix() for p in policy_root.rglob("*.cedar") if p.is_file()]
    return sorted(names)


def hash_contents(contents: Mapping[str, bytes]) -> str:
    digest = hashlib.sha256()
    for name in sorted(contents):
        digest.update(name.encode() + b"\0" + contents[name] + b"\0")
    return digest.hexdigest()


def content_hash(directory: Path) -> str:
    """The hash a bundle loaded from ``directory`` now would have (for change polling)."""
    return hash_contents({n: (directory / n).read_bytes() for n in decision_files(directory)})


def parse_bundle(directory: Path) -> tuple[Bundle | None, list[Problem]]:
    """Read and validate ``directory`` (files, catalog, risk, schema, policies); the Cedar smoke
    check that needs the engine runs in :func:`broker.policy.loader.check_bundle`."""
    directory = Path(directory)
    if not directory.is_dir():
        return None, [Problem(str(directory), None, "policy bundle directory does not exist")]
    names = decision_files(directory)
    contents = {n: (directory / n).read_bytes() for n in names}
    texts: dict[str, str] = {}
    problems: list[Problem] = []
    for name, raw in contents.items():
        try:
            texts[name] = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            problems.append(Problem(name, None, f"not UTF-8 text ({exc.reason} at byte {exc.start})"))
    for required in (CATALOG, RISK, SCHEMA):
        if required not in contents:
            problems.append(Problem(required, None, "required file is missing"))
    policy_files = [n for n in names if n.endswith(".cedar") and n in texts]
    if not policy_files and not any(n.endswith(".cedar") for n in names):
        problems.append(Problem(f"{POLICY_DIR}/", None, "no *.cedar policy file"))

    catalog = _yaml_part(texts, CATALOG, parse_catalog, problems)
    risk = _yaml_part(texts, RISK, parse_risk_table, problems)
    schema = _schema(texts, catalog, problems) if SCHEMA in texts else None
    policies, ests = _policies(texts, policy_files, catalog, schema, problems)
    if problems or catalog is None or risk is None or schema is None:
        return None, problems
    if not any(p.effect == "permit" for p in policies.values()):
        return None, [Problem(f"{POLICY_DIR}/", None, "no permit policy: every request would be denied")]

    bundle = Bundle(
        directory=directory,
        bundle_hash=hash_contents(contents),
        catalog=catalog,
        risk=RiskModel(risk),
        schema=schema,
        policy_set=_policy_set(ests),
        policies=policies,
        files=tuple(names),
        lifted_set=_policy_set({k: v for k, v in ests.items() if not policies[k].step_up}),
        loaded_at=datetime.now(UTC),
        names=read_names(ests.values()),
    )
    return bundle, []


def _yaml_part(texts: Mapping[str, str], name: str, parse: Any, problems: list[Problem]) -> Any:
    if name not in texts:
        return None
    try:
        return parse(yaml.safe_load(texts[name]), where=name)
    except yaml.YAMLError as exc:
        problems.append(yaml_error_problem(name, exc))
    except InvalidInput as exc:
        path = exc.field.split(": ", 1)[1] if ": " in exc.field else ""
        message = exc.message[len(exc.field) + 2 :] if exc.message.startswith(exc.field + ": ") else exc.message
        problems.append(Problem(name, yaml_line(texts[name], path), f"{path or name}: {message}"))
    return None


def _schema(
    texts: Mapping[str, str], catalog: Mapping[str, Action] | None, problems: list[Problem]
) -> cedarpy.Schema | None:
    text = texts[SCHEMA]
    for line in src.declares_actions(text):
        problems.append(
            Problem(
                SCHEMA,
                line,
                "declare actions in catalog.yaml, not in the schema "
                "(the loader generates them, grouped by consequence class)",
            )
        )
    if problems and any(p.file == SCHEMA for p in problems):
        return None
    full = text if text.endswith("\n") else text + "\n"
    full += src.generated_actions(catalog) if catalog is not None else ""
    try:
        return cedarpy.Schema.from_str(full)
    except ValueError as exc:
        at = src.error_line(full, cedarpy.Schema.from_str)
        if at is not None and at > text.count("\n") + 1:
            problems.append(
                Problem(
                    SCHEMA,
                    None,
                    f"{exc} (with the actions generated from catalog.yaml: the "
                    f"schema must define entity Agent, entity Resource and "
                    f"type {src.CONTEXT_TYPE})",
                )
            )
        else:
            problems.append(Problem(SCHEMA, at, str(exc)))
        return None


def _policies(
    texts: Mapping[str, str],
    files: list[str],
    catalog: Mapping[str, Action] | None,
    schema: cedarpy.Schema | None,
    problems: list[Problem],
) -> tuple[dict[str, PolicyInfo], dict[str, Any]]:
    infos: dict[str, PolicyInfo] = {}
    ests: dict[str, Any] = {}
    known_actions = set(catalog or ()) | {c.value for c in Consequence}
    for name in files:
        text = texts[name]
        syntax = src.policy_syntax_error(text)
        if syntax is not None:
            problems.append(Problem(name, syntax[0], f"syntax error: {syntax[1]}"))
            continue
        est = src.parse_policy_file(text)
        statements = src.policy_statements(text)
        if est.get("templates"):
            problems.append(Problem(name, None, "policy templates (?principal/?resource) are not supported"))
        positional: dict[str, str] = {}
        for index, (pid, policy) in enumerate(est.get("staticPolicies", {}).items()):
            line = statements[index].line if index < len(statements) else None
            info = _policy_info(name, line, policy, problems)
            if info is None:
                continue
            positional[pid] = info.policy_id
            if info.policy_id in infos:
                first = infos[info.policy_id]
                problems.append(
                    Problem(name, line, f'duplicate @id("{info.policy_id}"): also at {first.file}:{first.line}')
                )
                continue
            if catalog is not None:
                for ref in sorted(set(src.action_refs(policy)) - known_actions):
                    problems.append(
                        Problem(
                            name,
                            line,
                            f'policy "{info.policy_id}" names Action::"{ref}", which '
                            f"is not in catalog.yaml nor a consequence class",
                        )
                    )
            infos[info.policy_id] = info
            ests[info.policy_id] = policy
        if schema is not None:
            for err in cedarpy.validate_policies(text, schema).errors:
                pid = err.policy_id
                index = int(pid[len("policy") :]) if pid.startswith("policy") and pid[6:].isdigit() else -1
                line = statements[index].line if 0 <= index < len(statements) else None
                message = err.error.replace(f"for policy `{pid}`, ", "")
                label = f'policy "{positional[pid]}": ' if pid in positional else ""
                problems.append(Problem(name, line, f"schema: {label}{message}"))
    return infos, ests


def _policy_info(file: str, line: int | None, policy: Mapping[str, Any], problems: list[Problem]) -> PolicyInfo | None:
    notes: Mapping[str, str | None] = policy.get("annotations") or {}
    pid = notes.get("id")
    if not pid:
        problems.append(Problem(file, line, 'policy has no @id("...") annotation (every policy needs a unique id)'))
        return None
    before = len(problems)

    def bad(message: str) -> None:
        problems.append(Problem(file, line, f'policy "{pid}": {message}'))

    for key in sorted(set(notes) - ANNOTATIONS):
        bad(f"unknown annotation @{key}; allowed: {', '.join('@' + a for a in sorted(ANNOTATIONS))}")
    effect = str(policy.get("effect"))
    step_up = "step_up" in notes
    if step_up and effect != "forbid":
        bad("@step_up belongs on a forbid policy (the forbid an approval lifts)")
    max_ttl: int | None = None
    if "max_ttl" in notes:
        raw = notes["max_ttl"] or ""
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_TTL_LIMIT:
            bad(f'@max_ttl("{raw}") must be a whole number of seconds between 1 and {MAX_TTL_LIMIT}')
        else:
            max_ttl = int(raw)
    mode: Mode | None = None
    if "mode" in notes:
        try:
            mode = Mode(notes["mode"] or "")
        except ValueError:
            bad(f'@mode("{notes["mode"]}") must be one of {", ".join(m.value for m in Mode)}')
    single_use = "single_use" in notes
    if notes.get("single_use"):
        bad("@single_use takes no value")
    if effect == "forbid" and (max_ttl is not None or mode is not None or single_use):
        bad("@max_ttl, @single_use and @mode are obligations of a permit; on a forbid they never apply")
    if len(problems) > before:
        return None
    return PolicyInfo(
        policy_id=pid,
        effect=effect,
        file=file,
        line=line,
        reason=notes.get("reason"),
        step_up=step_up,
        max_ttl=max_ttl,
        single_use=single_use,
        mode=mode,
    )


def _policy_set(ests: Mapping[str, Any]) -> cedarpy.PolicySet:
    """One PolicySet whose policy ids are the @id values (so diagnostics name them directly)."""
    return cedarpy.PolicySet.from_json_str(
        json.dumps({"staticPolicies": dict(ests), "templates": {}, "templateLinks": []})
    )
