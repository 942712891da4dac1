"""``terraform-provider-nhibroker``: Terraform starts this executable and speaks gRPC to it.

Nothing may be written to stdout before the plugin handshake line, so this module imports
nothing that prints and logs nothing. Two traps of the ``tf`` runner are defused here: it binds
a unix socket under ``$TMPDIR`` (a path over ~100 bytes cannot be bound) and caches its TLS
certificate under ``$HOME/.cache`` (a missing or read-only HOME breaks it).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

SOCKET_DIR_MAX = 70  # sun_path is 108 bytes; tf appends "/tmpXXXXXXXX/py-tf-plugin.sock"


def _private_dir() -> Path:
    path = Path("/tmp") / f"nhibroker-provider-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def _defuse_environment() -> None:
    if len(tempfile.gettempdir()) > SOCKET_DIR_MAX:
        tempfile.tempdir = str(_private_dir())
    home = os.environ.get("HOME", "")
    if not home or not os.path.isdir(home) or not os.access(home, os.W_OK):
        os.environ["HOME"] = str(_private_dir())


def main(argv: list[str] | None = None) -> None:
    _defuse_environment()

    from tf.runner import run_provider

    from terraform.provider.provider import NhiBrokerProvider

    run_provider(NhiBrokerProvider(), argv if argv is not None else sys.argv)


if __name__ == "__main__":
    main()
