"""Cedar source handling: split files into statements, locate errors by line, read annotations.

cedarpy reports parse errors without a position (``unexpected token `}```), so the loader finds
the line itself: it splits a file into top-level statements (``;`` outside strings and
comments), finds the first statement that fails, then the first prefix of that statement that
fails with the same message. Errors are rare and files small, so this costs nothing that matters.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import cedarpy

from broker.models import Action, Consequence

_EOF = "end of input"


@dataclass(frozen=True, slots=True)
class Statement:
    text: str
    line: int  # 1-based line of the first character that is not blank or comment


def split_statements(text: str) -> list[Statement]:
    """Top-level ``;``-terminated statements, with their start lines. A trailing piece without
    ``;`` is returned too (the parser will say what is wrong with it)."""
    out: list[Statement] = []
    buf: list[str] = []
    line, start = 1, None
    i, n = 0, len(text)
    in_string = False
    while i < n:
        ch = text[i]
        if in_string:
            buf.append(ch)
            if ch == "\\" and i + 1 < n:
                buf.append(text[i + 1])
                line += text[i + 1] == "\n"
                i += 1
            elif ch == '"':
                in_string = False
        elif ch == "/" and text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            buf.append(text[i:end])
            i = end
            continue
        else:
            if start is None and not ch.isspace():
                start = line
            buf.append(ch)
            if ch == '"':
                in_string = True
            elif ch == ";":
                out.append(Statement("".join(buf), start or line))
                buf, start = [], None
        line += ch == "\n"
        i += 1
    if start is not None:
        out.append(Statement("".join(buf), start))
    return out


def error_line(text: str, parse: Callable[[str], object], first_line: int = 1) -> int | None:
    """The line at which ``parse`` first fails the way it fails on the whole ``text``."""
    try:
        parse(text)
        return None
    except ValueError as exc:
        message = str(exc)
    lines = text.split("\n")
    if _EOF in message:  # the text stops too early: blame its last non-blank line
        last = max((k for k, ln in enumerate(lines) if ln.strip() and not ln.strip().startswith("//")), default=0)
        return first_line + last
    for k in range(1, len(lines) + 1):
        try:
            parse("\n".join(lines[:k]))
        except ValueError as exc:
            if str(exc) == message:
                return first_line + k - 1
    return None


def policy_syntax_error(text: str) -> tuple[int | None, str] | None:
    """``(line, message)`` of the first syntax error in a policy file, or None if it parses."""
    try:
        cedarpy.policies_to_json_str(text)
        return None
    except ValueError as exc:
        whole = str(exc)
    for st in split_statements(text):
        if not _blank(st.text):
            try:
                cedarpy.policies_to_json_str(st.text)
            except ValueError as exc:
                # the statement's own text begins with the previous statement's trailing newline(s)
                offset = st.line - _leading_lines(st.text)
                return error_line(st.text, cedarpy.policies_to_json_str, offset), str(exc)
    return error_line(text, cedarpy.policies_to_json_str), whole


def policy_statements(text: str) -> list[Statement]:
    """The non-empty statements of a policy file, in the order Cedar numbers them (policy0, ...)."""
    return [st for st in split_statements(text) if not _blank(st.text)]


def _blank(text: str) -> bool:
    return all(not ln.strip() or ln.strip().startswith("//") for ln in text.split("\n"))


def _leading_lines(text: str) -> int:
    """How many lines the statement's text starts before its first real character (0-based)."""
    count = 0
    for ln in text.split("\n"):
        if ln.strip() and not ln.strip().startswith("//"):
            return count
        count += 1
    return count


def parse_policy_file(text: str) -> dict[str, Any]:
    """Cedar's JSON (EST) form of a policy file: ``{"staticPolicies": {"policy0": ...}, ...}``."""
    est: dict[str, Any] = json.loads(cedarpy.policies_to_json_str(text))
    return est


def action_refs(node: Any) -> Iterator[str]:
    """Every ``Action::"..."`` id a policy's EST mentions, in its scope or its conditions."""
    if isinstance(node, Mapping):
        kind = node.get("type")
        if isinstance(kind, str) and (kind == "Action" or kind.endswith("::Action")) and "id" in node:
            yield str(node["id"])
        for value in node.values():
            yield from action_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from action_refs(value)


# -- schema: the action declarations come from the catalog ----------------------------------------

CONTEXT_TYPE = "RequestContext"
GENERATED_HEADER = "// ---- generated from catalog.yaml: consequence groups and actions ----"


def generated_actions(catalog: Mapping[str, Action]) -> str:
    """Cedar schema text declaring one action group per consequence class and each catalog
    action as a member of its class, so ``action in Action::"financial"`` works in policies."""
    groups = ", ".join(json.dumps(c.value) for c in Consequence)
    lines = [GENERATED_HEADER, f"action {groups};"]
    for name, action in sorted(catalog.items()):
        lines.append(
            f"action {json.dumps(name)} in [{json.dumps(action.consequence.value)}] appliesTo "
            f"{{ principal: [Agent], resource: [Resource], context: {CONTEXT_TYPE} }};"
        )
    return "\n".join(lines) + "\n"


def declares_actions(schema_text: str) -> list[int]:
    """Lines of top-level ``action`` declarations in a hand-written schema (not allowed)."""
    return [st.line for st in split_statements(schema_text) if _first_word(st.text) == "action"]


def _first_word(text: str) -> str:
    for ln in text.split("\n"):
        s = ln.strip()
        if s and not s.startswith("//"):
            return s.split()[0].rstrip("{")
    return ""
