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
    """A short directory only this user can use (a fresh one if the usual one is not ours)."""
    path = Path("/tmp") / f"nhibroker-provider-{os.getuid()}"  # noqa: S108 - ownership checked below
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        st = path.lstat()
        private = st.st_uid == os.getuid() and (st.st_mode & 0o777) == 0o700
        if private and path.is_dir() and not path.is_symlink():
            return path
    except OSError:
        pass
    return Path(tempfile.mkdtemp(prefix="nhibroker-", dir="/tmp"))


def _defuse_environment() -> None:
    if len(tempfile.gettempdir()) > SOCKET_DIR_MAX:
        tempfile.tempdir = str(_private_dir())
    home = os.environ.get("HOME", "")
    if not home or not os.path.isdir(home) or not os.access(home, os.W_OK):
        os.environ["HOME"] = str(_private_dir())


def main(argv: list[str] | None = None) -> None:
    _defuse_environment()

    try:
        from tf.runner import run_provider
    except ModuleNotFoundError:  # the base install: the provider is the `terraform` extra
        sys.stderr.write(
            "terraform-provider-nhibroker: the provider is not installed; pip install 'nhi-broker[terraform]'\n"
        )
        raise SystemExit(1) from None

    from terraform.provider.provider import NhiBrokerProvider

    run_provider(NhiBrokerProvider(), argv if argv is not None else sys.argv)


if __name__ == "__main__":
    main()
