"""Problems found in a policy bundle, located by file and line.

A bundle is checked as a whole: every problem is collected (not just the first) so that
``nhi-broker policy validate`` can list them all, and start-up / reload can refuse the bundle
with a message that names ``file:line``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

from broker.errors import BrokerError


@dataclass(frozen=True, slots=True)
class Problem:
    file: str  # path relative to the bundle directory
    line: int | None  # 1-based; None when the problem has no single line
    message: str

    @property
    def location(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "message": self.message}


class BundleError(BrokerError):
    """The bundle cannot be used; ``problems`` lists every reason with its file and line."""

    status_code = 422
    code = "invalid_policy_bundle"

    def __init__(self, problems: list[Problem] | tuple[Problem, ...]) -> None:
        self.problems = tuple(problems)
        head = str(self.problems[0]) if self.problems else "invalid policy bundle"
        more = f" (and {len(self.problems) - 1} more problem(s))" if len(self.problems) > 1 else ""
        super().__init__(
            f"invalid policy bundle: {head}{more}", details={"problems": [p.to_dict() for p in self.problems]}
        )


# -- YAML: map a dotted field path back to the line that holds it ---------------------------------

_INDEX = re.compile(r"\[(\d+)\]")


def yaml_line(text: str, path: str) -> int | None:
    """The 1-based line of ``path`` (``tiers.low.ttl_seconds``, ``modes.inline[0].consequence``)
    in the YAML ``text``; the deepest node that exists when the path is only partly there.

    Keys may themselves contain dots (``actions.db.read.consequence``): at each mapping the
    longest key that prefixes the remaining path wins.
    """
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    if node is None:
        return None
    rest = _INDEX.sub(r".[\1]", path.strip()).strip(".")
    line: int = node.start_mark.line + 1
    while rest:
        if isinstance(node, yaml.MappingNode):
            best = None
            for key, value in node.value:
                k = str(key.value)
                if (rest == k or rest.startswith(k + ".")) and (best is None or len(k) > len(best[0])):
                    best = (k, key, value)
            if best is None:
                return line
            k, key_node, node = best
            line = key_node.start_mark.line + 1
            rest = rest[len(k) :].lstrip(".")
        elif isinstance(node, yaml.SequenceNode):
            m = re.match(r"\[(\d+)\]\.?", rest)
            if not m or int(m.group(1)) >= len(node.value):
                return line
            node = node.value[int(m.group(1))]
            line = node.start_mark.line + 1
            rest = rest[m.end() :]
        else:
            return line
    return line


def yaml_error_problem(file: str, exc: yaml.YAMLError) -> Problem:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    return Problem(file, mark.line + 1 if mark is not None else None, f"YAML syntax error: {problem}")
