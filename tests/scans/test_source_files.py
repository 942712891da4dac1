"""Log files source on real files: incremental offsets, rotation, truncation, rewrite, streaming."""

from __future__ import annotations

import os
from pathlib import Path

from scanners.sources.base import BLOCK
from scanners.sources.files import FilesAdapter

from .helpers import Drive, ctx


def _append(path: Path, *lines: str) -> None:
    with path.open("a") as fh:
        fh.writelines(line + "\n" for line in lines)


def test_files_source_reads_only_lines_appended_since_the_last_run(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "agent.log"
    log.parent.mkdir()
    _append(log, "one", "two")
    src, d = FilesAdapter(str(log.parent), ctx(tmp_path)), Drive()
    assert Drive.lines(d.run(src)) == [(str(log), 1, "one"), (str(log), 2, "two")]
    assert d.run(src) == []
    _append(log, "three")
    assert Drive.lines(d.run(src)) == [(str(log), 3, "three")]


def test_files_source_leaves_a_partial_last_line_for_the_next_run(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text("complete\npart")
    src, d = FilesAdapter(str(log), ctx(tmp_path)), Drive()
    assert [t for _, _, t in Drive.lines(d.run(src))] == ["complete"]
    with log.open("a") as fh:
        fh.write("ial\n")
    assert Drive.lines(d.run(src)) == [(str(log), 2, "partial")]


def test_files_source_follows_a_rotated_file_and_starts_the_new_one_at_zero(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    _append(log, "before-1")
    src, d = FilesAdapter(str(tmp_path / "app.log*"), ctx(tmp_path)), Drive()
    d.run(src)
    _append(log, "tail written before rotation")
    os.rename(log, tmp_path / "app.log.1")  # logrotate's default: rename, then a new file
    _append(log, "new-1")
    got = sorted(Drive.lines(d.run(src)))
    assert got == [(str(log), 1, "new-1"), (str(tmp_path / "app.log.1"), 2, "tail written before rotation")]
    assert d.run(src) == []
    assert set(d.state) == {f"file:{log}", f"file:{tmp_path / 'app.log.1'}"}


def test_files_source_rereads_a_truncated_file_from_the_start(tmp_path: Path) -> None:
    log = tmp_path / "t.log"
    _append(log, "aaaaaaaaaa", "bbbbbbbbbb")
    src, d = FilesAdapter(str(log), ctx(tmp_path)), Drive()
    d.run(src)
    log.write_text("")  # copytruncate
    _append(log, "fresh")
    assert Drive.lines(d.run(src)) == [(str(log), 1, "fresh")]


def test_files_source_rereads_a_file_rewritten_in_place_with_the_same_size(tmp_path: Path) -> None:
    log = tmp_path / "r.log"
    _append(log, "first version")
    src, d = FilesAdapter(str(log), ctx(tmp_path)), Drive()
    d.run(src)
    with log.open("r+") as fh:  # same inode, different first bytes, grown
        fh.write("FIRST VERSION\nmore\n")
    assert [t for _, _, t in Drive.lines(d.run(src))] == ["FIRST VERSION", "more"]


def test_files_source_drops_state_of_deleted_files_and_skips_binaries(tmp_path: Path) -> None:
    (tmp_path / "bin.dat").write_bytes(b"\0\1\2AKIA" * 100)
    gone = tmp_path / "gone.log"
    _append(gone, "x")
    src, d = FilesAdapter(str(tmp_path), ctx(tmp_path)), Drive()
    assert [p.location for p in d.run(src)] == [str(gone)]
    gone.unlink()
    d.run(src)
    assert d.state == {}


def test_files_source_streams_a_large_file_in_blocks_with_a_checkpoint_each(tmp_path: Path) -> None:
    log = tmp_path / "big.log"
    line = "x" * 99 + "\n"
    log.write_text(line * (3 * BLOCK // 100 + 7))
    src, d = FilesAdapter(str(log), ctx(tmp_path)), Drive()
    pieces = d.run(src)
    assert len(pieces) >= 3 and all(p.nbytes <= 2 * BLOCK for p in pieces)  # a block plus the line it cut
    assert sum(p.nbytes for p in pieces) == log.stat().st_size
    assert pieces[1].first_line == pieces[0].text.count("\n") + 1


def test_files_source_resumes_after_a_crash_without_skipping_or_repeating(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    log.write_text(("y" * 99 + "\n") * (2 * BLOCK // 100 + 50))
    src, d = FilesAdapter(str(log), ctx(tmp_path)), Drive()
    first = d.run(src, crash_after_checkpoints=1)
    rest = d.run(src)
    assert sum(p.nbytes for p in first + rest) == log.stat().st_size
    assert rest[0].first_line == first[-1].first_line + first[-1].text.count("\n")
