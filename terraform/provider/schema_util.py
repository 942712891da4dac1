# mypy: disallow-subclassing-any=False
"""What the ``tf`` package lacks, kept small: a single nested block, an object type for
computed attributes, and broker errors turned into diagnostics on the right attribute."""

from __future__ import annotations

import json
import re
from typing import Any

from tf.provider import _decode_state, _encode_state_d
from tf.schema import Block, NestedBlock, NestMode
from tf.types import TfType, Unknown
from tf.utils import Diagnostics

from terraform.provider.client import ApiError


class SingleNestedBlock(NestedBlock):
    """``vault { ... }``: at most one block, an object or null in state."""

    def __init__(self, type_name: str, block: Block) -> None:
        super().__init__(type_name, NestMode.Single, block)

    def encode(self, value: Any) -> Any:
        if value is None or value is Unknown:
            return value
        full = {a.name: value.get(a.name) for a in self.block.attributes}
        return _encode_state_d(self._amap(), self._bmap(), full, None)

    def decode(self, value: Any) -> Any:
        if value is None or value is Unknown:
            return value
        return _decode_state(Diagnostics(), self._amap(), self._bmap(), value)[1]

    def semantically_equal(self, a_decoded: Any, b_decoded: Any) -> bool:
        if a_decoded is None or b_decoded is None or a_decoded is Unknown or b_decoded is Unknown:
            return a_decoded is b_decoded
        for attr in self.block.attributes:
            a, b = a_decoded.get(attr.name), b_decoded.get(attr.name)
            if a is None or b is None or a is Unknown or b is Unknown:
                if a is not b:
                    return False
            elif not attr.type.semantically_equal(a, b):
                return False
        return True


class Object(TfType):
    """An object type with fixed attributes, for computed attributes of data sources."""

    def __init__(self, fields: dict[str, TfType]) -> None:
        self.fields = fields

    def encode(self, value: Any) -> Any:
        if value is None or value is Unknown:
            return value
        return {k: t.encode(value.get(k)) for k, t in self.fields.items()}

    def decode(self, value: Any) -> Any:
        if value is None or value is Unknown:
            return value
        return {k: t.decode(value.get(k)) for k, t in self.fields.items()}

    def tf_type(self) -> bytes:
        inner = ",".join(f"{json.dumps(k)}:{t.tf_type().decode()}" for k, t in self.fields.items())
        return f'["object",{{{inner}}}]'.encode()


_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def attribute_path(field: str | None, renames: dict[str, str], sets: frozenset[str]) -> list[Any] | None:
    """Broker field (``identities[0].issuer``, ``vault.policies``) -> Terraform attribute path.

    ``renames`` maps API names to schema names (``identities`` -> ``identity``); a dotted key
    renames a whole field (``kv.mount`` -> ``kv_mount``). Elements of a set have no index in
    Terraform and a JSON string has no attributes, so the path stops at any name in ``sets``."""
    if not field:
        return None
    for api, schema in renames.items():
        if "." in api and (field == api or field.startswith(api + ".")):
            field = schema + field[len(api) :]
            break
    path: list[Any] = []
    for name, index in _STEP.findall(field):
        if index:
            break  # lists in this provider are sets: point at the attribute
        path.append(renames.get(name, name) if not path else name)
        if path[-1] in sets:
            break
    return path or None


def report(
    diags: Diagnostics,
    what: str,
    exc: ApiError,
    renames: dict[str, str] | None = None,
    sets: frozenset[str] = frozenset(),
) -> None:
    """Add the broker's error as a Terraform diagnostic, on the attribute it names."""
    if exc.status == 0:
        diags.add_error(f"{what}: nhi-broker is unreachable", exc.message)
        return
    if exc.status == 401:
        diags.add_error(f"{what}: admin token rejected", exc.message)
        return
    path = attribute_path(exc.field, renames or {}, sets) if exc.status in (400, 409, 422) else None
    summary = f"{what}: nhi-broker rejected the request (HTTP {exc.status})"
    diags.add_error(summary, exc.message, path=path)
