"""The broker's error tree.

Every message is safe to show to the caller: it names fields and allowed values, never a
secret. The API maps the tree to HTTP in one handler; the CLI catches ``BrokerError`` once.

    BrokerError                      500  root; message always safe to show
    ├── InvalidInput                 422  bad input; ``field`` names what was wrong
    ├── Unauthenticated              401  identity could not be established
    ├── Denied                       403  a decision said no (carries the decision)
    ├── NotFound                     404
    ├── Conflict                     409  e.g. task ended or quarantined
    ├── UpstreamError                502  a backend answered with an error
    └── UpstreamUnavailable          503  a backend could not be reached (never a guess)
"""

from __future__ import annotations

from typing import Any


class BrokerError(Exception):
    status_code = 500
    code = "internal_error"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        body.update(self.details)
        return body


class InvalidInput(BrokerError):
    status_code = 422
    code = "invalid_input"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}", details={"field": field})
        self.field = field


class Unauthenticated(BrokerError):
    status_code = 401
    code = "unauthenticated"


class Denied(BrokerError):
    status_code = 403
    code = "denied"


class NotFound(BrokerError):
    status_code = 404
    code = "not_found"


class Conflict(BrokerError):
    status_code = 409
    code = "conflict"


class UpstreamError(BrokerError):
    status_code = 502
    code = "upstream_error"


class UpstreamUnavailable(BrokerError):
    status_code = 503
    code = "upstream_unavailable"
