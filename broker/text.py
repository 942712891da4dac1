"""Characters no identifier or stored free text may hold.

NUL truncates strings in C libraries and PostgreSQL refuses it; other C0/C1 controls and DEL
rewrite terminals and logs; bidirectional overrides and isolates (U+202A-U+202E, U+2066-U+2069)
and invisible marks make ``evil\u202egnp.exe`` read as something else in a console, an audit
export or a code review. Identifiers refuse all of them, and line breaks and tabs too; free text
(a purpose, a description, a reason) may hold ``\\t``, ``\\n`` and ``\\r``. Standard library only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

_INVISIBLE: Final = "\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff\ufff9-\ufffb"
_FREE_TEXT_BAD: Final = re.compile(f"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f{_INVISIBLE}]")
_IDENTIFIER_BAD: Final = re.compile(f"[\x00-\x1f\x7f-\x9f{_INVISIBLE}]")
FREE_TEXT_FIELDS: Final = frozenset({"description", "purpose", "reason", "note"})


def bad_character(value: str, *, free_text: bool = False) -> str | None:
    """A description of the first refused character in ``value`` (``"U+202E"``), or ``None``."""
    found = (_FREE_TEXT_BAD if free_text else _IDENTIFIER_BAD).search(value)
    return None if found is None else f"U+{ord(found.group()):04X}"


def first_bad(value: object, *, free_text: bool = False, depth: int = 0) -> str | None:
    """:func:`bad_character` over a string, or every key and string inside lists and mappings."""
    if isinstance(value, str):
        return bad_character(value, free_text=free_text)
    if depth > 16:
        return None
    if isinstance(value, Mapping):
        for k, v in value.items():
            found = first_bad(k, depth=depth + 1) or first_bad(v, free_text=free_text, depth=depth + 1)
            if found:
                return found
    elif isinstance(value, list | tuple):
        for v in value:
            found = first_bad(v, free_text=free_text, depth=depth + 1)
            if found:
                return found
    return None


def visible(value: str) -> str:
    """``value`` for display: every control, invisible or bidirectional-override character (tab and
    line breaks excepted) shown as its code point, ``[U+202E]``, so stored text cannot reorder or
    hide what a person reads (input refuses them; this covers rows written before that check)."""
    return _FREE_TEXT_BAD.sub(lambda m: f"[U+{ord(m.group()):04X}]", value)


def message(code_point: str, *, free_text: bool) -> str:
    allowed = "tab and line breaks are allowed" if free_text else "no line breaks or tabs either"
    return f"must not contain control, invisible or bidirectional-override characters ({code_point}); {allowed}"
