"""Known-grant matching stays exact on top of the engine: a broker-issued secret planted in any
input is found and names its grant, whatever the engine reports there; before the engine is
ready, the own rules and the known-grant index still run."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from broker.secrets import Fingerprinter
from scanners import GrantMatch, KnownSecretIndex, Scanner
from scanners.format_corpus import load
from scanners.kingfisher import EngineMatch
from scanners.synth import github_token
from tests.scanners.conftest import KEY

RNG = random.Random(18)
MATCH = GrantMatch("grant-18", "task-18", "agent-18")


def _issued() -> list[str]:
    """Secrets shaped like what the broker issues: OpenBao tokens, DB passwords, STS keys, random."""
    b62 = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    return [
        "hvs." + "".join(RNG.choice(b62) for _ in range(91)),
        "A1a-" + "".join(RNG.choice(b62) for _ in range(16)),
        "".join(RNG.choice(b62 + "+/") for _ in range(40)),
        github_token(RNG, "ghp_"),
    ]


def _real_code_texts(limit: int = 20) -> list[str]:
    """This repository's code, the venv's site-packages and /usr/share/doc (the benchmark's
    real-code corpus), a few files of each."""
    import sysconfig

    import scanners

    roots = [
        Path(scanners.__file__).resolve().parents[1] / "broker",
        Path(sysconfig.get_paths()["purelib"]),
        Path("/usr/share/doc"),
    ]
    texts: list[str] = []
    for root in roots:
        picked = 0
        for p in sorted(root.rglob("*")):
            if picked >= limit:
                break
            if (
                p.suffix in (".py", ".md", ".txt", ".rst", ".json", ".yaml")
                and p.is_file()
                and 0 < p.stat().st_size < 200_000
            ):
                texts.append(p.read_text(encoding="utf-8", errors="replace"))
                picked += 1
    return texts


def test_issued_secret_planted_in_corpus_and_real_code_is_found_with_its_grant(shipped: Scanner) -> None:
    hosts = [c.text for c in load() if not c.path.endswith(".p12")] + _real_code_texts()
    for secret in _issued():
        index = KnownSecretIndex(KEY)
        index.add(Fingerprinter(KEY)(secret), MATCH, length=len(secret))
        scanner = Scanner(key=KEY, engine=shipped.engine, known=index)
        for i, host in enumerate(hosts[:: max(1, len(hosts) // 60)]):
            cut = host.find("\n", len(host) // 2) + 1
            for text in (
                host[:cut] + f"leaked {secret} here\n" + host[cut:],
                host[:cut] + f"url: https://svc:{secret}@db.internal/x\n" + host[cut:],
                host[:cut] + f"Authorization: Bearer {secret}\n" + host[cut:],
            ):
                hits = [f for f in scanner.scan(text) if f.grant is not None]
                assert [text[f.start : f.end] for f in hits] == [secret], (i, secret[:6])
                assert hits[0].grant == MATCH and hits[0].fingerprint == Fingerprinter(KEY)(secret)


def test_redaction_labels_are_unchanged_with_the_engine(shipped: Scanner) -> None:
    a = github_token(RNG, "ghp_")
    secret = _issued()[0]  # an OpenBao service token: a format both rule sets know
    index = KnownSecretIndex(KEY)
    index.add_secret(secret, MATCH)
    scanner = Scanner(key=KEY, engine=shipped.engine, known=index)
    result = scanner.scan_and_redact(f"gh {a} vault {secret} again {a}")
    assert result.redacted_text.count(f"[github-classic-pat:ghp_****{a[-4:]}]") == 2
    assert f"[vault-service-token:hvs.****{secret[-4:]}]" in result.redacted_text
    assert [f.grant for f in result.findings if f.grant] == [MATCH]


class NeverReadyEngine:
    """A stand-in for an engine that is still compiling (pure Scanner logic; the real engine's
    readiness is exercised in test_engine_cache.py)."""

    started = 0
    ready = False

    def start(self) -> NeverReadyEngine:
        self.started += 1
        return self

    def scan(self, text: str, path: str | None = None) -> list[EngineMatch]:
        raise AssertionError("scan must not be called before the engine is ready")


def test_scan_before_engine_is_ready_runs_own_rules_and_known_grants_and_says_so() -> None:
    secret = "A1a-" + "Zq9" * 6
    index = KnownSecretIndex(KEY)
    index.add_secret(secret, MATCH)
    eng = NeverReadyEngine()
    scanner = Scanner(key=KEY, known=index, engine=eng)  # type: ignore[arg-type]
    tok = github_token(RNG, "ghp_")
    result = scanner.scan_and_redact(f"out {secret} and {tok}")
    assert result.engine_ready is False and eng.started == 1
    assert {f.rule_id for f in result.findings} == {"broker-issued-secret", "github-classic-pat"}
    assert [f.grant for f in result.findings if f.grant] == [MATCH]


@pytest.mark.parametrize("allow", ["# nhi-broker: allow", "# nhi-broker: allow-file"])
def test_allow_comments_never_hide_a_broker_issued_secret(allow: str) -> None:
    secret = "A1a-" + "Pk7" * 6
    index = KnownSecretIndex(KEY)
    index.add_secret(secret, MATCH)
    scanner = Scanner(key=KEY, known=index, honor_allow_comments=True)
    found = scanner.scan(f"{allow}\nx = '{secret}'  {allow}\n")
    assert [f.grant for f in found] == [MATCH]
