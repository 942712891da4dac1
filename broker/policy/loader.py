"""Loading a policy bundle: parse and validate it, then smoke-check it through Cedar.

``bundle`` knows the files, ``engine`` evaluates; this module is the one that needs both, so
neither imports the other's caller.
"""

from __future__ import annotations

from pathlib import Path

from broker.policy.bundle import Bundle, parse_bundle
from broker.policy.engine import smoke_check
from broker.policy.problems import BundleError, Problem


def check_bundle(directory: Path) -> tuple[Bundle | None, list[Problem]]:
    bundle, problems = parse_bundle(Path(directory))
    if bundle is None:
        return None, problems
    problems = smoke_check(bundle)
    return (None, problems) if problems else (bundle, [])


def load_bundle(directory: Path) -> Bundle:
    """Load, validate and lint ``directory``; raise :class:`BundleError` listing every problem."""
    bundle, problems = check_bundle(directory)
    if bundle is None or problems:
        raise BundleError(problems or [Problem(str(directory), None, "bundle could not be loaded")])
    return bundle
