"""Reports: text for people, JSON for tools, SARIF 2.1.0 for code-scanning upload."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final

from scanners.engine import Finding
from scanners.rules import Confidence, Rule, Severity

SARIF_SCHEMA: Final = "https://json.schemastore.org/sarif-2.1.0.json"
# SARIF level follows confidence (how sure the finding is a credential); security-severity
# follows severity (how bad it is if it is one)
_LEVEL: Final = {Confidence.LOW: "note", Confidence.MEDIUM: "warning", Confidence.HIGH: "error"}
_SCORE: Final = {Severity.LOW: "3.0", Severity.MEDIUM: "5.5", Severity.HIGH: "8.0", Severity.CRITICAL: "9.5"}


def to_text(findings: Sequence[Finding]) -> str:
    lines = [
        f"{f.path or '-'}:{f.line}:{f.column}: {f.severity.value} ({f.confidence.value} confidence) "
        f"{f.rule_id} {f.masked}  {f.excerpt}"
        for f in findings
    ]
    lines.append(f"{len(findings)} finding(s)")
    return "\n".join(lines) + "\n"


def to_json(findings: Sequence[Finding]) -> str:
    return json.dumps({"findings": [f.to_dict() for f in findings], "count": len(findings)}, indent=2) + "\n"


def to_sarif(findings: Sequence[Finding], rules: Sequence[Rule], version: str = "0.1.0") -> str:
    used = sorted({f.rule_id for f in findings})
    by_id = {r.id: r for r in rules}
    index = {rid: i for i, rid in enumerate(used)}
    sarif_rules: list[dict[str, Any]] = []
    first = {f.rule_id: f for f in reversed(findings)}
    for rid in used:
        rule = by_id.get(rid)
        desc = rule.description if rule else first[rid].description
        sev = rule.severity if rule else first[rid].severity
        conf = rule.confidence if rule else first[rid].confidence
        sarif_rules.append(
            {
                "id": rid,
                "name": rid,
                "shortDescription": {"text": desc},
                "fullDescription": {"text": desc},
                "defaultConfiguration": {"level": _LEVEL[conf]},
                "help": {"text": "Revoke and rotate the credential, then remove it from the file."},
                "properties": {"security-severity": _SCORE[sev], "tags": ["security", "secret"]},
            }
        )
    results = []
    for f in findings:
        results.append(
            {
                "ruleId": f.rule_id,
                "ruleIndex": index[f.rule_id],
                "level": _LEVEL[f.confidence],
                "properties": {"confidence": f.confidence.value, "severity": f.severity.value},
                "message": {"text": f"{f.description}: {f.masked}"},
                "locations": [
                    {
                        "physicalLocation": {
                            "artifactLocation": {"uri": (f.path or "stdin").lstrip("/"), "uriBaseId": "%SRCROOT%"},
                            "region": {"startLine": f.line, "startColumn": f.column},
                        }
                    }
                ],
                "partialFingerprints": {"secretFingerprint/v1": f.fingerprint},
            }
        )
    doc = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "nhi-broker",
                        "informationUri": "https://github.com/nhi-broker/nhi-broker",
                        "version": version,
                        "rules": sarif_rules,
                    }
                },
                "results": results,
                "columnKind": "unicodeCodePoints",
            }
        ],
    }
    return json.dumps(doc, indent=2) + "\n"
