"""Generators: formats, lengths, validation messages (pure logic)."""

from __future__ import annotations

import pytest

from broker.errors import InvalidInput
from broker.secrets import Secret
from rotation import generators

SPECS = [
    ({"format": "password", "length": 24}, r"^[A-Za-z0-9!#%+\-.:=?@^_~]{24}$"),
    ({"format": "api_key", "prefix": "sk_live_", "length": 40}, r"^sk_live_[A-Za-z0-9]{40}$"),
    ({"format": "hex", "length": 64}, r"^[0-9a-f]{64}$"),
    ({"format": "base64url", "length": 43}, r"^[A-Za-z0-9_-]{43}$"),
    (None, r"^.{32}$"),
]


@pytest.mark.parametrize(("spec", "pattern"), SPECS)
def test_generated_value_has_the_spec_format_and_hides_itself(spec: dict | None, pattern: str) -> None:
    parsed = generators.parse_spec(spec)
    values = {generators.generate(parsed).reveal() for _ in range(20)}
    assert len(values) == 20
    for v in values:
        assert __import__("re").match(pattern, v)
        assert generators.matches(parsed, Secret(v))
    assert str(generators.generate(parsed)) == "**********"


def test_password_generator_always_includes_every_character_class() -> None:
    spec = generators.parse_spec({"format": "password", "length": 16})
    for _ in range(200):
        v = generators.generate(spec).reveal()
        assert any(c.islower() for c in v) and any(c.isupper() for c in v) and any(c.isdigit() for c in v)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"format": "uuid"}, r'settings\.generator\.format: "uuid" is not one of'),
        (
            {"format": "hex", "length": 8},
            r"settings\.generator\.length: must be an integer between 32 and 256",
        ),
        (
            {"format": "password", "prefix": "x_"},
            r"settings\.generator\.prefix: is allowed only with format api_key",
        ),
        ({"format": "api_key", "prefix": "bad prefix"}, r"settings\.generator\.prefix: must be at most 32"),
        ({"format": "hex", "colour": "red"}, r"settings\.generator\.colour: unknown key"),
        ("password", r"settings\.generator: must be an object"),
    ],
)
def test_invalid_generator_spec_is_refused_naming_the_field(spec: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        generators.parse_spec(spec)


def test_value_of_another_format_does_not_match() -> None:
    spec = generators.parse_spec({"format": "api_key", "prefix": "sk_", "length": 30})
    assert not generators.matches(spec, Secret("pk_" + "a" * 30))
    assert not generators.matches(spec, Secret("sk_" + "a" * 29))
