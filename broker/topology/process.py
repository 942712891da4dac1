"""A child process of the topology: started with its own log, stopped by signal, by its pid."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from broker.errors import UpstreamUnavailable
from broker.openbao_server import die_with_parent


@dataclass
class Child:
    name: str
    argv: list[str]
    log: Path
    env: Mapping[str, str] | None = field(default=None, repr=False)  # holds the replica's secrets
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        """Start the process. From the main thread it dies with us (PR_SET_PDEATHSIG); the kernel
        ties that signal to the *thread* that forked, so a child restarted from a worker thread
        (a chaos or supervisor thread) would die when that thread ends: there it is left out,
        and ``stop()`` remains the way it ends."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        on_main = threading.current_thread() is threading.main_thread()
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(  # noqa: S603 - fixed argv built by the topology
                self.argv,
                stdout=out,
                stderr=out,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=die_with_parent if on_main else None,
                env=dict(self.env) if self.env is not None else None,
            )

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL and reap: no graceful shutdown."""
        if self.proc is not None and self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is None or not self.alive():
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""

    def wait_for(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise UpstreamUnavailable(
                    f"{self.name} exited ({self.proc.returncode}); see {self.log}: {self.tail(1500)}"
                )
            if ready():
                return
            time.sleep(0.1)
        raise UpstreamUnavailable(f"{self.name} not {what} after {timeout:.0f}s; see {self.log}")


def clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The environment of a replica: ours without NHI_BROKER_* settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NHI_BROKER_")}
    env.update(extra)
    return env
