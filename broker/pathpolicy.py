"""Which local paths the broker may read for a scan job (``files`` sources, local git repos).

The broker usually runs with more rights than the admin who defines a scan job, so a job must
not become a way to read ``/etc/shadow`` or the broker's own private keys. A path is accepted
only when:

- it has no ``..`` component (no traversal, even one that would resolve inside a root);
- its real path (symlinks resolved) lies under a configured scan root (``scan_roots``; ``serve``
  has none until configured, ``up`` has the working directory and the system temp directory);
- its real path is not under a location that is always refused, whatever the roots say: the
  broker's data directory, ``/etc``, ``/root``, ``/proc``, ``/sys``, ``/dev``, ``/boot``, and
  any ``.ssh`` directory.

A glob is checked by its fixed prefix (the directories before the first wildcard) when the job
is accepted, and every file it matches is checked again by its real path when the job runs
(a symlink planted later cannot lead outside). Standard library and :mod:`broker.errors` only.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Final

from broker.errors import InvalidInput

ALWAYS_REFUSED: Final = (Path("/etc"), Path("/root"), Path("/proc"), Path("/sys"), Path("/dev"), Path("/boot"))
REFUSED_NAMES: Final = frozenset({".ssh", ".gnupg", ".aws"})
_GLOB_CHARS: Final = frozenset("*?[")


@dataclass(frozen=True, slots=True)
class ScanRoots:
    roots: tuple[Path, ...]
    refused: tuple[Path, ...]

    @classmethod
    def build(cls, roots: Iterable[Path | str], *, data_dir: Path | str | None) -> ScanRoots:
        refused = [Path(os.path.realpath(p)) for p in ALWAYS_REFUSED] + list(ALWAYS_REFUSED)
        if data_dir is not None:
            refused.append(Path(os.path.realpath(data_dir)))
        return cls(roots=tuple(Path(os.path.realpath(r)) for r in roots), refused=tuple(dict.fromkeys(refused)))

    def check(self, path: str, *, field: str) -> None:
        """Accept ``path`` (a file, a directory or a glob) or raise :class:`InvalidInput`."""
        pure = PurePosixPath(path)
        if not pure.is_absolute():
            raise InvalidInput(field, "must be an absolute path")
        if ".." in pure.parts:
            raise InvalidInput(field, 'must not contain ".." (resolve the path first)')
        if "\x00" in path:
            raise InvalidInput(field, "must not contain NUL")
        fixed = Path(_fixed_prefix(pure))
        self._check_refused(fixed, field)  # as written: /proc/... is refused without touching /proc
        self._check_real(_real(fixed, field), field)

    def allows(self, path: str) -> bool:
        """For a file found while a job runs: its real path is under a root and not refused."""
        try:
            self._check_real(_real(Path(path), "path"), "path")
        except InvalidInput:
            return False
        return True

    def _check_real(self, real: Path, field: str) -> None:
        self._check_refused(real, field)
        if not self.roots:
            raise InvalidInput(
                field, "no scan roots are configured; add the directory to scan_roots in the broker's settings"
            )
        if not any(real == root or root in real.parents for root in self.roots):
            raise InvalidInput(
                field, "is outside the configured scan roots (scan_roots): " + ", ".join(str(r) for r in self.roots)
            )

    def _check_refused(self, real: Path, field: str) -> None:
        if any(part in REFUSED_NAMES for part in real.parts):
            raise InvalidInput(field, "credential directories (.ssh, .gnupg, .aws) are never scanned")
        for refused in self.refused:
            if real == refused or refused in real.parents:
                raise InvalidInput(
                    field, f"{refused} is never scanned (system secrets or the broker's own data directory)"
                )


def _real(path: Path, field: str) -> Path:
    try:
        return Path(os.path.realpath(path, strict=False))
    except (OSError, ValueError) as exc:  # e.g. a /proc link the broker may not follow
        raise InvalidInput(field, "cannot be resolved to a real path") from exc


def _fixed_prefix(path: PurePosixPath) -> PurePosixPath:
    parts: list[str] = []
    for part in path.parts:
        if _GLOB_CHARS & set(part):
            break
        parts.append(part)
    return PurePosixPath(*parts) if parts else PurePosixPath("/")
