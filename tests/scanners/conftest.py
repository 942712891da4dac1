from __future__ import annotations

import pytest

from scanners import Scanner
from scanners.kingfisher import KingfisherEngine

KEY = bytes(range(32))


@pytest.fixture(scope="session")
def scanner() -> Scanner:
    """The broker's own rules only (what runs before the engine is ready, or without it)."""
    return Scanner(key=KEY)


@pytest.fixture(scope="session")
def engine() -> KingfisherEngine:
    """The real Kingfisher engine (compiled once per session; cached on disk between sessions)."""
    return KingfisherEngine().load()


@pytest.fixture(scope="session")
def shipped(engine: KingfisherEngine) -> Scanner:
    """The shipped combination: engine + supplement own rules + structured detectors."""
    return Scanner(key=KEY, engine=engine)
