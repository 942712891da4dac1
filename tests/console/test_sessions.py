"""Console sessions against real stores: idle timeout, absolute lifetime, sign-out, the person
disabled or their identity removed, a store that holds only hashes, and two replicas sharing one
PostgreSQL store (a sign-out on one is a sign-out on the other). Plus the sealed sign-in state and
the settings that guard the cookie."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from broker.audit import AuditLog
from broker.audit.keys import LocalAuditKey
from broker.config import Settings
from broker.people import store as people_db
from broker.people.model import Caller, PersonIdentity, Role, Via
from broker.people.sessions import ConsoleSessions, session_key
from broker.store import tables as t
from broker.store.db import make_engine, migrate
from broker.store.repo import Store

ISSUER = "http://127.0.0.1:1"
KEY = session_key(b"k" * 32)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def _store(url: str) -> Store:
    engine = make_engine(url)
    migrate(engine)
    return Store(engine)


def _sessions(store: Store, clock: Clock) -> ConsoleSessions:
    audit = AuditLog(store, LocalAuditKey(b"a" * 32))
    return ConsoleSessions(store, audit, key=KEY, idle_timeout_seconds=900, max_session_seconds=3600, clock=clock)


def _person(store: Store, *, disabled: bool = False, subject: str = "alice@example.test") -> Caller:
    with store.write() as conn:
        people_db.put_person(
            conn,
            "alice",
            display_name="Alice",
            roles=frozenset({Role.APPROVER}),
            identities=(PersonIdentity(ISSUER, subject),),
            disabled=disabled,
            now=datetime.now(UTC),
        )
        person = people_db.get_person(conn, "alice")
    assert person is not None
    return Caller(via=Via.OIDC, person=person, issuer=ISSUER, subject="alice@example.test")


@pytest.fixture()
def sqlite_store(tmp_path) -> Store:
    return _store(f"sqlite:///{tmp_path / 'broker.db'}")


def test_idle_timeout_and_absolute_lifetime(sqlite_store: Store) -> None:
    clock = Clock()
    sessions = _sessions(sqlite_store, clock)
    caller = _person(sqlite_store)
    sid = sessions.start(caller, source="test").reveal()
    live = sessions.resume(sid)
    assert live is not None and live.caller.person is not None and live.caller.person.name == "alice"
    # activity keeps it alive past the idle timeout...
    for _ in range(4):  # 56 minutes, never 15 idle
        clock.now += timedelta(minutes=14)
        assert sessions.resume(sid) is not None
    # ...but not past the absolute lifetime (1 h)
    clock.now += timedelta(minutes=5)
    assert sessions.resume(sid) is None
    # a fresh session left alone for the idle timeout is over
    other = sessions.start(caller, source="test").reveal()
    clock.now += timedelta(seconds=901)
    assert sessions.resume(other) is None


def test_the_store_keeps_only_a_hash_and_a_forged_or_foreign_id_signs_nobody_in(sqlite_store: Store) -> None:
    sessions = _sessions(sqlite_store, Clock())
    sid = sessions.start(_person(sqlite_store), source="test").reveal()
    with sqlite_store.read() as conn:
        stored = [r[0] for r in conn.execute(select(t.console_sessions.c.id_hash))]
    assert sid not in stored and all(len(h) == 64 for h in stored)
    assert sessions.resume(stored[0]) is None  # the hash is not a session id
    assert sessions.resume(sid[:-1] + ("A" if sid[-1] != "A" else "B")) is None
    assert sessions.resume("x" * 10_000) is None
    other_key = ConsoleSessions(
        sqlite_store, sessions.audit, key=session_key(b"z" * 32), idle_timeout_seconds=900, max_session_seconds=3600
    )
    assert other_key.resume(sid) is None  # another broker's key (the hash is keyed)


def test_disabling_the_person_or_removing_their_identity_ends_the_session(sqlite_store: Store) -> None:
    sessions = _sessions(sqlite_store, Clock())
    sid = sessions.start(_person(sqlite_store), source="test").reveal()
    _person(sqlite_store, subject="someone-else")  # the identity they signed in with is gone
    assert sessions.resume(sid) is None
    _person(sqlite_store)
    assert sessions.resume(sid) is None  # ended, not suspended
    sid2 = sessions.start(_person(sqlite_store), source="test").reveal()
    _person(sqlite_store, disabled=True)
    assert sessions.resume(sid2) is None


def test_csrf_token_is_bound_to_the_session(sqlite_store: Store) -> None:
    sessions = _sessions(sqlite_store, Clock())
    caller = _person(sqlite_store)
    a, b = (sessions.start(caller, source="test").reveal() for _ in range(2))
    token = sessions.csrf_token(a)
    assert sessions.csrf_ok(a, token)
    assert not sessions.csrf_ok(b, token)
    assert not sessions.csrf_ok(a, None) and not sessions.csrf_ok(a, "") and not sessions.csrf_ok(None, token)


def test_sealed_sign_in_state_expires_and_cannot_be_altered(sqlite_store: Store) -> None:
    clock = Clock()
    sessions = _sessions(sqlite_store, clock)
    sealed = sessions.seal({"state": "s", "next": "/console/approvals"})
    assert sessions.unseal(sealed, max_age_seconds=600) == {"state": "s", "next": "/console/approvals"}
    body, mac = sealed.split(".")
    assert sessions.unseal(body[:-2] + "xx." + mac, max_age_seconds=600) is None
    assert sessions.unseal("garbage", max_age_seconds=600) is None
    clock.now += timedelta(seconds=601)
    assert sessions.unseal(sealed, max_age_seconds=600) is None


@pytest.mark.postgres
def test_two_replicas_on_one_postgresql_store_share_sign_out(pg_database: str) -> None:
    clock = Clock()
    one, two = _store(pg_database), _store(pg_database)
    replica_one, replica_two = _sessions(one, clock), _sessions(two, clock)
    sid = replica_one.start(_person(one), source="test").reveal()
    assert replica_two.resume(sid) is not None  # signed in on every replica
    assert replica_two.csrf_token(sid) == replica_one.csrf_token(sid)
    replica_two.end(sid, source="test")
    assert replica_one.resume(sid) is None  # signed out on every replica
    one.engine.dispose()
    two.engine.dispose()


def test_the_cookie_may_lose_secure_only_on_loopback() -> None:
    base = {"dev_mode": True}
    Settings(**base, console={"cookie_secure": False})  # host 127.0.0.1
    Settings(**base, console_url="http://localhost:8080/console", console={"cookie_secure": False})
    with pytest.raises(ValueError, match="cookie_secure"):
        Settings(**base, console_url="https://broker.example/console", console={"cookie_secure": False})
    with pytest.raises(ValueError, match="cookie_secure"):
        Settings(**base, host="0.0.0.0", console={"cookie_secure": False})


def test_console_issuer_and_client_must_be_a_sign_in_issuer() -> None:
    issuer = {"issuer": "https://idp.example", "audiences": ["act"], "jwks_url": "https://idp.example/jwks"}
    with pytest.raises(ValueError, match=r"console\.issuer"):
        Settings(dev_mode=True, human_issuers=[issuer], console={"issuer": "https://other.example"})
    with pytest.raises(ValueError, match=r"console\.client_id"):
        Settings(
            dev_mode=True,
            human_issuers=[{**issuer, "sign_in_audiences": ["nhi-console"]}],
            console={"issuer": "https://idp.example", "client_id": "act"},
        )
    chosen = Settings(dev_mode=True, human_issuers=[{**issuer, "sign_in_audiences": ["nhi-console"]}])
    found = chosen.console_sign_in()
    assert found is not None and found[1] == "nhi-console"
    assert Settings(dev_mode=True, human_issuers=[issuer]).console_sign_in() is None
