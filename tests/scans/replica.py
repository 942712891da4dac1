"""One broker replica (a container + its scan scheduler) in its own process, for the PostgreSQL test.

Usage: python tests/scans/replica.py DATA_DIR   (settings from NHI_BROKER_* env)
Prints ``ready`` once scheduling; writes how many times its scheduler fired to ``DATA_DIR/fired``
as it goes; stops when ``DATA_DIR/stop`` exists (the test decides by what happened, not by time)
and prints ``fired=N``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from broker.config import Settings
from broker.container import Container
from broker.runtime import start_scan_scheduler


def main() -> None:
    data_dir = Path(sys.argv[1])
    container = Container.build(Settings(data_dir=data_dir))
    scheduler = start_scan_scheduler(container, poll_seconds=0.2)
    print("ready", flush=True)
    status, stop = data_dir / "fired", data_dir / "stop"
    while not stop.exists():
        status.with_suffix(".tmp").write_text(str(scheduler.fired))
        status.with_suffix(".tmp").replace(status)
        time.sleep(0.1)  # a poll interval, not a wait for something to happen
    scheduler.stop()
    container.close()
    print(f"fired={scheduler.fired}", flush=True)


if __name__ == "__main__":
    main()
