"""SQL for people, their OIDC identities, their API tokens and their console sessions (the only SQL
of this package)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, delete, insert, select, update

from broker.people.model import Person, PersonIdentity, PersonName, PersonToken, Role, StoredSession, TokenId
from broker.store import tables as t
from broker.store.rows import aware_opt, aware_ts

P = t.people.c
PI = t.person_identities.c
PT = t.person_tokens.c
CS = t.console_sessions.c


def _person(row: Any) -> Person:
    m = row._mapping
    return Person(
        name=PersonName(m["name"]),
        roles=frozenset(Role(r) for r in m["roles"] or ()),
        identities=tuple(PersonIdentity(i["issuer"], i["subject"]) for i in m["identities"] or ()),
        display_name=m["display_name"],
        disabled=bool(m["disabled"]),
        created_at=aware_ts(m["created_at"]),
        updated_at=aware_ts(m["updated_at"]),
    )


def get_person(conn: Connection, name: str) -> Person | None:
    row = conn.execute(select(t.people).where(P.name == name)).first()
    return _person(row) if row else None


def list_people(conn: Connection) -> list[Person]:
    return [_person(r) for r in conn.execute(select(t.people).order_by(P.name))]


def person_by_identity(conn: Connection, issuer: str, subject: str) -> Person | None:
    row = conn.execute(
        select(t.people)
        .join(t.person_identities, PI.person == P.name)
        .where(and_(PI.issuer == issuer, PI.subject == subject))
    ).first()
    return _person(row) if row else None


def identity_holder(conn: Connection, issuer: str, subject: str) -> str | None:
    row = conn.execute(select(PI.person).where(and_(PI.issuer == issuer, PI.subject == subject))).first()
    return str(row[0]) if row else None


def put_person(
    conn: Connection,
    name: str,
    *,
    display_name: str,
    roles: frozenset[Role],
    identities: tuple[PersonIdentity, ...],
    disabled: bool,
    now: datetime,
) -> bool:
    values = {
        "display_name": display_name,
        "roles": sorted(r.value for r in roles),
        "identities": [i.to_dict() for i in identities],
        "disabled": disabled,
        "updated_at": now,
    }
    created = conn.execute(select(P.name).where(P.name == name)).first() is None
    if created:
        conn.execute(insert(t.people).values(name=name, created_at=now, **values))
    else:
        conn.execute(update(t.people).where(P.name == name).values(**values))
    conn.execute(delete(t.person_identities).where(PI.person == name))
    for i in identities:
        conn.execute(insert(t.person_identities).values(issuer=i.issuer, subject=i.subject, person=name))
    return created


def delete_person(conn: Connection, name: str, now: datetime) -> bool:
    """The person, their identities; their tokens stay listed, revoked."""
    conn.execute(delete(t.person_identities).where(PI.person == name))
    conn.execute(update(t.person_tokens).where(and_(PT.person == name, PT.revoked_at.is_(None))).values(revoked_at=now))
    return bool(conn.execute(delete(t.people).where(P.name == name)).rowcount)


# -- tokens -------------------------------------------------------------------------------------------
def _token(row: Any) -> PersonToken:
    m = row._mapping
    return PersonToken(
        token_id=TokenId(m["token_id"]),
        person=PersonName(m["person"]),
        description=m["description"],
        created_at=aware_ts(m["created_at"]),
        created_by=m["created_by"],
        expires_at=aware_ts(m["expires_at"]),
        revoked_at=aware_opt(m["revoked_at"]),
        last_used_at=aware_opt(m["last_used_at"]),
    )


def insert_token(conn: Connection, token: PersonToken, *, salt: str, secret_hmac: str) -> None:
    conn.execute(
        insert(t.person_tokens).values(
            token_id=token.token_id,
            person=token.person,
            salt=salt,
            secret_hmac=secret_hmac,
            description=token.description,
            created_by=token.created_by,
            created_at=token.created_at,
            expires_at=token.expires_at,
        )
    )


def token_with_hash(conn: Connection, token_id: str) -> tuple[PersonToken, str, str] | None:
    row = conn.execute(select(t.person_tokens).where(PT.token_id == token_id)).first()
    if row is None:
        return None
    return _token(row), str(row._mapping["salt"]), str(row._mapping["secret_hmac"])


def get_token(conn: Connection, token_id: str) -> PersonToken | None:
    found = token_with_hash(conn, token_id)
    return found[0] if found else None


def list_tokens(conn: Connection, person: str) -> list[PersonToken]:
    rows = conn.execute(select(t.person_tokens).where(PT.person == person).order_by(PT.created_at))
    return [_token(r) for r in rows]


def revoke_token(conn: Connection, token_id: str, now: datetime) -> bool:
    res = conn.execute(
        update(t.person_tokens).where(and_(PT.token_id == token_id, PT.revoked_at.is_(None))).values(revoked_at=now)
    )
    return res.rowcount == 1


def touch_token(conn: Connection, token_id: str, now: datetime) -> None:
    conn.execute(update(t.person_tokens).where(PT.token_id == token_id).values(last_used_at=now))


# -- console sessions --------------------------------------------------------------------------------
def insert_session(conn: Connection, session: StoredSession) -> None:
    conn.execute(
        insert(t.console_sessions).values(
            id_hash=session.id_hash,
            person=session.person,
            issuer=session.identity.issuer,
            subject=session.identity.subject,
            created_at=session.created_at,
            last_seen_at=session.last_seen_at,
            expires_at=session.expires_at,
            ended_at=session.ended_at,
        )
    )


def get_session(conn: Connection, id_hash: str) -> StoredSession | None:
    row = conn.execute(select(t.console_sessions).where(CS.id_hash == id_hash)).first()
    if row is None:
        return None
    m = row._mapping
    return StoredSession(
        id_hash=m["id_hash"],
        person=PersonName(m["person"]),
        identity=PersonIdentity(m["issuer"], m["subject"]),
        created_at=aware_ts(m["created_at"]),
        last_seen_at=aware_ts(m["last_seen_at"]),
        expires_at=aware_ts(m["expires_at"]),
        ended_at=aware_opt(m["ended_at"]),
    )


def touch_session(conn: Connection, id_hash: str, now: datetime) -> None:
    conn.execute(update(t.console_sessions).where(CS.id_hash == id_hash).values(last_seen_at=now))


def end_session(conn: Connection, id_hash: str, now: datetime) -> bool:
    """True when this call ended it (it was not ended before)."""
    done = conn.execute(
        update(t.console_sessions).where(and_(CS.id_hash == id_hash, CS.ended_at.is_(None))).values(ended_at=now)
    )
    return bool(done.rowcount)


def purge_sessions(conn: Connection, expired_before: datetime) -> None:
    conn.execute(delete(t.console_sessions).where(CS.expires_at < expired_before))
