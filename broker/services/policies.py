"""Policy administration: reload the bundle (API, watcher), audited either way; what is in force.

A reload that is accepted also reloads the chain rules (``chain.yaml`` lives in the same bundle).
"""

from __future__ import annotations

from typing import Any

from broker.audit import AuditLog
from broker.chain.rules import ChainRules
from broker.policy.holder import PolicyHolder, ReloadResult


class PolicyService:
    def __init__(self, holder: PolicyHolder, chain_rules: ChainRules, audit: AuditLog) -> None:
        self.holder = holder
        self.chain_rules = chain_rules
        self.audit = audit

    def reload(self, trigger: str = "api", actor: str = "broker") -> dict[str, Any]:
        """Reload the policy bundle; a bad bundle is refused and the old one stays in force.
        Either way the attempt is audited (``policy.reloaded`` / ``policy.reload_refused``)."""
        result = self.holder.reload(trigger)
        self.apply(result, actor)
        return dict(result.to_dict())

    def poll(self) -> None:
        """One watcher tick: reload when the bundle's files changed."""
        result = self.holder.poll()
        if result is not None:
            self.apply(result, "policy-watcher")

    def apply(self, result: ReloadResult, actor: str) -> None:
        event = result.audit_event()
        self.audit.record(event["kind"], actor=actor, outcome="ok" if result.ok else "refused", data=event["data"])
        if result.ok and result.changed:
            self.chain_rules.reload()

    def info(self) -> dict[str, Any]:
        return dict(self.holder.info())
