"""Secret scanning: rules as data, a keyword-prefiltered engine, known-grant matching, reports.

Public surface (what the API and CLI use)::

    from scanners import Scanner, Finding, KnownSecretIndex, default_scanner, scan_text_async

``scanners`` knows nothing of the broker's HTTP layer or store; it is standalone.
"""

from __future__ import annotations

from scanners.engine import Finding, GrantMatch, Scanner, default_scanner, scan_text_async
from scanners.known import KnownSecretIndex
from scanners.redact import redact_text

__all__ = [
    "Finding",
    "GrantMatch",
    "KnownSecretIndex",
    "Scanner",
    "default_scanner",
    "redact_text",
    "scan_text_async",
]
