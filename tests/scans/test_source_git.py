"""Git source on a real temporary repository: history, incremental commits, lines, resume."""

from __future__ import annotations

import subprocess
from pathlib import Path

from scanners.sources.git import GitAdapter

from .helpers import Drive, ctx


def git(repo: Path, *args: str) -> str:
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.test",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.test",
        "PATH": "/usr/bin:/bin",
    }
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True).stdout.strip()


def commit(repo: Path, path: str, content: str, message: str = "c") -> str:
    f = repo / path
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(content)
    git(repo, "add", path)
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def make_repo(tmp: Path) -> Path:
    repo = tmp / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    return repo


def test_git_source_scans_all_history_first_then_only_new_commits(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    c1 = commit(repo, "a.txt", "alpha\nbeta\n")
    c2 = commit(repo, "a.txt", "alpha\nbeta\ngamma\n")
    src, d = GitAdapter(str(repo), ["--all"], ctx(tmp_path)), Drive()
    pieces = d.run(src)
    assert [(p.meta["commit"], Drive.lines([p])) for p in pieces] == [
        (c1, [(f"{repo}:a.txt", 1, "alpha"), (f"{repo}:a.txt", 2, "beta")]),
        (c2, [(f"{repo}:a.txt", 3, "gamma")]),
    ]
    assert d.run(src) == []
    c3 = commit(repo, "dir/b.cfg", "x=1\n", "third")
    new = d.run(src)
    assert [(p.meta["commit"], p.meta["path"], Drive.lines([p])[0][1:]) for p in new] == [(c3, "dir/b.cfg", (1, "x=1"))]


def test_git_source_sees_commits_on_a_new_branch_once(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    commit(repo, "a.txt", "one\n")
    src, d = GitAdapter(str(repo), ["--all"], ctx(tmp_path)), Drive()
    d.run(src)
    git(repo, "checkout", "-q", "-b", "feature")
    c = commit(repo, "f.txt", "feature line\n")
    git(repo, "checkout", "-q", "main")
    assert [p.meta["commit"] for p in d.run(src)] == [c]
    assert d.run(src) == []


def test_git_source_resumes_an_interrupted_pass_without_repeating_commits(tmp_path: Path, monkeypatch) -> None:
    import scanners.sources.git as gitmod

    monkeypatch.setattr(gitmod, "CHECKPOINT_COMMITS", 2)
    repo = make_repo(tmp_path)
    commits = [commit(repo, f"f{i}.txt", f"line {i}\n") for i in range(7)]
    src, d = GitAdapter(str(repo), ["--all"], ctx(tmp_path)), Drive()
    first = d.run(src, crash_after_checkpoints=2)
    assert "git:pending" in d.state and "git:tips" not in d.state
    rest = d.run(src)
    assert [p.meta["commit"] for p in first + rest] == commits
    assert "git:pending" not in d.state and d.run(src) == []


def test_git_source_maps_added_lines_to_their_line_in_the_new_file(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    commit(repo, "m.txt", "l1\nl2\nl3\nl4\n")
    c = commit(repo, "m.txt", "l1\nINSERTED\nl2\nl3\nl4\nEND\n")
    src, d = GitAdapter(str(repo), ["--all"], ctx(tmp_path)), Drive()
    pieces = [p for p in d.run(src) if p.meta["commit"] == c]
    assert [x[1:] for x in Drive.lines(pieces)] == [(2, "INSERTED"), (6, "END")]
