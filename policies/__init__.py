"""Policy bundles (Cedar schema and policies, action catalog, risk table, test cases)."""

from pathlib import Path

DEFAULT_BUNDLE = Path(__file__).parent / "default"
