"""Policy-as-code: the Cedar bundle, the decision engine on top of it, reloads, tests, replay.

Public surface (what the broker core calls):

- :func:`load_bundle` / :func:`check_bundle` — read and check a bundle directory;
- :class:`CedarDecisionEngine` — ``decide(DecisionInput) -> Decision`` for one bundle;
- :class:`PolicyHolder` — the active engine, swapped atomically by ``reload()``;
- :func:`run_tests` — the bundle's test cases; :func:`replay` — recorded decisions vs a bundle.
"""

from broker.policy.bundle import Bundle, PolicyInfo, content_hash
from broker.policy.engine import CedarDecisionEngine
from broker.policy.holder import PolicyHolder, ReloadResult
from broker.policy.loader import check_bundle, load_bundle
from broker.policy.problems import BundleError, Problem

__all__ = [
    "Bundle",
    "BundleError",
    "CedarDecisionEngine",
    "PolicyHolder",
    "PolicyInfo",
    "Problem",
    "ReloadResult",
    "check_bundle",
    "content_hash",
    "load_bundle",
]
