"""The audit trail: a keyed hash chain in the store, signed checkpoints outside it.

- :mod:`broker.audit.log` — append and read events; walk the chain (:mod:`broker.audit.verify`)
- :mod:`broker.audit.keys` — the audit key port and its local adapters (file, settings)
- :mod:`broker.audit.checkpoints` / :mod:`broker.audit.sinks` — signed checkpoints and where they go
- :mod:`broker.audit.guard` — verification at start-up and on a schedule, export, alerts
"""

from broker.audit.chain import ANCHOR_KIND, GENESIS
from broker.audit.keys import AuditKey, AuditKeyError, LocalAuditKey
from broker.audit.log import AuditEvent, AuditLog
from broker.audit.verify import VerifyResult

__all__ = [
    "ANCHOR_KIND",
    "GENESIS",
    "AuditEvent",
    "AuditKey",
    "AuditKeyError",
    "AuditLog",
    "LocalAuditKey",
    "VerifyResult",
]
