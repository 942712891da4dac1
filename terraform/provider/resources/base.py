# mypy: disallow-subclassing-any=False
"""Shared lifecycle of every broker object managed by name (docs/api.md, admin API).

- create: refuse to adopt an object that already exists (import it instead), then ``PUT``;
- read: ``GET``; a 404 means the object was deleted outside Terraform, so the next plan
  creates it again; any other difference shows as drift on the attribute;
- update: ``PUT`` again (the API replaces the record in place); ``name`` forces a replacement;
- delete: ``DELETE`` (already gone is fine);
- import: by name.

Each resource type says how its state maps to the API body (``to_body``) and back
(``from_body``). Broker errors become diagnostics on the attribute the broker named.
"""

from __future__ import annotations

import re
from abc import abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

from tf.iface import (
    Config,
    CreateContext,
    DeleteContext,
    ImportContext,
    ReadContext,
    Resource,
    State,
    UpdateContext,
)
from tf.types import Unknown
from tf.utils import Diagnostics

from terraform.provider.client import ApiError, BrokerClient
from terraform.provider.schema_util import report

if TYPE_CHECKING:
    from terraform.provider.provider import NhiBrokerProvider

NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")


def check_enum(diags: Diagnostics, config: Config, key: str, allowed: list[str], path: list[Any] | None = None) -> None:
    value = config.get(key)
    if value is None or value is Unknown:
        return
    if value not in allowed:
        diags.add_error(f'invalid {key} "{value}"', f"{key} must be one of: {', '.join(allowed)}", path=path or [key])


class BrokerResource(Resource):
    suffix: ClassVar[str]  # nhibroker_<suffix>
    collection: ClassVar[str]  # /v1/admin/<collection>
    noun: ClassVar[str]  # what the docs call it
    renames: ClassVar[dict[str, str]] = {}  # API field -> schema name
    sets: ClassVar[frozenset[str]] = frozenset()  # schema names a diagnostic path stops at (sets, JSON)

    def __init__(self, provider: NhiBrokerProvider) -> None:
        self.provider = provider

    @classmethod
    def get_name(cls) -> str:
        return cls.suffix

    # -- mapping -------------------------------------------------------------------------
    @abstractmethod
    def to_body(self, state: State) -> dict[str, Any]:
        """State (planned) -> the ``PUT`` body."""

    @abstractmethod
    def from_body(self, body: dict[str, Any], prior: State | None) -> State:
        """The broker's object -> state. ``prior`` is the state or plan it replaces (``None`` on
        import), used only to keep Terraform's spelling of values the broker treats as equal."""

    def validate(self, diags: Diagnostics, type_name: str, config: Config) -> None:
        Resource.validate(self, diags, type_name, config)
        name = config.get("name")
        if isinstance(name, str) and not NAME.match(name):
            diags.add_error(
                f'invalid name "{name}"',
                "name must be 1-128 characters of a-z, 0-9, '.', '_', '-', starting with a letter or digit",
                path=["name"],
            )

    # -- helpers -------------------------------------------------------------------------
    def _client(self, diags: Diagnostics) -> BrokerClient | None:
        client = self.provider.client
        if client is None:
            diags.add_error(
                "the nhibroker provider is not configured",
                "set endpoint and admin_token in the provider block, or NHI_BROKER_ADDR "
                "and NHI_BROKER_ADMIN_TOKEN in the environment",
            )
        return client

    def _what(self, name: Any) -> str:
        return f'{self.noun} "{name}"'

    def _report(self, diags: Diagnostics, name: Any, exc: ApiError) -> None:
        report(diags, self._what(name), exc, self.renames, self.sets)

    # -- lifecycle -----------------------------------------------------------------------
    def create(self, ctx: CreateContext, planned: State) -> State | None:
        client = self._client(ctx.diagnostics)
        if client is None:
            return None
        name = planned["name"]
        try:
            if client.get(self.collection, name) is not None:
                ctx.diagnostics.add_error(
                    f"{self._what(name)} already exists in nhi-broker",
                    f"Terraform will not adopt an existing {self.noun} silently. Bring it under Terraform "
                    f"with: terraform import <address of this nhibroker_{self.suffix}> {name}",
                    path=["name"],
                )
                return None
            body, _ = client.put(self.collection, name, self.to_body(planned))
        except ApiError as exc:
            self._report(ctx.diagnostics, name, exc)
            return None
        return self.from_body(body, planned)

    def read(self, ctx: ReadContext, current: State) -> State | None:
        client = self._client(ctx.diagnostics)
        if client is None:
            return current
        try:
            body = client.get(self.collection, current["name"])
        except ApiError as exc:
            self._report(ctx.diagnostics, current["name"], exc)
            return current
        if body is None:
            return None  # deleted outside Terraform: the next plan creates it again
        return self.from_body(body, current)

    def update(self, ctx: UpdateContext, current: State, planned: State) -> State | None:
        client = self._client(ctx.diagnostics)
        if client is None:
            return current
        try:
            body, _ = client.put(self.collection, planned["name"], self.to_body(planned))
        except ApiError as exc:
            self._report(ctx.diagnostics, planned["name"], exc)
            return current
        return self.from_body(body, planned)

    def delete(self, ctx: DeleteContext, current: State) -> None:
        client = self._client(ctx.diagnostics)
        if client is None:
            return
        try:
            client.delete(self.collection, current["name"])
        except ApiError as exc:
            self._report(ctx.diagnostics, current["name"], exc)

    def import_(self, ctx: ImportContext, id: str) -> State | None:
        client = self._client(ctx.diagnostics)
        if client is None:
            return None
        try:
            body = client.get(self.collection, id)
        except ApiError as exc:
            self._report(ctx.diagnostics, id, exc)
            return None
        if body is None:
            ctx.diagnostics.add_error(
                f"cannot import {self._what(id)}: it does not exist in nhi-broker",
                f"import takes the {self.noun}'s name",
            )
            return None
        return self.from_body(body, None)


def keep_spelling(value: Any, prior_value: Any) -> Any:
    """An empty collection from the broker where the configuration left the value out (null)
    is the same thing; keep null so no plan shows a change from null to empty."""
    if prior_value is None and value in ({}, [], ""):
        return None
    return value


def known(value: Any, default: Any) -> Any:
    """``value`` unless it is null or not yet known."""
    return default if value is None or value is Unknown else value
