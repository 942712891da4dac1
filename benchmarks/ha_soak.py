"""Chaos soak on the `up --ha` topology: 8 agents through HAProxy while a random replica is SIGKILLed
and restarted and the OpenBao leader is SIGKILLed and restarted, alternately; then the end checks
against OpenBao and the store (tests/support/soak.py). Prints the figures.

    .venv/bin/python benchmarks/ha_soak.py [--minutes 10] [--agents 8] [--chaos-period 20]
"""

from __future__ import annotations

import argparse
import json
import sys

from _ha import ROOT, ha_stack

sys.path.append(str(ROOT / "tests"))  # never ahead of the real packages (tests/rotation)

from support.soak import run_soak


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--agents", type=int, default=8)
    ap.add_argument("--chaos-period", type=float, default=20.0, help="seconds between chaos actions (±30%%)")
    ap.add_argument("--database-url", default=None)
    args = ap.parse_args()
    with ha_stack(3, args.database_url) as stack:
        report = run_soak(stack, args.minutes * 60, agents=args.agents, chaos_period=args.chaos_period)
    summary = report.summary()
    print(json.dumps(summary, indent=2, default=str))
    sys.exit(1 if summary["violations"] else 0)


if __name__ == "__main__":
    main()
