"""The known-grant index narrows candidate extraction to the lengths of the secrets it holds."""

from __future__ import annotations

from scanners.known import GrantMatch, KnownSecretIndex

KEY = b"k" * 32


def test_index_finds_secret_of_each_registered_length_and_forgets_removed_ones():
    index = KnownSecretIndex(KEY)
    short, long = "s.ABCDEFGHIJKLMNOPQRSTUVWX", "hvs." + "Z" * 90
    index.add_secret(short, GrantMatch("g1", "t1", "a"))
    fp_long = index.add_secret(long, GrantMatch("g2", "t2", "a"))
    assert {m.grant_id for *_, m in index.find(f"x {short} y {long} z")} == {"g1", "g2"}
    index.remove(fp_long)
    assert [m.grant_id for *_, m in index.find(f"x {short} y {long} z")] == ["g1"]
    assert index._lengths == frozenset({len(short)})


def test_index_without_a_length_falls_back_to_every_candidate_until_it_is_removed():
    index = KnownSecretIndex(KEY)
    index.add_secret("s.ABCDEFGHIJKLMNOPQRSTUVWX", GrantMatch("g1", "t1", "a"))
    unknown = "some-secret-value-of-unknown-len"
    index.add(index.fingerprint(unknown), GrantMatch("g2", "t2", "a"))  # restored from a store without lengths
    assert index._lengths is None
    assert [m.grant_id for *_, m in index.find(f"v={unknown}")] == ["g2"]
    index.remove_grant("g2")
    assert index._lengths == frozenset({26})


def test_re_adding_a_fingerprint_with_its_length_replaces_the_unknown_length():
    index = KnownSecretIndex(KEY)
    secret = "s.ABCDEFGHIJKLMNOPQRSTUVWX"
    index.add(index.fingerprint(secret), GrantMatch("g1", "t1", "a"))
    index.add_secret(secret, GrantMatch("g1", "t1", "a"))
    assert index._lengths == frozenset({len(secret)})
