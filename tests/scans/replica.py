"""One broker replica (a container + its scan scheduler) in its own process, for the PostgreSQL test.

Usage: python tests/scans/replica.py DATA_DIR SECONDS   (settings from NHI_BROKER_* env)
Prints ``ready`` once scheduling, and ``fired=N`` when it stops.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from broker.config import Settings
from broker.container import Container
from broker.runtime import start_scan_scheduler


def main() -> None:
    data_dir, seconds = Path(sys.argv[1]), float(sys.argv[2])
    container = Container.build(Settings(data_dir=data_dir))
    scheduler = start_scan_scheduler(container, poll_seconds=0.2)
    print("ready", flush=True)
    time.sleep(seconds)  # the replica's lifetime in this test
    scheduler.stop()
    container.close()
    print(f"fired={scheduler.fired}", flush=True)


if __name__ == "__main__":
    main()
