"""How one link of the audit chain is computed: the canonical event and its two digests.

- keyed (current): ``HMAC-SHA256(audit key, "nhi-broker audit event v1\\n" + prev_hash + "\\n" +
  canonical JSON of the event)``;
- legacy (rows written before the chain was keyed): ``SHA-256(prev_hash + "\\n" + canonical JSON)``,
  accepted only before the ``audit.chain_keyed`` anchor.

The label prefixes separate the event MACs from the checkpoint signatures made with the same key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from broker.audit.keys import AuditKey
from broker.store.rows import aware_ts

GENESIS = "0" * 64
ANCHOR_KIND = "audit.chain_keyed"
EVENT_LABEL = b"nhi-broker audit event v1\n"


def _ts(value: datetime) -> str:
    return aware_ts(value).astimezone(UTC).isoformat()


def event_fields(row: Mapping[str, Any]) -> dict[str, Any]:
    """The fields a link covers, in the shape they are hashed (and shown by the API)."""
    return {
        "seq": int(row["seq"]),
        "event_id": row["event_id"],
        "ts": _ts(row["ts"]),
        "kind": row["kind"],
        "actor": row["actor"],
        "task_id": row["task_id"],
        "outcome": row["outcome"],
        "data": row["data"],
    }


def canonical(event: Mapping[str, Any]) -> bytes:
    return json.dumps(event, sort_keys=True, separators=(",", ":"), default=str).encode()


def keyed_digest(key: AuditKey, prev_hash: str, event: Mapping[str, Any]) -> str:
    return key.mac(EVENT_LABEL + prev_hash.encode() + b"\n" + canonical(event)).hex()


def legacy_digest(prev_hash: str, event: Mapping[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode() + b"\n" + canonical(event)).hexdigest()
