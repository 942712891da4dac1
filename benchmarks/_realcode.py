"""The real-code negative corpus: text files from the venv's site-packages and /usr/share/doc.

Not curated: every text file (no NUL byte in its first 8 KB) is eligible; a deterministic sample
(by a hash of the path) is copied to one directory so every scanner, in process or CLI, reads the
same bytes. ``--realcode-mb`` bounds its size on a shared machine.
"""

from __future__ import annotations

import hashlib
import shutil
import sysconfig
from pathlib import Path

ROOTS = (Path(sysconfig.get_paths()["purelib"]), Path("/usr/share/doc"))
MAX_FILE = 2 * 1024 * 1024


def _text_files(root: Path) -> list[Path]:
    out = []
    for p in sorted(root.rglob("*")):
        try:
            if not p.is_file() or p.is_symlink() or p.stat().st_size == 0 or p.stat().st_size > MAX_FILE:
                continue
            with p.open("rb") as fh:
                if b"\0" in fh.read(8192):
                    continue
        except OSError:
            continue
        out.append(p)
    return out


def build(dest: Path, mb_per_root: float) -> dict[str, int]:
    """Copy a sample of up to ``mb_per_root`` MB of each root's text files into ``dest``."""
    sizes: dict[str, int] = {}
    for i, root in enumerate(ROOTS):
        files = _text_files(root)
        files.sort(key=lambda p: hashlib.sha256(str(p.relative_to(root)).encode()).hexdigest())
        budget, used = int(mb_per_root * 1_000_000), 0
        for p in files:
            size = p.stat().st_size
            if used + size > budget:
                continue
            target = dest / f"root{i}" / p.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(p, target)
            used += size
        sizes[str(root)] = used
    return sizes
