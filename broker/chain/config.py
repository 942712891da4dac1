"""Detector configuration, from ``chain.yaml`` in the policy bundle.

Validated at load with pydantic; every problem names its field (``detectors.burst.max_requests``)
and an action name that is not in the catalog is refused (it would never match). A matcher with
no condition is refused unless it says ``any: true`` (an empty matcher would be trivially true).
A bundle without ``chain.yaml`` gets the default bundle's file: detectors are never silently off.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from broker.errors import InvalidInput
from broker.models import Consequence, Mode, Sensitivity, Tier
from policies import DEFAULT_BUNDLE

FILE_NAME = "chain.yaml"


class OnEscalation(enum.StrEnum):
    QUARANTINE = "quarantine"  # further credential requests: 409 with the reason
    STEP_UP_ONLY = "step_up_only"  # the task lives on, every further request needs step-up


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StepMatch(_Strict):
    any: bool = False
    actions: tuple[str, ...] = ()
    consequences: tuple[Consequence, ...] = ()
    sensitivities: tuple[Sensitivity, ...] = ()
    external: bool | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> StepMatch:
        conditions = bool(self.actions or self.consequences or self.sensitivities or self.external is not None)
        if not conditions and not self.any:
            raise ValueError("a step matcher needs at least one condition (or `any: true` on purpose)")
        if conditions and self.any:
            raise ValueError("`any: true` cannot be combined with conditions")
        return self


class Sequence(_Strict):
    name: str = Field(pattern=r"^[a-z0-9_]{1,64}$")
    first: StepMatch
    then: StepMatch
    within_seconds: int | None = Field(default=None, ge=1, le=86400 * 7)


class Toggle(_Strict):
    enabled: bool = True


class SequenceDetectorConfig(_Strict):
    enabled: bool = True
    sequences: tuple[Sequence, ...] = ()

    @model_validator(mode="after")
    def _unique(self) -> SequenceDetectorConfig:
        names = [s.name for s in self.sequences]
        if len(names) != len(set(names)):
            raise ValueError("sequence names must be unique")
        return self


class BurstConfig(_Strict):
    enabled: bool = True
    max_requests: int = Field(default=5, ge=1, le=10000)
    window_seconds: int = Field(default=60, ge=1, le=86400)
    min_tier: Tier = Tier.HIGH


class Detectors(_Strict):
    ceiling_exceeded: Toggle = Toggle()
    dangerous_sequence: SequenceDetectorConfig = SequenceDetectorConfig()
    burst: BurstConfig = BurstConfig()
    leaked_secret: Toggle = Toggle()
    review_flagged: Toggle = Toggle()


class DelegationConfig(_Strict):
    # a delegated sub-task that escalates is always reported on its parent's chain; with this on,
    # it escalates the parent too (and with it the whole tree)
    escalate_parent: bool = True


class DetectionConfig(_Strict):
    """When the detectors run for a credential request the decision engine allowed, by control
    mode: before issuance (the request waits for them; a hit is a 403 and nothing is issued) or
    right after it (the credential goes out first; a hit revokes every grant of the task). Modes
    not listed in ``pre_issuance`` are checked after issuance. ``inline`` is always listed: an
    inline decision is by definition checked before anything is issued."""

    pre_issuance: tuple[Mode, ...] = (Mode.INLINE, Mode.REVIEW)

    @field_validator("pre_issuance")
    @classmethod
    def _inline_always(cls, modes: tuple[Mode, ...]) -> tuple[Mode, ...]:
        if Mode.INLINE not in modes:
            raise ValueError("must list inline: inline decisions are always checked before issuance")
        if len(set(modes)) != len(modes):
            raise ValueError("lists a mode twice")
        return modes

    def before_issuance(self, mode: Mode) -> bool:
        return mode in self.pre_issuance


class ChainConfig(_Strict):
    on_escalation: OnEscalation = OnEscalation.QUARANTINE
    detectors: Detectors = Detectors()
    delegation: DelegationConfig = DelegationConfig()
    detection: DetectionConfig = DetectionConfig()


def _field(loc: Iterable[object]) -> str:
    out = ""
    for p in loc:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "chain"


def parse(raw: object, *, catalog: Iterable[str] | None = None, source: str = FILE_NAME) -> ChainConfig:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise InvalidInput(source, "must be a YAML mapping")
    try:
        config = ChainConfig.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidInput(f"{source}:{_field(first['loc'])}", first["msg"]) from None
    if catalog is not None:
        known = set(catalog)
        for i, seq in enumerate(config.detectors.dangerous_sequence.sequences):
            for part in ("first", "then"):
                for action in getattr(seq, part).actions:
                    if action not in known:
                        raise InvalidInput(
                            f"{source}:detectors.dangerous_sequence.sequences[{i}].{part}.actions",
                            f'action "{action}" is not in the action catalog',
                        )
    return config


def load(policy_dir: Path, catalog: Iterable[str] | None = None) -> ChainConfig:
    path = policy_dir / FILE_NAME
    if not path.exists():
        path = DEFAULT_BUNDLE / FILE_NAME
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InvalidInput(str(path), f"is not valid YAML ({type(exc).__name__})") from None
    return parse(raw, catalog=catalog, source=str(path))
