"""`nhi-broker scan .` on this repository exits 0 (deliberate fixtures carry allow markers), and
the checked-in engine coverage list matches the installed engine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from scanners.coverage import compute, covered_ids, supplement_ids
from scanners.rules import load_rules

ROOT = Path(__file__).resolve().parents[2]


def test_scanning_the_repository_finds_nothing_and_exits_0() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run(
        [sys.executable, "-m", "broker.cli", "scan", "."],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert res.stdout.strip().endswith("0 finding(s)")


def test_every_rule_listed_as_covered_is_covered_by_the_installed_engine() -> None:
    rules = load_rules()
    covered, _ = compute(rules)
    assert covered_ids() <= set(covered), sorted(covered_ids() - set(covered))
    assert supplement_ids(rules) == {r.id for r in rules} - covered_ids()
