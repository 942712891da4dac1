"""The labelled provider-format corpus (``tests/data/scanner/provider_formats.yaml``) as cases.

Each entry yields one positive (a real-format secret, its spans known) and one near miss, built at
load time from ``scanners.synth`` templates so the repository holds templates, not tokens. Used by
the accuracy tests and by ``benchmarks/scan_bench.py``; scoring is by line so engines that report
lines only (detect-secrets, the Kingfisher CLI) are scored like the in-process ones.
"""

from __future__ import annotations

import datetime
import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from scanners.synth import expand

CORPUS: Final = Path(__file__).resolve().parents[1] / "tests" / "data" / "scanner" / "provider_formats.yaml"


@dataclass(frozen=True, slots=True)
class LabelledCase:
    type: str
    family: str
    source: str
    positive: bool
    data: bytes
    path: str
    lines: frozenset[int]  # lines (1-based) the secret spans; empty for near misses and binaries

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


def _pkcs12(rng: random.Random) -> bytes:
    # deferred: only the corpus generator builds keys and certificates
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import pkcs12
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"client-{rng.randrange(10**6)}")])
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(rng.randrange(1, 2**64))
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    return pkcs12.serialize_key_and_certificates(
        b"client", key, cert, None, serialization.BestAvailableEncryption(b"changeit")
    )


def _lines(text: str, spans: Iterable[tuple[int, int]]) -> frozenset[int]:
    out: set[int] = set()
    for s, e in spans:
        first = text.count("\n", 0, s) + 1
        last = text.count("\n", 0, max(s, e - 1)) + 1
        out.update(range(first, last + 1))
    return frozenset(out)


def load(seed: int = 18, path: Path = CORPUS) -> list[LabelledCase]:
    rng = random.Random(seed)  # noqa: S311 - reproducible fake test data, not secrets
    doc: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    out: list[LabelledCase] = []
    for i, entry in enumerate(doc["cases"]):
        for field in ("type", "family", "source", "positive", "near_miss"):
            if not isinstance(entry.get(field), str):
                raise ValueError(f"{path.name}: cases[{i}]: {field} must be a string")
        fname = entry.get("path") or f"{entry['type']}.txt"
        if entry.get("binary") == "pkcs12":
            out.append(
                LabelledCase(entry["type"], entry["family"], entry["source"], True, _pkcs12(rng), fname, frozenset({1}))
            )
        else:
            text, spans = expand(entry["positive"], rng)
            if not spans:
                raise ValueError(f"{path.name}: cases[{i}] ({entry['type']}): positive marks no [[secret]]")
            out.append(
                LabelledCase(
                    entry["type"], entry["family"], entry["source"], True, text.encode(), fname, _lines(text, spans)
                )
            )
        near, _ = expand(entry["near_miss"], rng)
        near_name = fname if entry.get("binary") is None else fname.rsplit("/", 1)[0] + "/client.conf"
        out.append(
            LabelledCase(entry["type"], entry["family"], entry["source"], False, near.encode(), near_name, frozenset())
        )
    return out
