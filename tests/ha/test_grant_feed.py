"""The grant feed: a replica's leak index learns the grants another replica issues (PostgreSQL
LISTEN/NOTIFY), and catches up from the store on (re)connect when notifications were missed."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator

import pytest
from support.broker import FINGERPRINT_KEY, RunningBroker, start_broker

from broker.services.grant_feed import GrantFeed
from broker.store.db import make_engine
from broker.store.repo import Store
from scanners.known import KnownSecretIndex

pytestmark = [pytest.mark.ha, pytest.mark.openbao, pytest.mark.postgres]


@pytest.fixture()
def replica_a(openbao, pg_database, tmp_path) -> Iterator[tuple[RunningBroker, str]]:
    running = start_broker(tmp_path, openbao, database_url=pg_database)
    yield running, pg_database
    running.stop()


def _wait(predicate, timeout: float = 30.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.001)
    return False


def test_grant_issued_on_one_replica_reaches_another_replicas_index_by_notification(replica_a) -> None:
    running, url = replica_a
    engine = make_engine(url)
    index = KnownSecretIndex(bytes.fromhex(FINGERPRINT_KEY))
    feed = GrantFeed(Store(engine), index, resync_seconds=3600).start()  # notifications only
    latencies: list[float] = []
    try:
        assert feed.connected.wait(30)
        agent = running.agent()
        with agent.task("demo", purpose="feed") as task:
            for _ in range(20):
                cred = task.credential("db.read", "demo-data")
                got = time.monotonic()
                token = cred.secret("token")
                assert _wait(lambda token=token: bool(index.find(f"x {token} y"))), "grant never reached the index"
                latencies.append(time.monotonic() - got)
        assert feed.notified >= 20
        match = index.find(f"x {token} y")[0][3]
        assert match.task_id == task.task_id and match.agent == "demo-agent"
    finally:
        feed.stop()
        engine.dispose()
    print(
        f"\ngrant feed (NOTIFY): response-to-index p50 {statistics.median(latencies) * 1000:.1f} ms, "
        f"max {max(latencies) * 1000:.1f} ms over {len(latencies)} grants"
    )


def test_feed_started_after_grants_were_issued_catches_up_from_the_store(replica_a) -> None:
    running, url = replica_a
    agent = running.agent()
    with agent.task("demo", purpose="missed notification") as task:
        token = task.credential("db.read", "demo-data").secret("token")
        engine = make_engine(url)
        index = KnownSecretIndex(bytes.fromhex(FINGERPRINT_KEY))
        feed = GrantFeed(Store(engine), index, resync_seconds=3600).start()  # the notification is long gone
        try:
            assert feed.connected.wait(30)
            assert _wait(lambda: bool(index.find(token)))
            assert feed.notified == 0  # it came from the store, not a notification
        finally:
            feed.stop()
            engine.dispose()
