"""The chain rules in force: ``chain.yaml`` of the policy bundle and the detectors built from it.

Held as one immutable pair and swapped as one when the bundle reloads, so a request never sees
the detectors of one bundle with the escalation mode of another.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from broker.chain import config as chain_config
from broker.chain.config import ChainConfig
from broker.chain.detectors import inline_detectors
from broker.chain.model import Detector
from broker.models import Action


@dataclass(frozen=True, slots=True)
class Rules:
    config: ChainConfig
    detectors: tuple[Detector, ...]


class ChainRules:
    def __init__(self, policy_dir: Path, catalog: Callable[[], Mapping[str, Action]]) -> None:
        self._dir = policy_dir
        self._catalog = catalog
        self._lock = threading.Lock()
        self._current = self._load()  # a bad chain.yaml stops start-up (InvalidInput names the field)

    @classmethod
    def of(cls, config: ChainConfig) -> ChainRules:
        """Fixed rules (tests, replay): no bundle directory behind them."""
        rules = cls.__new__(cls)
        rules._lock = threading.Lock()
        rules._current = Rules(config, tuple(inline_detectors(config)))
        return rules

    def _load(self) -> Rules:
        config = chain_config.load(self._dir, catalog=self._catalog())
        return Rules(config, tuple(inline_detectors(config)))

    @property
    def current(self) -> Rules:
        return self._current

    def reload(self) -> None:
        """Load ``chain.yaml`` again (after the policy bundle was reloaded and accepted)."""
        rules = self._load()
        with self._lock:
            self._current = rules
