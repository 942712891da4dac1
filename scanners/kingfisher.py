"""The maintained pattern engine: MongoDB's Kingfisher, in process (``kingfisher_sdk``).

Kingfisher ships ~490 provider rules (the Betterleaks and Veles rule sets) compiled to one
Vectorscan database. Compiling takes seconds (~4.5-6.6 s here), so:

* the compiled database is cached on disk by the SDK, keyed by its rules (``cache_dir``: a
  directory only this user can write; the SDK refuses unsafe ones) — a warm load is ~0.5 s;
* :meth:`KingfisherEngine.start` compiles in a background thread; :attr:`ready` says when it is
  usable. Until then the broker's :class:`scanners.engine.Scanner` runs its full own rule set and
  the known-grant index, so a scan before ready still catches every broker-issued secret.

Only this module imports ``kingfisher_sdk``; it never uses the network (validation lives in
``scanners.validation`` behind an explicit setting).
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

CONFIDENCES: Final = ("low", "medium", "high")
# engine rules that report an identifier, not a credential (client ids, account names, hosts):
# components of the engine's composite rules, public by design — the broker does not report them
_IDENTIFIER_RULE: Final = re.compile(
    r"(?:client-id|account-id|app-id|tenant-id|account-name|cloud-name|instance-url|domain|host|address"
    r"|project-url|rest-url|jfrog-url|username|access-id|-id|token-name)(?:\.\d+)?$"
)


@dataclass(frozen=True, slots=True)
class EngineMatch:
    """One engine finding in character offsets of the scanned text."""

    rule_id: str
    name: str
    start: int
    end: int
    confidence: str


class EngineUnavailable(RuntimeError):
    """The engine package is not installed or failed to compile its rules."""


def default_cache_dir() -> Path:
    """``$NHI_BROKER_CACHE_DIR`` or ``$XDG_CACHE_HOME/nhi-broker`` (``~/.cache/nhi-broker``)."""
    env = os.environ.get("NHI_BROKER_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "nhi-broker"


def available() -> bool:
    try:
        import kingfisher_sdk  # noqa: F401
    except ImportError:
        return False
    return True


class KingfisherEngine:
    """Compile once (optionally in the background), scan many times from any thread."""

    def __init__(self, *, confidence: str = "medium", cache_dir: Path | None = None) -> None:
        if confidence not in CONFIDENCES:
            raise ValueError(f"engine confidence {confidence!r}: must be one of {list(CONFIDENCES)}")
        self.confidence = confidence
        self.cache_dir = cache_dir if cache_dir is not None else default_cache_dir() / "kingfisher"
        self._ready = threading.Event()
        self._lock = threading.Lock()  # held by the compile
        self._start_lock = threading.Lock()  # held only to create the compile thread
        self._thread: threading.Thread | None = None
        self._scanner: Any = None
        self._rules: Any = None
        self.error: str | None = None
        self.cache_status: str | None = None

    def __repr__(self) -> str:
        return f"KingfisherEngine(confidence={self.confidence!r}, ready={self.ready})"

    @property
    def ready(self) -> bool:
        return self._ready.is_set() and self._scanner is not None

    def start(self) -> KingfisherEngine:
        """Compile in a daemon thread (idempotent); returns at once."""
        if self._thread is not None or self._ready.is_set():
            return self  # never waits on the compile (a scan calls this while the engine loads)
        with self._start_lock:
            if self._thread is None and not self._ready.is_set():
                self._thread = threading.Thread(
                    target=self._compile_quietly, name="nhi-kingfisher-compile", daemon=True
                )
                self._thread.start()
        return self

    def load(self) -> KingfisherEngine:
        """Compile (or load the cached database) in this thread; raise on failure."""
        self._compile()
        if self._scanner is None:
            raise EngineUnavailable(self.error or "kingfisher engine did not compile")
        return self

    def wait(self, timeout: float | None = None) -> bool:
        return self._ready.wait(timeout) and self._scanner is not None

    def _compile_quietly(self) -> None:
        with contextlib.suppress(EngineUnavailable):  # recorded in self.error; own rules keep running
            self._compile()

    def _compile(self) -> None:
        with self._lock:
            if self._ready.is_set():
                return
            try:
                # deferred: importing the engine is paid only by a process that scans with it
                import kingfisher_sdk as kf
            except ImportError as exc:
                self.error = "kingfisher-secret-scanner is not installed"
                self._ready.set()
                raise EngineUnavailable(self.error) from exc
            try:
                self.cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
                self._rules = kf.Rules(confidence=self.confidence, cache_dir=self.cache_dir)  # type: ignore[arg-type]
                self.cache_status = self._rules.cache_status
                self._scanner = kf.Scanner(self._rules)
            except (OSError, RuntimeError, ValueError) as exc:
                self.error = f"kingfisher rules failed to compile ({exc.__class__.__name__})"
                self._ready.set()
                raise EngineUnavailable(self.error) from exc
            self._ready.set()

    def rule_count(self) -> int:
        return len(self._rules) if self._rules is not None else 0

    def rule_ids(self) -> list[str]:
        return [m["id"] for m in self._rules.metadata()] if self._rules is not None else []

    def scan(self, text: str, path: str | None = None) -> list[EngineMatch]:
        """Visible findings; raises :class:`EngineUnavailable` when not ready."""
        scanner = self._scanner
        if scanner is None:
            raise EngineUnavailable(self.error or "kingfisher engine is not ready")
        data = text.encode("utf-8", errors="surrogatepass")
        # path-less on purpose: the SDK's path-aware mode (scan_input) measured ~3.5x slower on real
        # code and found nothing more on the labelled corpus; the broker's own structured detectors
        # are the path-aware layer (see docs/scanning.md)
        found = scanner._native.scan_bytes(data)
        if not found:
            return []
        ascii_only = len(data) == len(text)
        out: list[EngineMatch] = []
        for f in found:
            if not f.visible or _IDENTIFIER_RULE.search(f.rule_id):
                continue
            loc = f.location
            s, e = loc["start_offset"], loc["end_offset"]
            if not ascii_only:
                s = len(data[:s].decode("utf-8", errors="ignore"))
                e = s + len(data[loc["start_offset"] : e].decode("utf-8", errors="ignore"))
            out.append(EngineMatch(f.rule_id, f.rule_name, s, e, f.confidence))
        return out

    def validate(self, text: str, path: str | None, *, timeout: float = 30.0) -> list[tuple[int, int, str]]:
        """Ask the providers whether the engine's findings in ``text`` are live credentials.

        THIS CALLS THIRD-PARTY SERVICES with the found secrets. Only ``nhi-broker scan --validate``
        uses it (off by default; never in tests). Returns ``(start, end, outcome)`` in character
        offsets; outcomes are Kingfisher's (``verified_active``, ``verified_inactive``,
        ``unavailable``, ``skipped``, ...). Internal IP addresses are never contacted.
        """
        # deferred: importing the engine is paid only by a process that scans with it
        import kingfisher_sdk as kf

        scanner = self._scanner
        if scanner is None:
            raise EngineUnavailable(self.error or "kingfisher engine is not ready")
        data = text.encode("utf-8", errors="surrogatepass")
        native = scanner._native.scan_input(data, path) if path else scanner._native.scan_bytes(data)
        findings = [kf.Finding(f) for f in native]  # the complete list: validation needs the helpers
        if not findings:
            return []
        results = kf.Validator(timeout=min(timeout, 30.0), allow_internal_ips=False).validate(findings, timeout=timeout)
        out = []
        for r in results:
            if not r.finding.visible:
                continue
            loc = r.finding.location
            s = len(data[: loc["start_offset"]].decode("utf-8", errors="ignore"))
            e = s + len(data[loc["start_offset"] : loc["end_offset"]].decode("utf-8", errors="ignore"))
            out.append((s, e, r.outcome))
        return out


ENGINE_ENV: Final = "NHI_BROKER_SCAN_ENGINE"


def default_engine() -> KingfisherEngine | None:
    """The engine the broker's process uses: ``NHI_BROKER_SCAN_ENGINE`` = ``auto`` (default:
    Kingfisher when installed), ``kingfisher`` (required: fail at start-up if missing) or
    ``builtin`` (the broker's own rules only). It compiles lazily, in the background, at the
    first scan (or at :meth:`KingfisherEngine.start`)."""
    choice = os.environ.get(ENGINE_ENV, "auto").strip().lower() or "auto"
    if choice not in ("auto", "kingfisher", "builtin"):
        raise ValueError(f"{ENGINE_ENV}={choice!r}: must be one of auto, kingfisher, builtin")
    if choice == "builtin" or (choice == "auto" and not available()):
        return None
    if not available():
        raise EngineUnavailable(f"{ENGINE_ENV}=kingfisher but kingfisher-secret-scanner is not installed")
    return KingfisherEngine()
