"""A git repository: the lines each new commit added, with commit, path and line number.

First run: all history reachable from the refs. Later runs: commits reachable from the refs'
tips now but not from the tips scanned last time (``git log <new> --not <old>``; a rewritten
history simply has new commits). One ``git log -p -U0`` process streams the patches, oldest
first; only added lines are scanned, each mapped to its line in the new file.

State: ``git:tips`` (tips fully scanned) and, while a pass is in progress, ``git:pending``
(target tips, base tips and how many commits of the pass are committed) — a pass interrupted by
a crash resumes after the last checkpoint; nothing is scanned twice or skipped.

A local path is read in place; a URL is mirrored under the broker's data directory first.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

from scanners.sources.base import BLOCK, Checkpoint, Item, Piece, SourceContext, SourceError, StateView

CHECKPOINT_COMMITS = 100
# a redirect must not lead where the outbound policy would refuse (broker/netpolicy.py), and only
# the transports the job's URL was checked for may run (no ext::, file:// or submodule tricks)
_SAFE_CONFIG = (
    "-c",
    "http.followRedirects=false",
    "-c",
    "protocol.allow=never",
    "-c",
    "protocol.https.allow=always",
    "-c",
    "protocol.ssh.allow=always",
)
_HUNK = re.compile(rb"^@@ -\d+(?:,\d+)? \+(\d+)(?:,\d+)? @@")
_MARK = b"\0\0"


class GitAdapter:
    kind = "git"

    def __init__(self, repo: str, refs: list[str], ctx: SourceContext) -> None:
        self.repo = repo
        self.refs = refs
        self.ctx = ctx

    def _git(self, *args: str, cwd: Path, input: bytes | None = None) -> bytes:
        try:
            proc = subprocess.run(  # noqa: S603 - argv list, no shell; refs validated in scan_spec
                ["git", *_SAFE_CONFIG, *args],  # noqa: S607 - git from the fixed PATH below
                cwd=cwd,
                input=input,
                capture_output=True,
                timeout=600,
                check=False,
                env={"GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/bin:/bin:/usr/local/bin"},
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SourceError(f"git {args[0]} failed for {self._name()}: {type(exc).__name__}") from exc
        if proc.returncode != 0:
            raise SourceError(
                f"git {args[0]} failed for {self._name()}: {proc.stderr.decode(errors='replace').strip()[:200]}"
            )
        return proc.stdout

    def _name(self) -> str:
        return re.sub(r"//[^/@]*@", "//", self.repo)  # never show credentials in a URL

    def _workdir(self) -> Path:
        if self.repo.startswith("/"):
            path = Path(self.repo)
            if not path.is_dir():
                raise SourceError(f"git repository {self.repo} does not exist")
            return path
        mirror = Path(self.ctx.cache_dir) / f"{self.ctx.job}.git"
        if not mirror.exists():
            mirror.parent.mkdir(parents=True, exist_ok=True)
            self._git("clone", "--mirror", "--quiet", "--", self.repo, str(mirror), cwd=mirror.parent)
        else:
            self._git("remote", "update", "--prune", cwd=mirror)
        return mirror

    def _tips(self, cwd: Path) -> list[str]:
        if self.refs == ["--all"]:
            out = self._git("for-each-ref", "--format=%(objectname)", "refs/heads", "refs/tags", cwd=cwd)
        else:
            out = self._git("rev-parse", "--end-of-options", *self.refs, cwd=cwd)
        return sorted({line for line in out.decode().split() if line})

    def items(self, state: StateView) -> Iterator[Item]:
        cwd = self._workdir()
        pending = state.get("git:pending")
        if pending:
            target, base, skip = list(pending["target"]), list(pending["base"]), int(pending["done"])
        else:
            target, base, skip = self._tips(cwd), list(state.get("git:tips") or []), 0
            if not target or sorted(target) == sorted(base):
                return
        yield from self._pass(cwd, target, base, skip)
        yield Checkpoint({"git:tips": target, "git:pending": None})

    def _pass(self, cwd: Path, target: list[str], base: list[str], skip: int) -> Iterator[Item]:
        revs = "\n".join([*target, *(f"^{b}" for b in base)]) + "\n"
        cmd = [
            "git",
            "log",
            "--stdin",
            "--ignore-missing",
            "--reverse",
            "--topo-order",
            "-p",
            "-U0",
            "--no-color",
            "--no-renames",
            "--no-ext-diff",
            "--no-textconv",
            "--format=%x00%x00%H",
        ]
        proc = subprocess.Popen(  # noqa: S603 - fixed argv; revisions go through stdin
            cmd,
            cwd=cwd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={"PATH": "/usr/bin:/bin:/usr/local/bin"},
        )
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(revs.encode())
        proc.stdin.close()
        done = 0
        since_checkpoint = 0
        commit: str | None = None
        path: str | None = None
        lineno = 0
        in_hunk = False
        buf: list[str] = []
        lines: list[int] = []
        size = 0

        def flush() -> Iterator[Item]:
            nonlocal buf, lines, size
            if buf and commit is not None and path is not None and done >= skip:
                text = "\n".join(buf) + "\n"
                yield Piece(
                    text=text,
                    location=f"{self._name()}:{path}",
                    line_map=tuple(lines),
                    meta={"commit": commit, "path": path},
                    nbytes=size,
                )
            buf, lines, size = [], [], 0

        try:
            for raw in proc.stdout:
                if raw.startswith(_MARK):
                    yield from flush()
                    if commit is not None:
                        done += 1
                        since_checkpoint += 1
                        if done > skip and since_checkpoint >= CHECKPOINT_COMMITS:
                            yield Checkpoint({"git:pending": {"target": target, "base": base, "done": done}})
                            since_checkpoint = 0
                    commit, path, in_hunk = raw[2:].strip().decode(), None, False
                elif raw.startswith(b"diff --git "):
                    yield from flush()
                    path, in_hunk = None, False
                elif not in_hunk and raw.startswith(b"+++ "):
                    name = raw[4:].rstrip(b"\n")
                    path = None if name == b"/dev/null" else name[2:].decode("utf-8", "replace")
                elif raw.startswith(b"@@"):
                    m = _HUNK.match(raw)
                    lineno = int(m.group(1)) if m else 0
                    in_hunk = True
                elif in_hunk and raw.startswith(b"+") and path is not None:
                    buf.append(raw[1:].rstrip(b"\n").decode("utf-8", "replace"))
                    lines.append(lineno)
                    size += len(raw) - 1
                    lineno += 1
                    if size >= BLOCK:
                        yield from flush()
            yield from flush()
        finally:
            proc.stdout.close()
            rc = proc.wait()
            err = proc.stderr.read().decode(errors="replace").strip()[:200] if proc.stderr else ""
        if rc != 0:
            raise SourceError(f"git log failed for {self._name()}: {err}")
