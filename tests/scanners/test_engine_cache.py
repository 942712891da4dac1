"""Start-up caches: the own rules' Hyperscan database (keyed by a hash of the rules; a changed rule
compiles a new one) and the engine's compiled rules (the SDK's cache)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from scanners._ruleset import RuleSet, rules_hash
from scanners.kingfisher import KingfisherEngine
from scanners.rules import load_rules


def test_ruleset_database_is_stored_then_loaded_and_scans_the_same(tmp_path: Path) -> None:
    rules = load_rules()
    first = RuleSet(rules, cache_dir=tmp_path)
    second = RuleSet(rules, cache_dir=tmp_path)
    assert (first.cache_status, second.cache_status) == ("stored", "loaded")
    text = "token ghp_" + "a1B2" * 9 + "\naws_access_key_id = AKIA" + "QWERTYUIOPASDF23"
    assert [(c.rule.id, c.start) for c in first.candidates(text)] == [
        (c.rule.id, c.start) for c in second.candidates(text)
    ]


def test_a_changed_rule_invalidates_the_cached_database(tmp_path: Path) -> None:
    rules = list(load_rules())
    RuleSet(rules, cache_dir=tmp_path)
    changed = [dataclasses.replace(rules[0], keywords=(*rules[0].keywords, "new-kw-18")), *rules[1:]]
    assert rules_hash(changed) != rules_hash(rules)
    rs = RuleSet(changed, cache_dir=tmp_path)
    assert rs.cache_status == "stored"
    assert len(list(tmp_path.glob("hs-*.db"))) == 2


def test_corrupt_cache_is_recompiled_and_unsafe_directory_is_bypassed(tmp_path: Path) -> None:
    rules = load_rules()
    RuleSet(rules, cache_dir=tmp_path)
    [db] = tmp_path.glob("hs-*.db")
    db.write_bytes(b"not a database")
    assert RuleSet(rules, cache_dir=tmp_path).cache_status in ("stored",)
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    assert RuleSet(rules, cache_dir=shared).cache_status == "bypassed"
    assert list(shared.glob("hs-*.db")) == []


def test_engine_loads_its_compiled_rules_from_the_cache(engine: KingfisherEngine) -> None:
    again = KingfisherEngine(cache_dir=engine.cache_dir).load()
    assert again.cache_status == "loaded" and again.ready
    assert again.rule_count() == engine.rule_count() > 400


def test_engine_compiles_in_the_background_and_reports_ready(engine: KingfisherEngine) -> None:
    eng = KingfisherEngine(cache_dir=engine.cache_dir).start()
    assert eng.wait(timeout=300)
    assert [m.rule_id for m in eng.scan("DIGITALOCEAN_TOKEN=dop_v1_" + "a1b2c3d4" * 8)] != []


def test_start_never_waits_on_a_compile_in_progress(engine: KingfisherEngine) -> None:
    """Regression: scans call start() while the engine loads; start() once waited on the compile's
    lock, so API requests stalled for the whole load."""
    import threading

    eng = KingfisherEngine(cache_dir=engine.cache_dir)
    with eng._lock:  # what a compile in progress holds
        eng.start()  # the compile thread now waits for the lock
        returned = threading.Event()
        threading.Thread(target=lambda: (eng.start(), returned.set()), daemon=True).start()
        assert returned.wait(timeout=60)
        assert not eng.ready
    assert eng.wait(timeout=300)
