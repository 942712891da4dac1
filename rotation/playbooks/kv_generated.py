"""``kv_generated``: a value the broker generates itself (password, API key) kept in OpenBao KV.

Settings: ``{"generator": {"format": "password"|"api_key"|"hex"|"base64url", "length"?, "prefix"?},
"field"?: "value"}`` — consumers read ``field`` of the KV entry.

create = generate; verify = the staged copy reads back from OpenBao with the same fingerprint and
the generator's format; retire = nothing outside KV (old KV versions are destroyed by the common
retire step). Where the value is also checked elsewhere (an upstream API), that system must accept
the new value from KV: the overlap window is the time it has to pick it up.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from broker.errors import InvalidInput
from broker.secrets import Fingerprinter, constant_time_equals
from rotation import generators
from rotation.kv import STAGING_PREFIX, OpenBaoKV
from rotation.playbooks.base import CurrentValue, Kind, ManagedSecret, NewValue, VerifyFailed

FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")


class KvGeneratedPlaybook:
    kind = Kind.KV_GENERATED
    stores_in_kv = True
    old_dies_at_create = False
    public_fields: frozenset[str] = frozenset()

    def __init__(self, kv: OpenBaoKV, fingerprint: Fingerprinter) -> None:
        self.kv = kv
        self.fingerprint = fingerprint

    def validate(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        unknown = set(settings) - {"generator", "field"}
        if unknown:
            raise InvalidInput(f"settings.{sorted(unknown)[0]}", "unknown key; allowed: generator, field")
        field = settings.get("field", "value")
        if not isinstance(field, str) or not FIELD.match(field):
            raise InvalidInput("settings.field", "must be a KV field name: letters, digits, _ . -")
        return {"generator": generators.parse_spec(settings.get("generator")).to_dict(), "field": field}

    def create(self, secret: ManagedSecret) -> NewValue:
        spec = generators.parse_spec(secret.settings.get("generator"))
        return NewValue(
            fields={str(secret.settings.get("field", "value")): generators.generate(spec)},
            ref={"generator": spec.format},
        )

    def verify(self, secret: ManagedSecret, new: NewValue, old: CurrentValue | None) -> dict[str, Any]:
        staged = self.kv.read(secret.kv_mount or "", f"{STAGING_PREFIX}/{secret.name}")
        field = str(secret.settings.get("field", "value"))
        value = staged.fields.get(field) if staged else None
        if value is None or not constant_time_equals(value, new.fields[field]):
            raise VerifyFailed("the staged value did not read back from OpenBao unchanged")
        if not generators.matches(generators.parse_spec(secret.settings.get("generator")), value):
            raise VerifyFailed("the new value does not match the generator's format")
        differs = old is None or old.fields.get(field) is None or not constant_time_equals(old.fields[field], value)
        if not differs:
            raise VerifyFailed("the new value equals the current one")
        return {
            "read_back": True,
            "format": True,
            "differs_from_current": True,
            "fingerprint": self.fingerprint(value),
        }

    def undo(self, secret: ManagedSecret, new: NewValue) -> dict[str, Any]:
        return {}

    def adopt_ref(self, old: CurrentValue) -> dict[str, Any]:
        return {}

    def retire(self, secret: ManagedSecret, previous_ref: Mapping[str, Any]) -> dict[str, Any]:
        return {}
