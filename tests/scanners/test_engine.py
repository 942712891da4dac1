from __future__ import annotations

import asyncio
import random
import threading

import pytest

from broker.secrets import Fingerprinter, Secret
from scanners import GrantMatch, KnownSecretIndex, Scanner, scan_text_async
from scanners.checksums import github_crc32
from scanners.synth import expand, github_token
from tests.scanners.conftest import KEY

RNG = random.Random(11)


def test_github_tokens_are_reported_whole_and_distinct_unlike_detect_secrets_858(scanner: Scanner) -> None:
    a, b = github_token(RNG, "ghp_"), github_token(RNG, "ghp_")
    text = f"first {a}\nsecond {b}\n"
    found = scanner.scan(text)
    assert [(text[f.start : f.end]) for f in found] == [a, b]
    assert found[0].fingerprint != found[1].fingerprint
    assert [f.line for f in found] == [1, 2]


def test_github_token_with_wrong_checksum_is_not_flagged(scanner: Scanner) -> None:
    tok = github_token(RNG, "ghp_")
    broken = tok[:-1] + ("A" if tok[-1] != "A" else "B")
    assert github_crc32(tok) and not github_crc32(broken)
    assert scanner.scan(f"token {broken}") == []


def test_finding_never_holds_the_raw_secret(scanner: Scanner) -> None:
    text, [(s, e)] = expand("STRIPE=[[sk_live_%{b62:40}]]", RNG)
    [f] = scanner.scan(text)
    secret = text[s:e]
    assert secret not in repr(f) and secret not in str(f.to_dict())
    assert f.masked == f"sk_live_****{secret[-4:]}"


def test_offsets_are_character_offsets_when_text_has_non_ascii(scanner: Scanner) -> None:
    tok = github_token(RNG, "ghp_")
    text = f"héllo wörld 🔑 — {tok} ✓"
    [f] = scanner.scan(text)
    assert text[f.start : f.end] == tok


def test_redaction_is_consistent_across_a_message_and_distinguishes_secrets(scanner: Scanner) -> None:
    a, b = github_token(RNG, "ghp_"), github_token(RNG, "ghp_")
    result = scanner.scan_and_redact(f"{a} then {b} then {a} again")
    assert a not in result.redacted_text and b not in result.redacted_text
    la = f"[github-classic-pat:ghp_****{a[-4:]}]"
    assert result.redacted_text.count(la) == 2
    assert len(result.findings) == 3


def test_allow_comment_is_honoured_only_when_enabled() -> None:
    tok = github_token(RNG, "ghp_")
    text = f"fixture = '{tok}'  # nhi-broker: allow\n"
    assert Scanner(key=KEY).scan(text) != []
    assert Scanner(key=KEY, honor_allow_comments=True).scan(text) == []


def test_fingerprints_match_the_broker_fingerprinter(scanner: Scanner) -> None:
    tok = github_token(RNG, "ghp_")
    [f] = scanner.scan(tok)
    assert f.fingerprint == Fingerprinter(KEY)(Secret(tok))


def _index_with(secret: str) -> KnownSecretIndex:
    index = KnownSecretIndex(KEY)
    index.add(Fingerprinter(KEY)(secret), GrantMatch("grant-1", "task-1", "agent-a"), length=len(secret))
    return index


@pytest.mark.parametrize(
    "template",
    [
        "tool output: {s} done",  # unknown format, bare
        "postgresql://v-task-abc:{s}@127.0.0.1:5432/app",  # generated DB password inside a URL
        "curl -H 'X-Vault-Token: {s}' http://127.0.0.1:8200/v1/sys",
        "password={s}.",
    ],
)
def test_broker_issued_secret_is_recognised_exactly_and_names_the_grant(template: str) -> None:
    secret = "A1a-" + "".join(RNG.choice("abcdefXYZ0123456789") for _ in range(16))
    scanner = Scanner(key=KEY, known=_index_with(secret))
    text = template.format(s=secret)
    hits = [f for f in scanner.scan(text) if f.grant is not None]
    assert len(hits) == 1
    assert text[hits[0].start : hits[0].end] == secret
    assert (hits[0].grant.grant_id, hits[0].grant.task_id, hits[0].grant.agent) == ("grant-1", "task-1", "agent-a")
    assert hits[0].fingerprint == Fingerprinter(KEY)(secret)


def test_known_grant_index_without_lengths_still_matches_and_removal_stops_matching() -> None:
    secret = "hvs." + "".join(RNG.choice("abcdefXYZ0123456789") for _ in range(90))
    index = KnownSecretIndex(KEY)
    index.add(Fingerprinter(KEY)(secret), GrantMatch("g2", "t2", "a2"))
    scanner = Scanner(key=KEY, known=index)
    [f] = scanner.scan(f"leaked {secret}")
    assert f.rule_id == "vault-service-token" and f.grant == GrantMatch("g2", "t2", "a2")
    index.remove_grant("g2")
    assert scanner.scan(f"leaked {secret}")[0].grant is None


def test_known_grant_index_is_safe_under_concurrent_add_and_scan() -> None:
    index = KnownSecretIndex(KEY)
    scanner = Scanner(key=KEY, known=index)
    secrets = [f"tok-{i:04d}-" + "x9Y" * 6 for i in range(200)]
    errors: list[BaseException] = []

    def writer() -> None:
        for i, s in enumerate(secrets):
            index.add_secret(s, GrantMatch(f"g{i}", "t", "a"))

    def reader() -> None:
        try:
            for s in secrets:
                scanner.scan(f"out {s} end")
        except BaseException as exc:  # pragma: no cover - the assertion reports it
            errors.append(exc)

    threads = [threading.Thread(target=writer), *[threading.Thread(target=reader) for _ in range(3)]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert all(scanner.scan(s)[0].grant is not None for s in secrets[::50])


def test_async_helper_scans_off_the_event_loop(scanner: Scanner) -> None:
    tok = github_token(RNG, "ghp_")

    async def main() -> tuple[int, str]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        t = asyncio.create_task(ticker())
        result = await scan_text_async(scanner, ("log line without secrets\n" * 40_000) + tok)
        t.cancel()
        return ticks, result.redacted_text[-60:]

    ticks, tail = asyncio.run(main())
    assert ticks > 1  # the loop kept running while the scan worked
    assert tok not in tail and "github-classic-pat" in tail


def test_pem_block_is_one_finding_spanning_the_whole_block(scanner: Scanner) -> None:
    text, [(s, e)] = expand("x = '''\n[[%{pem:RSA PRIVATE KEY}]]\n'''", RNG)
    found = scanner.scan(text)
    assert [(f.rule_id, f.start, f.end) for f in found] == [("private-key-pem", s, e)]
