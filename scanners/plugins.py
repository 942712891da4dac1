"""Extra detectors: detect-secrets plugins (its plugin API), when configured.

``NHI_BROKER_SCAN_DETECT_SECRETS_PLUGINS="KeywordDetector,BasicAuthDetector"`` (or the CLI's
``--detect-secrets-plugin NAME``) loads those detect-secrets plugin classes — built-in ones by
class name, or a custom plugin as ``file:/path/plugin.py`` — and runs ``analyze_line`` on every
line. Their findings are low confidence (detect-secrets' own high-entropy and keyword plugins are
noisy on real code; see docs/scanning.md) and go through the broker's placeholder filter,
overlap resolution and known-grant layer like any other.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Final, Protocol, runtime_checkable

from scanners.rules import GLOBAL_ALLOW, Confidence, Severity
from scanners.structured import Detection

ENV: Final = "NHI_BROKER_SCAN_DETECT_SECRETS_PLUGINS"
MAX_LINE: Final = 4096


@runtime_checkable
class ExtraDetector(Protocol):
    def detect(self, text: str, path: str | None) -> list[Detection]: ...


class PluginError(ValueError):
    """A configured plugin cannot be loaded; the message names it."""


def _rule_id(secret_type: str) -> str:
    slug = "".join(c if c.isalnum() else "-" for c in secret_type.lower()).strip("-")
    return "detect-secrets-" + "-".join(p for p in slug.split("-") if p)


class DetectSecretsPlugins:
    """detect-secrets plugins run line by line as one extra detector."""

    def __init__(self, names: Sequence[str]) -> None:
        try:
            # optional dependency: detect-secrets is needed only when its plugins are configured
            from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
        except ImportError as exc:
            raise PluginError("detect-secrets plugins: the detect-secrets package is not installed") from exc
        mapping: dict[str, Any] = dict(get_mapping_from_secret_type_to_class())
        by_class: dict[str, Any] = {cls.__name__: cls for cls in mapping.values()}
        self.plugins: list[Any] = []
        for name in names:
            if name.startswith("file:"):
                self.plugins.extend(_from_file(name[5:]))
            elif name in by_class:
                self.plugins.append(by_class[name]())
            else:
                raise PluginError(f"detect-secrets plugin {name!r}: not one of {sorted(by_class)} or file:PATH")

    def __repr__(self) -> str:
        return f"DetectSecretsPlugins({[type(p).__name__ for p in self.plugins]})"

    def detect(self, text: str, path: str | None) -> list[Detection]:
        out: list[Detection] = []
        pos = 0
        for number, line in enumerate(text.split("\n"), 1):
            if len(line) <= MAX_LINE:
                for plugin in self.plugins:
                    for potential in plugin.analyze_line(filename=path or "", line=line, line_number=number):
                        value = potential.secret_value
                        if not value or GLOBAL_ALLOW.search(value):
                            continue
                        col = line.find(value)
                        if col < 0:
                            continue
                        out.append(
                            Detection(
                                _rule_id(potential.type),
                                f"detect-secrets: {potential.type}",
                                Severity.MEDIUM,
                                Confidence.LOW,
                                pos + col,
                                pos + col + len(value),
                            )
                        )
            pos += len(line) + 1
        return out


def _from_file(path: str) -> list[Any]:
    # optional dependency: detect-secrets is needed only when its plugins are configured
    from detect_secrets.core.plugins.util import get_plugins_from_file

    try:
        classes: list[Any] = list(get_plugins_from_file(path))
    except (OSError, ImportError, SyntaxError) as exc:
        raise PluginError(f"detect-secrets plugin file {path!r}: cannot load ({exc.__class__.__name__})") from exc
    if not classes:
        raise PluginError(f"detect-secrets plugin file {path!r}: defines no plugin class")
    return [cls() for cls in classes]


def from_env() -> list[ExtraDetector]:
    raw = os.environ.get(ENV, "").strip()
    names = [n.strip() for n in raw.split(",") if n.strip()]
    return [DetectSecretsPlugins(names)] if names else []
