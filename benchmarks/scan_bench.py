"""Secret-scanner benchmark (issue 18): every engine and the shipped combination, one run.

    .venv/bin/python benchmarks/scan_bench.py [--realcode-mb 10] [--logmix-mb 10] [--ds-mb 1]

Prints, side by side:

1. recall and near-miss rate per family on the labelled provider-format corpus
   (tests/data/scanner/provider_formats.yaml — documented formats, a source per type);
2. findings per MB on the real-code corpus (a deterministic, uncurated sample of the venv's
   site-packages and /usr/share/doc, ``--realcode-mb`` per root; detect-secrets on ``--ds-mb``);
3. whole-process throughput and peak RSS (``nhi-broker scan`` vs the Kingfisher CLI vs
   detect-secrets) on the real-code sample and on a generated log/prompt mix;
4. in-process p50/p99 per 4 KB message, with 1,000 known grants indexed for the broker.

Engines: ``before-18`` = the broker's engine and rule files as they were when issue 18 started
(git ``BEFORE_REV``), ``builtin`` = today's own rules + structured detectors without Kingfisher
(what runs before the engine is ready or with ``--engine builtin``), ``shipped`` =
Kingfisher SDK + supplement own rules + structured detectors + known grants (what ships),
``kingfisher-sdk`` (alone), ``betterleaks`` (the ``betterleaks-py`` binding, when installed),
``kingfisher-cli`` (``kingfisher-bin``, ``--no-binary --no-extract-archives --no-validate
--no-dedup``), ``detect-secrets`` (library, default plugins). Scoring is by line for all.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._realcode import build as build_realcode
from scanners import GrantMatch, KnownSecretIndex, Scanner
from scanners.files import iter_files, scan_file
from scanners.format_corpus import LabelledCase, load
from scanners.kingfisher import KingfisherEngine

VENV_BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]
KEY = os.urandom(32)
BEFORE_REV = "4f0e871"  # main when issue 18 started: the broker's own engine and rules, unchanged
KF_FLAGS = ["--no-binary", "--no-extract-archives", "--no-validate", "--no-dedup", "--format", "json"]
Span = tuple[int, int]  # first and last line of one finding
LinesOf = Callable[[Path, bytes], list[Span]]  # (file, data) -> findings as line spans


def _lines(spans: list[Span]) -> set[int]:
    return {ln for a, b in spans for ln in range(a, b + 1)}


# -- engines, file by file ----------------------------------------------------------------------
def _broker_lines(scanner: Scanner) -> LinesOf:
    def run(p: Path, data: bytes) -> list[Span]:
        out: list[Span] = []
        text: str | None = None
        for f in scan_file(scanner, p, str(p)):
            if f.end > f.start:
                text = data.decode("utf-8", errors="replace") if text is None else text
                out.append((f.line, f.line + text.count("\n", f.start, f.end)))
            else:
                out.append((f.line, f.line))
        return out

    return run


def _before_scanner(tmp: Path) -> Scanner | None:
    """The engine as it was before issue 18 (its rule files from git; no structured detectors)."""
    import io
    import tarfile

    from scanners.rules import load_rules

    res = subprocess.run(
        ["git", "-C", str(ROOT), "archive", BEFORE_REV, "scanners/rules"], capture_output=True, check=False
    )
    if res.returncode != 0:
        return None
    with tarfile.open(fileobj=io.BytesIO(res.stdout)) as tar:
        tar.extractall(tmp / "before", filter="data")
    rules = load_rules(sorted((tmp / "before" / "scanners" / "rules").glob("*.yaml")))
    return Scanner(rules, key=KEY, structured=False, honor_allow_comments=True)


def _sdk_lines(engine: KingfisherEngine) -> LinesOf:
    def run(p: Path, data: bytes) -> list[Span]:
        text = data.decode("utf-8", errors="replace")
        return [(text.count("\n", 0, m.start) + 1, text.count("\n", 0, m.end) + 1) for m in engine.scan(text, str(p))]

    return run


def _betterleaks_lines() -> LinesOf | None:
    try:
        import betterleaks
    except ImportError:
        return None

    def run(p: Path, data: bytes) -> list[Span]:
        try:
            found = betterleaks.scan_file(str(p))
        except Exception:
            return []
        return [(f.location.start_line, f.location.end_line) for f in found]

    return run


def _detect_secrets_lines() -> LinesOf:
    from detect_secrets import SecretsCollection
    from detect_secrets.settings import default_settings

    def run(p: Path, data: bytes) -> list[Span]:
        with default_settings():
            col = SecretsCollection()
            col.scan_file(str(p))
            return [(s.line_number, s.line_number) for s in col[str(p)]]

    return run


def _process(cmd: list[str], cwd: Path | None = None) -> tuple[float, int, str]:
    """Wall seconds, peak RSS (KB, measured by /usr/bin/time: a child forked from this big
    process would inherit its RSS high-water mark) and stdout of one process."""
    with tempfile.TemporaryFile() as out, tempfile.NamedTemporaryFile("r") as rss_file:
        t = time.perf_counter()
        subprocess.run(
            ["/usr/bin/time", "-f", "%M", "-o", rss_file.name, *cmd],
            stdout=out,
            stderr=subprocess.DEVNULL,
            cwd=cwd,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            check=False,
        )
        wall = time.perf_counter() - t
        out.seek(0)
        rss = int((rss_file.read().strip().splitlines() or ["0"])[-1])
        return wall, rss, out.read().decode(errors="replace")


def _kingfisher_cli(target: Path) -> tuple[float, int, dict[str, list[Span]]]:
    wall, rss, out = _process([str(VENV_BIN / "kingfisher"), "scan", str(target), *KF_FLAGS])
    doc = json.loads(out.splitlines()[0]) if out.strip() else {"findings": []}
    lines: dict[str, list[Span]] = defaultdict(list)
    for f in doc.get("findings", []):
        line = int(f["finding"]["line"])
        lines[str(Path(f["finding"]["path"]).resolve())].append((line, line))
    return wall, rss, lines


# -- 1. labelled corpus ---------------------------------------------------------------------------
def labelled(engines: dict[str, LinesOf], tmp: Path) -> dict[str, dict[str, tuple[int, int, int, int]]]:
    cases = load()
    files: list[tuple[LabelledCase, Path]] = []
    for i, c in enumerate(cases):
        p = tmp / "labelled" / f"c{i:03d}" / c.path
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(c.data)
        files.append((c, p))
    _, _, cli = _kingfisher_cli(tmp / "labelled")
    runners: dict[str, LinesOf] = {**engines, "kingfisher-cli": lambda p, d: cli.get(str(p.resolve()), [])}
    # per engine, per family: (positives found, positives, near misses flagged, near misses)
    table: dict[str, dict[str, list[int]]] = {n: defaultdict(lambda: [0, 0, 0, 0]) for n in runners}
    for name, run in runners.items():
        for c, p in files:
            lines = _lines(run(p, c.data))
            row = table[name][c.family]
            if c.positive:
                row[0] += bool(lines & c.lines) if c.lines else bool(lines)
                row[1] += 1
            else:
                row[2] += bool(lines)
                row[3] += 1
    return {n: {fam: (r[0], r[1], r[2], r[3]) for fam, r in fams.items()} for n, fams in table.items()}


# -- 2. real code ---------------------------------------------------------------------------------
def realcode(engines: dict[str, LinesOf], root: Path, ds_root: Path) -> dict[str, tuple[int, float]]:
    files = [p for p in iter_files(root)]
    mb = sum(p.stat().st_size for p in files) / 1e6
    out: dict[str, tuple[int, float]] = {}
    for name, run in engines.items():
        if name == "detect-secrets":
            sub = list(iter_files(ds_root))
            n = sum(len(run(p, b"")) for p in sub)
            out[name] = (n, n / (sum(p.stat().st_size for p in sub) / 1e6))
            continue
        n = sum(len(run(p, p.read_bytes())) for p in files)
        out[name] = (n, n / mb)
    _, _, cli = _kingfisher_cli(root)
    n = sum(len(v) for v in cli.values())
    out["kingfisher-cli"] = (n, n / mb)
    return out


# -- 3. whole process -----------------------------------------------------------------------------
def whole_process(target: Path, ds_target: Path | None) -> dict[str, tuple[float, float, int]]:
    mb = sum(p.stat().st_size for p in iter_files(target)) / 1e6
    py = [sys.executable, "-m", "broker.cli", "scan", str(target), "--format", "json", "-o", os.devnull]
    out: dict[str, tuple[float, float, int]] = {}
    for name, cmd in (
        ("builtin", [*py, "--engine", "builtin"]),
        ("shipped", py),
        ("kingfisher-cli", [str(VENV_BIN / "kingfisher"), "scan", str(target), *KF_FLAGS]),
    ):
        _process(cmd)  # warm caches (compiled rules, page cache)
        wall, rss, _ = _process(cmd)
        out[name] = (mb / wall, wall, rss)
    if ds_target is not None:
        ds_mb = sum(p.stat().st_size for p in iter_files(ds_target)) / 1e6
        wall, rss, _ = _process(
            [str(VENV_BIN / "detect-secrets"), "scan", "--all-files", str(ds_target)], cwd=ds_target
        )
        out["detect-secrets"] = (ds_mb / wall, wall, rss)
    return out


# -- 4. in-process latency ------------------------------------------------------------------------
def latency(fns: dict[str, Callable[[str], object]], text: str, n: int) -> dict[str, tuple[float, float]]:
    rng = random.Random(1)
    starts = [rng.randrange(0, max(1, len(text) - 4096)) for _ in range(n)]
    out = {}
    for name, fn in fns.items():
        count = n if name != "detect-secrets" else min(n, 30)
        for s in starts[:20]:
            fn(text[s : s + 4096])
        lat = []
        for s in starts[:count]:
            t = time.perf_counter()
            fn(text[s : s + 4096])
            lat.append(time.perf_counter() - t)
        q = statistics.quantiles(lat, n=100)
        out[name] = (statistics.median(lat) * 1000, q[98] * 1000)
    return out


def _ds_text(text: str) -> object:
    from detect_secrets.core.scan import scan_line
    from detect_secrets.settings import default_settings

    with default_settings():
        return [s for line in text.splitlines() for s in scan_line(line)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--realcode-mb", type=float, default=10.0, help="MB sampled from each real-code root")
    ap.add_argument("--logmix-mb", type=float, default=10.0)
    ap.add_argument("--ds-mb", type=float, default=1.0, help="MB per root for detect-secrets (slow)")
    ap.add_argument("--messages", type=int, default=2000)
    args = ap.parse_args()
    t0 = time.perf_counter()
    engine = KingfisherEngine().load()
    index = KnownSecretIndex(KEY)
    for i in range(1000):
        index.add_secret(f"hvs.{os.urandom(45).hex()}", GrantMatch(f"g{i}", f"t{i}", "bench"))
    shipped = Scanner(key=KEY, engine=engine, known=index)
    builtin = Scanner(key=KEY, known=index)
    before_dir = Path(tempfile.mkdtemp(prefix="scan-bench-before-"))
    before = _before_scanner(before_dir)
    engines: dict[str, LinesOf] = {} if before is None else {"before-18": _broker_lines(before)}
    engines |= {
        "builtin": _broker_lines(Scanner(key=KEY, honor_allow_comments=True)),
        "shipped": _broker_lines(Scanner(key=KEY, engine=engine, honor_allow_comments=True)),
        "kingfisher-sdk": _sdk_lines(engine),
    }
    bl = _betterleaks_lines()
    if bl is not None:
        engines["betterleaks"] = bl
    engines["detect-secrets"] = _detect_secrets_lines()
    with tempfile.TemporaryDirectory(prefix="scan-bench-") as d:
        tmp = Path(d)
        sizes = build_realcode(tmp / "realcode", args.realcode_mb)
        ds_sizes = build_realcode(tmp / "ds", args.ds_mb)
        from scanners.synth_corpus import build as build_mix

        mix, planted = build_mix(random.Random(7), int(args.logmix_mb * 1_000_000))
        (tmp / "logmix").mkdir()
        (tmp / "logmix" / "mix.log").write_text(mix)
        print(
            f"real-code sample: {', '.join(f'{k}: {v / 1e6:.1f} MB' for k, v in sizes.items())}; "
            f"detect-secrets on {sum(ds_sizes.values()) / 1e6:.1f} MB; log/prompt mix {len(mix) / 1e6:.1f} MB "
            f"with {len(planted)} planted secrets",
            flush=True,
        )

        lab = labelled(engines, tmp)
        names = list(lab)
        fams = sorted({f for t in lab.values() for f in t})
        print("\n1. labelled corpus: recall (found/positives) | near misses flagged, per family")
        print(f"{'family':<20}" + "".join(f"{n:>17}" for n in names))
        for fam in fams:
            cells = []
            for n in names:
                tp, p, fp, q = lab[n][fam]
                cells.append(f"{tp}/{p} | {fp}/{q}")
            print(f"{fam:<20}" + "".join(f"{c:>17}" for c in cells))
        print(
            f"{'TOTAL recall':<20}"
            + "".join(
                f"{sum(r[0] for r in lab[n].values()) / sum(r[1] for r in lab[n].values()):>17.1%}" for n in names
            )
        )
        print(
            f"{'TOTAL near-miss':<20}"
            + "".join(
                f"{sum(r[2] for r in lab[n].values()) / sum(r[3] for r in lab[n].values()):>17.1%}" for n in names
            )
        )
        zero = {n: [f for f in fams if lab[n][f][0] == 0] for n in names}
        print(f"{'families at 0':<20}" + "".join(f"{len(zero[n]):>17}" for n in names))
        print(f"  shipped: families with zero coverage: {zero['shipped'] or 'none'}", flush=True)

        rc = realcode(engines, tmp / "realcode", tmp / "ds")
        print("\n2. real code: findings (finding lines) and findings per MB")
        for n, (cnt, per) in rc.items():
            print(f"{n:<20}{cnt:>8}{per:>10.3f}/MB" + ("  (detect-secrets sample)" if n == "detect-secrets" else ""))

        print("\n3. whole process: MB/s, wall s, peak RSS")
        targets = (("real code", tmp / "realcode", tmp / "ds"), ("log/prompt mix", tmp / "logmix", None))
        for label, target, ds in targets:
            wp = whole_process(target, ds)
            for n, (mbs, wall, rss) in wp.items():
                print(f"  {label:<16}{n:<18}{mbs:>8.2f} MB/s{wall:>8.2f} s{rss / 1024:>8.0f} MB")
            print(flush=True)

        print("4. in-process latency per 4 KB message (1,000 known grants indexed for the broker)")
        fns: dict[str, Callable[[str], object]] = (
            {}
            if before is None
            else {"before-18": Scanner(before.rules, key=KEY, known=index, structured=False).scan_and_redact}
        )
        fns |= {"builtin": builtin.scan_and_redact, "shipped": shipped.scan_and_redact, "kingfisher-sdk": engine.scan}
        if bl is not None:
            import betterleaks

            fns["betterleaks"] = betterleaks.scan_string
        fns["detect-secrets"] = _ds_text
        for n, (p50, p99) in latency(fns, mix, args.messages).items():
            note = "  (30 messages)" if n == "detect-secrets" else ""
            print(f"  {n:<18}p50 {p50:>7.3f} ms   p99 {p99:>7.3f} ms{note}")
        shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(before_dir, ignore_errors=True)
    print(f"\nbenchmark ran in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
