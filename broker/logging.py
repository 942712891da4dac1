"""Structured logs (structlog) that never carry a secret.

JSON outside dev; the API's request middleware binds ``request_id`` and the path's ``task_id``
through structlog's contextvars (``merge_contextvars`` below), so every line of a request carries
them; :meth:`broker.services.tasks.TaskService.open_task` binds the id of the task it creates.
The redaction processor masks ``Secret`` values anywhere in an event and the values of keys that look secret-bearing.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from broker.secrets import MASK, Secret

SECRET_KEY = re.compile(
    r"(token|secret|password|passwd|authorization|x-vault-token|api[_-]?key|private|credential)", re.IGNORECASE
)
# keys that contain a secret-looking word but carry no secret
SAFE_KEYS = frozenset({"token_accessor", "accessor", "fingerprint", "fingerprints", "token_type", "secret_kind"})


def _redact(value: Any, depth: int = 0) -> Any:
    if isinstance(value, Secret):
        return MASK
    if depth > 6:
        return value
    if isinstance(value, dict):
        return {
            k: (MASK if _secret_key(k) and v not in (None, "") else _redact(v, depth + 1)) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact(v, depth + 1) for v in value]
    return value


def _secret_key(key: object) -> bool:
    return isinstance(key, str) and key not in SAFE_KEYS and bool(SECRET_KEY.search(key))


def redact_processor(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> dict[str, Any]:
    return {k: (MASK if _secret_key(k) and v not in (None, "") else _redact(v)) for k, v in event_dict.items()}


class _Stderr:
    """Looks ``sys.stderr`` up at write time, so a replaced stream (tests, daemons) is honoured."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


# HTTP and AWS libraries log request and response bodies at DEBUG (botocore: "Response body:"),
# which would put an upstream's answer, or a credential in a request, into the broker's logs
QUIET_LIBRARIES = ("botocore", "boto3", "s3transfer", "urllib3", "httpx", "httpcore", "hvac")


def quiet_libraries() -> None:
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)


def configure_logging(fmt: str = "json", level: str = "INFO") -> None:
    quiet_libraries()
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        # plain tracebacks: rich's would print local variables (a secret in a frame would
        # reach the log) and take seconds to render for a deep stack
        else structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_processor,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=_Stderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
    quiet_http_clients()


def quiet_http_clients() -> None:
    """httpx logs every request URL at INFO; a gateway URL may carry a credential in its query
    (``http_api`` auth ``query``), so those loggers only ever say WARNING and above."""
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)


def get_logger(name: str = "nhi-broker") -> Any:
    return structlog.get_logger(name)
