"""Signed-in sessions of the web console (docs/console.md, docs/design-notes.md).

Server-side records in the store (``console_sessions``): the cookie carries a random session id
(``ncs_`` + 43 url-safe characters); the database keeps only its HMAC-SHA256 under a key derived
from the broker's fingerprint key, so a database dump signs nobody in. Every replica on a
PostgreSQL store sees a sign-out at once. A session ends at sign-out, after
``idle_timeout_seconds`` without a request, after ``max_session_seconds`` whatever happens, and
when its person is disabled, deleted or loses the OIDC identity they signed in with (checked on
every request: the session is the person *now*, not a snapshot).

The CSRF token of a session is ``HMAC(key, "csrf" ‖ session id)``: bound to the session, nothing
stored, compared in constant time.

The sign-in's own state (``state``, ``nonce``, PKCE verifier) rides in a short-lived cookie sealed
here (HMAC, timestamp), so a callback reaching another replica works too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from broker.audit import AuditLog
from broker.people import store as people_db
from broker.people.model import Caller, PersonIdentity, StoredSession, Via
from broker.secrets import Secret
from broker.store.repo import Store, utcnow

SESSION_PREFIX: Final = "ncs_"
_SESSION = re.compile(r"ncs_[A-Za-z0-9_-]{43}")
TOUCH_EVERY: Final = timedelta(seconds=15)
MAX_SEALED: Final = 4096


def session_key(fingerprint_key: bytes) -> bytes:
    """The console's HMAC key, derived so it is never the fingerprint key itself."""
    return hmac.new(fingerprint_key, b"nhi-broker console-session key v1", hashlib.sha256).digest()


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    caller: Caller
    csrf_token: str
    created_at: datetime
    expires_at: datetime  # absolute end
    idle_until: datetime


class ConsoleSessions:
    def __init__(
        self,
        store: Store,
        audit: AuditLog,
        *,
        key: bytes,
        idle_timeout_seconds: int,
        max_session_seconds: int,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.audit = audit
        self._key = key
        self.idle = timedelta(seconds=idle_timeout_seconds)
        self.lifetime = timedelta(seconds=max_session_seconds)
        self.clock = clock

    # -- sessions -------------------------------------------------------------------------------
    def start(self, caller: Caller, *, source: str) -> Secret:
        """A new session for a person who just signed in; the id is for the cookie only."""
        if caller.person is None or caller.via is not Via.OIDC:
            raise ValueError("a console session is for a person signed in through OIDC")
        session_id = SESSION_PREFIX + secrets.token_urlsafe(32)
        now = self.clock()
        stored = StoredSession(
            id_hash=self._hash(session_id),
            person=caller.person.name,
            identity=PersonIdentity(caller.issuer, caller.subject),
            created_at=now,
            last_seen_at=now,
            expires_at=now + self.lifetime,
            ended_at=None,
        )
        with self.store.write() as conn:
            people_db.insert_session(conn, stored)
            people_db.purge_sessions(conn, now - timedelta(days=1))  # rows of sessions over for a day
            self.audit.append(
                conn,
                "console.signed_in",
                actor=caller.actor,
                outcome="allowed",
                data={"subject": caller.to_dict(), "source": source},
            )
        return Secret(session_id)

    def resume(self, session_id: str | None) -> ConsoleSession | None:
        """The live session of this cookie value, or None (unknown, ended, idle, expired, or its
        person can no longer sign in)."""
        if not session_id or not _SESSION.fullmatch(session_id):
            return None
        id_hash = self._hash(session_id)
        now = self.clock()
        with self.store.read() as conn:
            stored = people_db.get_session(conn, id_hash)
            person = people_db.get_person(conn, stored.person) if stored is not None else None
        if stored is None:
            return None
        last_seen = stored.last_seen_at
        if stored.ended_at is not None or now >= stored.expires_at or now >= last_seen + self.idle:
            return None
        identity = stored.identity
        if person is None or person.disabled or identity not in person.identities:
            self._end(id_hash, "person_changed", actor=f"person:{stored.person}", source="session check")
            return None
        if now - last_seen >= TOUCH_EVERY:
            with self.store.write() as conn:
                people_db.touch_session(conn, id_hash, now)
            last_seen = now
        caller = Caller(via=Via.OIDC, person=person, issuer=identity.issuer, subject=identity.subject)
        return ConsoleSession(
            caller=caller,
            csrf_token=self.csrf_token(session_id),
            created_at=stored.created_at,
            expires_at=stored.expires_at,
            idle_until=min(stored.expires_at, last_seen + self.idle),
        )

    def end(self, session_id: str | None, *, source: str) -> None:
        """Sign-out: the session is over on every replica (no-op for an unknown id)."""
        if not session_id or not _SESSION.fullmatch(session_id):
            return
        id_hash = self._hash(session_id)
        with self.store.read() as conn:
            stored = people_db.get_session(conn, id_hash)
        if stored is not None:
            self._end(id_hash, "signed_out", actor=f"person:{stored.person}", source=source)

    def _end(self, id_hash: str, why: str, *, actor: str, source: str) -> None:
        with self.store.write() as conn:
            if people_db.end_session(conn, id_hash, self.clock()):
                self.audit.append(
                    conn, "console.signed_out", actor=actor, outcome=why, data={"source": source, "reason": why}
                )

    # -- CSRF -----------------------------------------------------------------------------------
    def csrf_token(self, session_id: str) -> str:
        return hmac.new(self._key, b"csrf\n" + session_id.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, session_id: str | None, token: str | None) -> bool:
        if not session_id or not token or not _SESSION.fullmatch(session_id) or len(token) != 64:
            return False
        return hmac.compare_digest(self.csrf_token(session_id), token)

    # -- the sign-in's sealed state -------------------------------------------------------------
    def seal(self, data: dict[str, Any]) -> str:
        """``data`` (JSON) with the time and an HMAC: for a cookie the browser only carries back."""
        body = json.dumps({"at": self.clock().timestamp(), "data": data}, separators=(",", ":")).encode()
        mac = hmac.new(self._key, b"seal\n" + body, hashlib.sha256).digest()
        return _b64(body) + "." + _b64(mac)

    def unseal(self, value: str | None, *, max_age_seconds: int) -> dict[str, Any] | None:
        if not value or len(value) > MAX_SEALED or value.count(".") != 1:
            return None
        raw_body, raw_mac = value.split(".")
        try:
            body, mac = _unb64(raw_body), _unb64(raw_mac)
        except ValueError:
            return None
        if not hmac.compare_digest(hmac.new(self._key, b"seal\n" + body, hashlib.sha256).digest(), mac):
            return None
        doc = json.loads(body)
        age = self.clock().timestamp() - float(doc["at"])
        if not 0 <= age <= max_age_seconds:
            return None
        data: dict[str, Any] = doc["data"]
        return data

    def _hash(self, session_id: str) -> str:
        return hmac.new(self._key, b"session\n" + session_id.encode(), hashlib.sha256).hexdigest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise ValueError("not base64url") from exc
