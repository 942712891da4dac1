"""A small client of the broker's admin API (docs/api.md).

Every failure becomes :class:`ApiError` with a message that is safe to show: it names the
endpoint, the HTTP status and the broker's own error message and field, never the admin token
or a request body.
"""

from __future__ import annotations

from typing import Any

import httpx

TIMEOUT = httpx.Timeout(15.0, connect=5.0)


class ApiError(Exception):
    """The broker answered with an error, or could not be reached (``status`` 0)."""

    def __init__(self, status: int, message: str, field: str | None = None, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.code = code


class BrokerClient:
    def __init__(self, endpoint: str, admin_token: str) -> None:
        self.endpoint = endpoint.rstrip("/")
        self._http = httpx.Client(
            base_url=self.endpoint,
            timeout=TIMEOUT,
            headers={"Authorization": f"Bearer {admin_token}", "User-Agent": "terraform-provider-nhibroker"},
        )

    # -- plumbing ------------------------------------------------------------------------
    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        try:
            response = self._http.request(method, path, json=body)
        except httpx.TimeoutException as exc:
            raise ApiError(0, f"nhi-broker at {self.endpoint} did not answer {method} {path} in time") from exc
        except httpx.HTTPError as exc:
            raise ApiError(0, f"cannot reach nhi-broker at {self.endpoint}: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 400:
            raise _error_from(response, method, path)
        return response

    def close(self) -> None:
        self._http.close()

    # -- admin API -----------------------------------------------------------------------
    def get(self, collection: str, name: str) -> dict[str, Any] | None:
        """The object, or ``None`` when the broker says 404."""
        try:
            body: dict[str, Any] = self._request("GET", f"/v1/admin/{collection}/{name}").json()
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return body

    def put(self, collection: str, name: str, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create or replace; returns the stored object and whether it was created (201)."""
        response = self._request("PUT", f"/v1/admin/{collection}/{name}", body)
        return response.json(), response.status_code == 201

    def delete(self, collection: str, name: str) -> bool:
        """Delete; ``False`` when it was already gone."""
        try:
            self._request("DELETE", f"/v1/admin/{collection}/{name}")
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def policy_bundle(self) -> dict[str, Any]:
        body: dict[str, Any] = self._request("GET", "/v1/admin/policies").json()
        return body

    def check(self) -> None:
        """Reach the broker and prove the admin token (an admin read that changes nothing)."""
        self.policy_bundle()


def _error_from(response: httpx.Response, method: str, path: str) -> ApiError:
    code, message, field = "", "", None
    try:
        err = response.json().get("error") or {}
        code = str(err.get("code") or "")
        message = str(err.get("message") or "")
        field = err.get("field") or None
    except (ValueError, AttributeError):
        pass
    if response.status_code == 401:
        return ApiError(
            401,
            "the admin token was rejected by nhi-broker (HTTP 401); check admin_token or NHI_BROKER_ADMIN_TOKEN",
            "admin_token",
            code,
        )
    if not message:
        message = f"HTTP {response.status_code} from {method} {path}"
    return ApiError(response.status_code, message, field, code)
