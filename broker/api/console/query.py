"""What the read-only pages share: query filters validated with the field named (a ``422`` page),
keyset pages, refusals shown as pages, the request's container."""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Final, TypeVar

from fastapi import Request

from broker.api.console.session import error_of
from broker.container import Container
from broker.errors import BrokerError, InvalidInput
from broker.people.sessions import ConsoleSession

MAX_PAGE: Final = 200
NAME: Final = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")
E = TypeVar("E", bound=enum.StrEnum)
T = TypeVar("T")
C = TypeVar("C")


def checked(field: str, value: str | None, pattern: re.Pattern[str], allowed: str) -> str | None:
    """``value`` when it matches (None when empty), else 422 naming the field and what is allowed."""
    if value is None or value == "":
        return None
    if not pattern.fullmatch(value):
        raise InvalidInput(field, f"{value[:80]!r} is not allowed: {allowed}")
    return value


def member(field: str, value: str | None, kind: type[E]) -> E | None:
    """``value`` as a member of ``kind`` (None when empty), or 422 naming the field and what is allowed."""
    if not value:
        return None
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(m.value for m in kind)
        raise InvalidInput(field, f"{value[:80]!r} is not allowed: one of {allowed}") from None


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput("limit", f"{limit} is not allowed: between 1 and {MAX_PAGE}")
    return limit


def keyset(rows: Sequence[T], limit: int, cursor: Callable[[T], C]) -> tuple[tuple[T, ...], C | None]:
    """A page from ``limit + 1`` rows read: the first ``limit``, and the cursor of the last one
    when there are more."""
    items = tuple(rows[:limit])
    return items, cursor(items[-1]) if len(rows) > limit else None


def container(request: Request) -> Container:
    c: Container = request.app.state.container
    return c


@contextmanager
def refusals_as_pages(session: ConsoleSession) -> Iterator[None]:
    """A service's refusal (422 bad filter, 404 unknown id) as a console page with its status."""
    try:
        yield
    except BrokerError as exc:
        raise error_of(exc, session) from None
