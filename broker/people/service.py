"""People, their roles and API tokens; who is calling; who owns an agent.

Authentication of a people route (``authenticate``), in this order, every failure a 401 and an
``auth.failed`` audit event:

1. ``Bearer <admin token>`` (constant-time compare) — the shared bootstrap token; every use is
   audited as ``admin_token.used`` with actor ``admin-token``. It administers and reads; it is not a
   person, so it never approves or reviews.
2. ``Bearer nbp_<id>_<secret>`` — a per-person API token: looked up by id, the secret's salted
   HMAC-SHA256 (key derived from the broker's fingerprint key) compared in constant time; revoked,
   expired or of a disabled or deleted person: 401.
3. ``Bearer <ID token>`` — a JWT from a configured human issuer, verified against the issuer's
   ``sign_in_audiences`` (never the audiences of actor tokens handed to agents); the person is the
   one registered with that (issuer, subject). An identity bound to an agent is refused.

Roles are checked by :meth:`PeopleService.require` (403 ``role_required``, audited).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Protocol

from broker.audit import AuditLog
from broker.errors import Denied, InvalidInput, NotFound, Unauthenticated
from broker.identity.verifier import VerifiedIdentity
from broker.models import OwnerIdentity
from broker.people import store as db
from broker.people.model import (
    ADMIN_TOKEN_ACTOR,
    PERSON_ISSUER,
    Caller,
    Person,
    PersonIdentity,
    PersonName,
    PersonToken,
    Role,
    TokenId,
    Via,
)
from broker.secrets import Secret, constant_time_equals
from broker.store.repo import Store, utcnow

TOKEN_PREFIX: Final = "nbp_"
_TOKEN = re.compile(r"nbp_([0-9a-f]{24})_([A-Za-z0-9_-]{43})")
_LABEL: Final = b"nhi-broker person token v1\n"
MAX_AUTHORIZATION: Final = 8 * 1024
TOUCH_EVERY: Final = timedelta(seconds=60)


class RoleRequired(Denied):
    code = "role_required"


class SignInVerifier(Protocol):
    def verify(self, token: str, *, spend_jti: bool = True) -> VerifiedIdentity: ...


@dataclass(frozen=True, slots=True)
class Parties:
    """Who may not approve or review an agent's request: its bound owner and the agent itself."""

    owner: frozenset[tuple[str, str]] | None  # None: the agent has no bound owner (fail closed)
    agent: frozenset[tuple[str, str]]


def token_key(fingerprint_key: bytes) -> bytes:
    """The HMAC key of person tokens, derived so it is never the fingerprint key itself."""
    return hmac.new(fingerprint_key, b"nhi-broker person-token key v1", hashlib.sha256).digest()


class PeopleService:
    def __init__(
        self,
        store: Store,
        audit: AuditLog,
        *,
        token_key: bytes,
        admin_token: Secret,
        sign_in: SignInVerifier | None,
        human_issuers: Iterable[str],
        max_token_ttl_seconds: int,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.audit = audit
        self._key = token_key
        self._admin_token = admin_token
        self.sign_in = sign_in
        self.human_issuers = tuple(human_issuers)
        self.max_token_ttl = max_token_ttl_seconds
        self.clock = clock

    # -- who is calling -------------------------------------------------------------------------
    def authenticate(self, authorization: str | None, *, source: str) -> Caller:
        try:
            caller = self._authenticate(authorization)
        except Unauthenticated as exc:
            self.audit.record(
                "auth.failed",
                actor="unknown",
                outcome="denied",
                data={"reason": exc.message, "source": source, "surface": "people"},
            )
            raise
        if caller.is_admin_token:
            self.audit.record("admin_token.used", actor=ADMIN_TOKEN_ACTOR, outcome="allowed", data={"source": source})
        return caller

    def require(self, caller: Caller, roles: Iterable[Role], *, source: str) -> Caller:
        wanted = frozenset(roles)
        if caller.roles & wanted:
            return caller
        names = ", ".join(sorted(r.value for r in wanted))
        self.audit.record(
            "auth.forbidden",
            actor=caller.actor,
            outcome="denied",
            data={"source": source, "required": sorted(r.value for r in wanted), "caller": caller.to_dict()},
        )
        who = "the admin token" if caller.person is None else f'person "{caller.person.name}"'
        raise RoleRequired(
            f"{who} lacks the role this needs (one of: {names})", details={"required": sorted(r.value for r in wanted)}
        )

    def _authenticate(self, authorization: str | None) -> Caller:
        if not authorization:
            raise Unauthenticated(
                "missing credentials: send Authorization: Bearer <person token, ID token or admin token>"
            )
        if len(authorization) > MAX_AUTHORIZATION:
            raise Unauthenticated("authorization header is too large")
        scheme, _, value = authorization.partition(" ")
        token = value.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated("authorization header must be: Bearer <token>")
        admin = self._admin_token.reveal()
        if admin and constant_time_equals(token, admin):
            return Caller(via=Via.ADMIN_TOKEN, person=None, issuer="", subject=ADMIN_TOKEN_ACTOR)
        if token.startswith(TOKEN_PREFIX):
            return self._person_token(token)
        return self._id_token(token)

    def _person_token(self, token: str) -> Caller:
        match = _TOKEN.fullmatch(token)
        if match is None:
            raise Unauthenticated("person token is malformed")
        token_id, secret = match.group(1), match.group(2)
        with self.store.read() as conn:
            found = db.token_with_hash(conn, token_id)
            person = db.get_person(conn, found[0].person) if found else None
        # compute the HMAC whether or not the id exists: no timing difference to learn ids from
        salt, stored = (found[1], found[2]) if found else ("0" * 32, "0" * 64)
        ok = hmac.compare_digest(self._mac(salt, token_id, secret), stored)
        if found is None or not ok:
            raise Unauthenticated("person token is not valid")
        record = found[0]
        now = self.clock()
        state = record.state_at(now)
        if state != "active":
            raise Unauthenticated(f"person token {record.token_id} is {state}")
        if person is None or person.disabled:
            raise Unauthenticated(f'person "{record.person}" is disabled or no longer registered')
        if record.last_used_at is None or now - record.last_used_at >= TOUCH_EVERY:
            with self.store.write() as conn:
                db.touch_token(conn, record.token_id, now)
        return Caller(via=Via.TOKEN, person=person, issuer=PERSON_ISSUER, subject=person.name, token_id=record.token_id)

    def _id_token(self, token: str) -> Caller:
        if token.count(".") != 2:
            raise Unauthenticated("bearer token is not the admin token, a person token or an ID token")
        if self.sign_in is None:
            raise Unauthenticated(
                "bearer token is not the admin token or a person token, and no human issuer "
                "accepts ID tokens for sign-in (human_issuers[].sign_in_audiences)"
            )
        return self.person_of(self.sign_in.verify(token, spend_jti=False))

    def person_of(self, identity: VerifiedIdentity) -> Caller:
        """The registered person behind a verified ID token (a bearer ID token, or the console's
        sign-in after the code flow). 401 for an agent's identity, an unknown or disabled person."""
        with self.store.read() as conn:
            agent = self.store.identity_owner(conn, identity.issuer, identity.subject)
            person = db.person_by_identity(conn, identity.issuer, identity.subject)
        if agent is not None:
            raise Unauthenticated("this identity is bound to an agent; agents cannot act as people")
        if person is None:
            raise Unauthenticated("identity is valid but not registered as a person (an admin adds people)")
        if person.disabled:
            raise Unauthenticated(f'person "{person.name}" is disabled')
        return Caller(via=Via.OIDC, person=person, issuer=identity.issuer, subject=identity.subject)

    def _mac(self, salt: str, token_id: str, secret: str) -> str:
        msg = _LABEL + salt.encode() + b"\n" + token_id.encode() + b"\n" + secret.encode()
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()

    # -- four-eyes ------------------------------------------------------------------------------
    def parties(self, agent_name: str) -> Parties:
        """The owner's and the agent's identities, read now (not when the approval opened)."""
        with self.store.read() as conn:
            agent = self.store.get_agent(conn, agent_name)
            if agent is None:
                return Parties(owner=None, agent=frozenset({("agent", agent_name)}))
            agent_keys = frozenset({("agent", agent.name)} | {(b.issuer, b.subject) for b in agent.bindings})
            oi = agent.owner_identity
            if oi is None:
                return Parties(owner=None, agent=agent_keys)
            if oi.person is not None:
                keys = {(PERSON_ISSUER, oi.person)}
                owner = db.get_person(conn, oi.person)
                if owner is not None:
                    keys.update((i.issuer, i.subject) for i in owner.identities)
            else:
                assert oi.issuer is not None and oi.subject is not None
                keys = {(oi.issuer, oi.subject)}
                holder = db.identity_holder(conn, oi.issuer, oi.subject)
                if holder is not None:
                    keys.add((PERSON_ISSUER, holder))
                    held = db.get_person(conn, holder)
                    keys.update((i.issuer, i.subject) for i in (held.identities if held else ()))
        return Parties(owner=frozenset(keys), agent=agent_keys)

    def check_owner(self, owner: OwnerIdentity) -> None:
        """An agent's bound owner must be someone the broker can recognise: a registered person, or
        an identity at a configured human issuer (a typo would bind nobody and guard nothing)."""
        if owner.person is not None:
            with self.store.read() as conn:
                if db.get_person(conn, owner.person) is None:
                    raise InvalidInput(
                        "owner_identity.person",
                        f'person "{owner.person}" does not exist; add them first (PUT /v1/admin/people/{owner.person})',
                    )
        elif owner.issuer not in self.human_issuers:
            raise InvalidInput(
                "owner_identity.issuer",
                f'"{owner.issuer}" is not a configured human issuer; known: {list(self.human_issuers)}',
            )

    # -- administration -------------------------------------------------------------------------
    def put(
        self,
        name: str,
        *,
        display_name: str,
        roles: Iterable[Role],
        identities: Iterable[PersonIdentity],
        disabled: bool,
        actor: Caller,
    ) -> tuple[dict[str, Any], bool]:
        idents = tuple(dict.fromkeys(identities))
        role_set = frozenset(roles)
        with self.store.write() as conn:
            for i, ident in enumerate(idents):
                if ident.issuer not in self.human_issuers:
                    raise InvalidInput(
                        f"identities[{i}].issuer",
                        f'"{ident.issuer}" is not a configured human issuer; known: {list(self.human_issuers)}',
                    )
                agent = self.store.identity_owner(conn, ident.issuer, ident.subject)
                if agent is not None:
                    raise InvalidInput(
                        f"identities[{i}]", f'issuer/subject is bound to agent "{agent}"; an agent is never a person'
                    )
                holder = db.identity_holder(conn, ident.issuer, ident.subject)
                if holder is not None and holder != name:
                    raise InvalidInput(f"identities[{i}]", f'issuer/subject is already bound to person "{holder}"')
            created = db.put_person(
                conn,
                name,
                display_name=display_name,
                roles=role_set,
                identities=idents,
                disabled=disabled,
                now=self.clock(),
            )
            self.audit.append(
                conn,
                "person.changed",
                actor=actor.actor,
                outcome="created" if created else "updated",
                data={
                    "person": name,
                    "roles": sorted(r.value for r in role_set),
                    "identities": [i.to_dict() for i in idents],
                    "disabled": disabled,
                    "by": actor.to_dict(),
                },
            )
        return self.get(name).to_dict(), created

    def get(self, name: str) -> Person:
        with self.store.read() as conn:
            person = db.get_person(conn, name)
        if person is None:
            raise NotFound(f'person "{name}" does not exist')
        return person

    def list_people(self) -> list[dict[str, Any]]:
        with self.store.read() as conn:
            return [p.to_dict() for p in db.list_people(conn)]

    def delete(self, name: str, actor: Caller) -> None:
        with self.store.write() as conn:
            if not db.delete_person(conn, name, self.clock()):
                raise NotFound(f'person "{name}" does not exist')
            self.audit.append(
                conn,
                "person.deleted",
                actor=actor.actor,
                outcome="deleted",
                data={"person": name, "by": actor.to_dict()},
            )

    def create_token(
        self, name: str, *, ttl_seconds: int, description: str, actor: Caller
    ) -> tuple[Secret, dict[str, Any]]:
        """A new API token for the person; the secret is returned here, once, and never stored."""
        if not 60 <= ttl_seconds <= self.max_token_ttl:
            raise InvalidInput(
                "ttl_seconds", f"{ttl_seconds} is out of range: must be between 60 and {self.max_token_ttl}"
            )
        token_id = TokenId(uuid.uuid4().hex[:24])
        secret = secrets.token_urlsafe(32)
        salt = secrets.token_hex(16)
        now = self.clock()
        record = PersonToken(
            token_id=token_id,
            person=PersonName(name),
            description=description,
            created_at=now,
            created_by=actor.actor,
            expires_at=now + timedelta(seconds=ttl_seconds),
            revoked_at=None,
            last_used_at=None,
        )
        with self.store.write() as conn:
            if db.get_person(conn, name) is None:
                raise NotFound(f'person "{name}" does not exist')
            db.insert_token(conn, record, salt=salt, secret_hmac=self._mac(salt, token_id, secret))
            self.audit.append(
                conn,
                "person.token_created",
                actor=actor.actor,
                outcome="created",
                data={
                    "person": name,
                    "token_id": token_id,
                    "expires_at": record.expires_at.isoformat(),
                    "by": actor.to_dict(),
                },
            )
        return Secret(f"{TOKEN_PREFIX}{token_id}_{secret}"), record.to_dict(now)

    def list_tokens(self, name: str) -> list[dict[str, Any]]:
        self.get(name)
        now = self.clock()
        with self.store.read() as conn:
            return [tok.to_dict(now) for tok in db.list_tokens(conn, name)]

    def revoke_token(self, name: str, token_id: str, actor: Caller) -> dict[str, Any]:
        now = self.clock()
        with self.store.write() as conn:
            record = db.get_token(conn, token_id)
            if record is None or record.person != name:
                raise NotFound(f'person "{name}" has no token "{token_id}"')
            if db.revoke_token(conn, token_id, now):
                self.audit.append(
                    conn,
                    "person.token_revoked",
                    actor=actor.actor,
                    outcome="revoked",
                    data={"person": name, "token_id": token_id, "by": actor.to_dict()},
                )
            record = db.get_token(conn, token_id)
        assert record is not None
        return record.to_dict(now)
