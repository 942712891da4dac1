"""The replay guard lives in the store (shared by replicas); the worker forgets jti rows once
their token could no longer verify, so the table does not grow without bound."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from broker.store import tables as t

pytestmark = pytest.mark.openbao


def test_worker_purges_expired_jti_rows_and_keeps_live_ones(broker):
    store = broker.container.store
    now = datetime.now(UTC)
    assert store.record_jti("urn:test", "gone-jti", now - timedelta(seconds=1))
    assert store.record_jti("urn:test", "live-jti", now + timedelta(hours=1))
    assert not store.record_jti("urn:test", "live-jti", now + timedelta(hours=1))  # a replay
    worker = broker.revocation_worker
    worker._last_jti_purge = 0.0  # due now
    assert worker.run_once()["jti_purged"] >= 1
    with store.read() as conn:
        left = {r.jti for r in conn.execute(select(t.seen_jti.c.jti).where(t.seen_jti.c.issuer == "urn:test"))}
    assert left == {"live-jti"}
