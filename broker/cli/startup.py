"""Start-up errors of ``nhi-broker serve``: one line naming the setting, exit 2, no traceback.

A bad YAML file, a missing or invalid setting, an unreachable database or OpenBao all stop
start-up the same way::

    error: /etc/nhi/broker.yaml: openbao.token: is missing or a placeholder ...

``--debug`` prints the traceback as well. Values are never echoed (a setting may be a secret);
messages name the setting and, for the database, its host, port and database name only.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import typer
import yaml
from pydantic import ValidationError

from broker.config import Settings
from broker.errors import BrokerError

EXIT_STARTUP = 2


class StartupError(BrokerError):
    """The broker cannot start; the message names the setting (or file) at fault."""


def _loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc)


def explain_validation(exc: ValidationError, source: str) -> StartupError:
    errors = exc.errors(include_input=False, include_url=False)
    first = errors[0] if errors else {"loc": (), "msg": "invalid settings"}
    msg = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    where = _loc(tuple(first.get("loc", ())))
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return StartupError(f"{source}: {where + ': ' if where else ''}{msg}{more}")


def load_settings_file(config: Path) -> Settings:
    """Settings from a YAML file plus ``NHI_BROKER_*`` environment, or a :class:`StartupError`."""
    if not config.is_file():
        raise StartupError(f"--config: {config} is not a file")
    try:
        raw = yaml.safe_load(config.read_text())
    except OSError as exc:
        raise StartupError(f"--config: cannot read {config} ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise StartupError(f"{config}: not valid YAML{at}: {problem}") from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise StartupError(f"{config}: must be a YAML mapping of settings (see docs/operations.md)")
    try:
        return Settings(**raw)
    except ValidationError as exc:
        raise explain_validation(exc, str(config)) from exc


def _database_target(url: str) -> str:
    try:
        # deferred: every command module loads at CLI start; `scan`/`--version` must start fast
        from sqlalchemy.engine import make_url

        u = make_url(url)
        return f"{u.host or 'localhost'}:{u.port or 5432}/{u.database or ''}" if u.host else (u.database or url)
    except Exception:  # an unparsable URL: name the setting only
        return "the configured URL"


@contextmanager
def translate_build_errors(settings: Settings) -> Iterator[None]:
    """Around building the container: library errors become a :class:`StartupError`."""
    # deferred: every command module loads at CLI start; `scan`/`--version` must start fast
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    try:
        yield
    except StartupError:
        raise
    except ArgumentError as exc:
        raise StartupError("database_url: not a usable database URL") from exc
    except SQLAlchemyError as exc:
        target = _database_target(settings.resolved_database_url())
        raise StartupError(
            f"database_url: cannot use the database at {target} ({type(exc).__name__}: "
            f"{_first_line(getattr(exc, 'orig', None) or exc)})"
        ) from exc
    except BrokerError as exc:
        raise StartupError(_name_setting(exc.message)) from exc
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        raise StartupError(f"data_dir:{where} {exc.strerror or type(exc).__name__}") from exc


def _name_setting(message: str) -> str:
    """Prefix an adapter's (safe) message with the setting to look at."""
    if "OpenBao" in message:
        setting = "openbao.token" if "permission denied" in message else "openbao.addr"
        return f"{setting}: {message}"
    if "policy" in message.lower() or "bundle" in message.lower():
        return f"policy_dir: {message}"
    return message


def _first_line(exc: BaseException) -> str:
    # database driver messages name host, port, database and user, never a password
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line[:200]


@contextmanager
def startup_errors(debug: bool) -> Iterator[None]:
    """The CLI boundary of ``serve``: a start-up error prints one line and exits 2."""
    try:
        yield
    except BrokerError as exc:
        _fail(exc.message, debug)
    except OSError as exc:
        _fail(f"{exc.filename or 'start-up'}: {exc.strerror or type(exc).__name__}", debug)


def _fail(message: str, debug: bool) -> NoReturn:
    if debug:
        traceback.print_exc(file=sys.stderr)
    hint = "" if debug else " (--debug shows the traceback)"
    typer.echo(f"error: {message}{hint}", err=True)
    raise typer.Exit(EXIT_STARTUP)
