"""Jinja filters of the Tasks / Decisions / Findings / Audit pages (registered on the console's
template environment when those pages are imported; autoescape stays on for everything).

- ``visible``: agent-controlled text with control, invisible and bidirectional-override characters
  shown as their code points (:func:`broker.text.visible`); HTML in it is escaped by autoescape;
- ``ts``: a timestamp as ``2026-12-01 03:04:05.678 UTC``;
- ``shown``: any value (a mapping, a list, a scalar) as one line of plain text, ``visible``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import jinja2

from broker.text import visible

MAX_SHOWN = 2000


def ts(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def shown(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        text = value
    elif isinstance(value, Mapping | list | tuple):
        text = json.dumps(value, default=str, ensure_ascii=False, sort_keys=True)
    else:
        text = str(value)
    text = visible(text)
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + f"… ({len(text) - MAX_SHOWN} more characters)"


def register(env: jinja2.Environment) -> None:
    env.filters["visible"] = lambda v: visible(v) if isinstance(v, str) else shown(v)
    env.filters["ts"] = ts
    env.filters["shown"] = shown
