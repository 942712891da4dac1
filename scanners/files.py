"""Walk files and directories for scanning: skip binaries, honour .gitignore, stay inside the tree.

Symlinks are followed only when they resolve inside the root being scanned (and then only to
files, so no loops); ``.git`` directories are never entered.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

import pathspec

from scanners.engine import Finding, Scanner
from scanners.structured import KEY_CONTAINER_SUFFIXES

MAX_WHOLE_FILE: Final = 16 * 1024 * 1024
MAX_KEY_CONTAINER: Final = 1024 * 1024
CHUNK: Final = 4 * 1024 * 1024
OVERLAP: Final = 64 * 1024
SKIP_DIRS: Final = {".git", ".hg", ".svn"}


def is_binary(path: Path) -> bool:
    with path.open("rb") as fh:
        return b"\0" in fh.read(8192)


def _gitignore(dir_: Path) -> pathspec.PathSpec[Any] | None:
    f = dir_ / ".gitignore"
    if not f.is_file():
        return None
    return pathspec.PathSpec.from_lines("gitignore", f.read_text(errors="replace").splitlines())


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root)
    except (ValueError, OSError):
        return False
    return True


def iter_files(root: Path) -> Iterator[Path]:
    """Files under ``root`` to scan (a file root is yielded as is)."""
    if root.is_file():
        yield root
        return
    real_root = root.resolve()
    stack: list[tuple[Path, list[tuple[Path, pathspec.PathSpec[Any]]]]] = [(root, [])]
    while stack:
        dir_, specs = stack.pop()
        spec = _gitignore(dir_)
        if spec is not None:
            specs = [*specs, (dir_, spec)]
        try:
            entries = sorted(os.scandir(dir_), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            path = Path(entry.path)
            is_dir = entry.is_dir(follow_symlinks=False)
            if _ignored(path, is_dir, specs):
                continue
            if entry.is_symlink():
                # a link is scanned only if it points at a file inside the tree
                if _inside(path, real_root) and path.is_file():
                    yield path
                continue
            if is_dir:
                if entry.name not in SKIP_DIRS:
                    stack.append((path, specs))
            elif entry.is_file(follow_symlinks=False):
                yield path


def _ignored(path: Path, is_dir: bool, specs: list[tuple[Path, pathspec.PathSpec[Any]]]) -> bool:
    for base, spec in specs:
        rel = path.relative_to(base).as_posix() + ("/" if is_dir else "")
        if spec.match_file(rel):
            return True
    return False


def scan_file(scanner: Scanner, path: Path, display: str | None = None) -> list[Finding]:
    """Scan one file; big files are streamed in overlapping chunks cut at line ends."""
    name = display or path.as_posix()
    if is_binary(path):
        if path.name.lower().endswith(KEY_CONTAINER_SUFFIXES) and path.stat().st_size <= MAX_KEY_CONTAINER:
            return scanner.scan_binary(path.read_bytes(), path=name)
        return []
    if path.stat().st_size <= MAX_WHOLE_FILE:
        return scanner.scan(path.read_text(encoding="utf-8", errors="replace"), path=name)
    return _scan_stream(scanner, path, name)


def _scan_stream(scanner: Scanner, path: Path, name: str) -> list[Finding]:
    out: list[Finding] = []
    seen: set[tuple[str, int]] = set()
    base, base_line, carry = 0, 0, ""
    with path.open(encoding="utf-8", errors="replace", newline="") as fh:
        while True:
            chunk = fh.read(CHUNK)
            buf = carry + chunk
            if not chunk:
                piece, rest = buf, ""
            else:
                cut = buf.rfind("\n") + 1 or len(buf)
                piece, rest = buf[:cut], buf[cut:]
            for f in scanner.scan(piece, path=name):
                key = (f.rule_id, base + f.start)
                if key not in seen:
                    seen.add(key)
                    out.append(replace(f, start=base + f.start, end=base + f.end, line=base_line + f.line))
            if not chunk:
                break
            # keep the tail (from a line start) so blocks spanning the cut are seen whole next time
            keep_from = max(0, len(piece) - OVERLAP)
            keep_from = piece.find("\n", keep_from) + 1 if keep_from else 0
            base_line += piece.count("\n", 0, keep_from)
            base += keep_from
            carry = piece[keep_from:] + rest
    return out
