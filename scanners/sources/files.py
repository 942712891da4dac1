"""Log files: a directory (every file under it) or a glob, read incrementally.

State per file (key ``file:<path>``): device, inode, byte offset, line count, and a keyed
fingerprint of the file's first bytes. On each run:

- same path, same inode, grown → read from the offset (only complete lines; a trailing partial
  line waits for its newline, or is read once the file has been quiet for ``QUIET_SECONDS``);
- a path whose inode was known under another path (logrotate renamed ``app.log`` to
  ``app.log.1``) → continue from that inode's offset, so the tail written before the rotation
  is read once; the new ``app.log`` starts at 0;
- size below the offset (copytruncate) or different first bytes (rewritten) → from 0;
- files that disappeared → their state is dropped.

Binary files (a NUL byte in the first 8 KiB) are skipped. Reads are 1 MiB blocks: memory stays
flat whatever the file size.
"""

from __future__ import annotations

import glob
import os
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scanners.sources.base import BLOCK, Checkpoint, Item, Piece, SourceContext, StateView, split_block

HEAD_BYTES = 64
QUIET_SECONDS = 5.0
PREFIX = "file:"


@dataclass(frozen=True, slots=True)
class _Start:
    offset: int
    line: int
    moved_from: str | None = None


class FilesAdapter:
    kind = "files"

    def __init__(self, path: str, ctx: SourceContext) -> None:
        self.path = path
        self.ctx = ctx

    def _paths(self) -> list[str]:
        p = Path(self.path)
        out = [str(f) for f in p.rglob("*")] if p.is_dir() else glob.glob(self.path, recursive=True)
        # the real path of every match is checked: a symlink planted under a root cannot lead out
        return sorted(f for f in out if _is_regular(f) and self.ctx.path_allowed(f))

    def items(self, state: StateView) -> Iterator[Item]:
        known = dict(state.items(PREFIX))
        by_inode = {(v["dev"], v["ino"]): k[len(PREFIX) :] for k, v in known.items()}
        present: set[str] = set()
        for path in self._paths():
            present.add(path)
            try:
                yield from self._file(path, known, by_inode)
            except FileNotFoundError:  # rotated away between listing and reading
                continue
        gone = {k: None for k in known if k[len(PREFIX) :] not in present}
        if gone:
            yield Checkpoint(gone)

    def _start(
        self,
        path: str,
        st: os.stat_result,
        known: dict[str, Any],
        by_inode: dict[tuple[int, int], str],
        head: bytes,
    ) -> _Start:
        prev = known.get(PREFIX + path)
        moved_from = None
        if prev is None or (prev["dev"], prev["ino"]) != (st.st_dev, st.st_ino):
            origin = by_inode.get((st.st_dev, st.st_ino))
            prev = known.get(PREFIX + origin) if origin is not None and origin != path else None
            moved_from = origin if prev is not None else None
        if prev is None:
            return _Start(0, 0)
        if st.st_size < prev["offset"]:
            return _Start(0, 0)  # truncated
        head_len = int(prev.get("head_len", 0))
        if head_len and self.ctx.fingerprint(head[:head_len].decode("latin-1")) != prev.get("head"):
            return _Start(0, 0)  # rewritten in place (or the inode was reused)
        return _Start(int(prev["offset"]), int(prev["line"]), moved_from)

    def _file(self, path: str, known: dict[str, Any], by_inode: dict[tuple[int, int], str]) -> Iterator[Item]:
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            head = fh.read(8192)
            if b"\0" in head:
                return
            start = self._start(path, st, known, by_inode, head)
            if start.offset >= st.st_size and start.moved_from is None:
                return
            head = head[:HEAD_BYTES]
            base = {
                "dev": st.st_dev,
                "ino": st.st_ino,
                "head": self.ctx.fingerprint(head.decode("latin-1")),
                "head_len": len(head),
            }
            quiet = time.time() - st.st_mtime > QUIET_SECONDS
            offset, line = start.offset, start.line
            fh.seek(offset)
            pending = b""
            moved = start.moved_from is not None
            while True:
                block = fh.read(BLOCK)
                eof = not block
                data, pending = split_block(pending + block, final=eof and quiet)
                if data:
                    yield Piece(
                        text=data.decode("utf-8", "replace"),
                        location=path,
                        first_line=line + 1,
                        meta={"path": path},
                        nbytes=len(data),
                    )
                    offset += len(data)
                    line += data.count(b"\n")
                    yield Checkpoint({PREFIX + path: {**base, "offset": offset, "line": line}})
                    moved = False
                if eof:
                    break
            if moved:  # renamed, nothing new: the state follows the file (the old path's entry is
                # overwritten by the file now there, or dropped when that path is gone)
                yield Checkpoint({PREFIX + path: {**base, "offset": offset, "line": line}})


def _is_regular(path: str) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False
