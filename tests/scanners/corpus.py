"""Load the labelled rule corpus (tests/data/scanner/rule_cases.txt) into (rule, flag, text, spans)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from scanners.synth import expand

DATA = Path(__file__).resolve().parents[1] / "data" / "scanner"


@dataclass(frozen=True)
class Case:
    rule: str
    should_flag: bool
    text: str
    spans: tuple[tuple[int, int], ...]
    lineno: int


def load_cases(seed: int = 1) -> list[Case]:
    rng = random.Random(seed)
    cases = []
    for n, line in enumerate((DATA / "rule_cases.txt").read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        rule, flag, template = line.split(" ", 2)
        assert flag in "+-", f"line {n}: flag must be + or -"
        text, spans = expand(template.replace("<NL>", "\n"), rng)
        cases.append(Case(rule, flag == "+", text, tuple(spans), n))
    return cases
