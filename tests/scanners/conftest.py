from __future__ import annotations

import pytest

from scanners import Scanner

KEY = bytes(range(32))


@pytest.fixture(scope="session")
def scanner() -> Scanner:
    return Scanner(key=KEY)
