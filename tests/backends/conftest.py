"""Fixtures for the backend adapter tests: real OpenBao, real PostgreSQL, a moto server.

Servers are session-scoped (each starts in about a second) and shared with the rest of the suite
where tests/conftest.py already provides them; every test gets its own names.
"""

from __future__ import annotations

import pathlib
import sys

import pytest

sys.path.append(str(pathlib.Path(__file__).parents[1]))

from support.postgres import PostgresServer

from broker.backends.openbao_http import OpenBaoHTTP
from broker.openbao_server import OpenBaoServer


# -- OpenBao (the session's dev server from tests/conftest.py) ------------------------------------
@pytest.fixture(scope="session")
def openbao_http(openbao: OpenBaoServer) -> OpenBaoHTTP:
    return OpenBaoHTTP(openbao.address, openbao.root_token)


# -- PostgreSQL (tests/conftest.py's pg_server: 127.0.0.1:5432 or a private cluster) ---------------
@pytest.fixture(scope="session")
def postgres_server(pg_server: PostgresServer) -> PostgresServer:
    return pg_server


# the session-scoped `moto_server` fixture lives in tests/conftest.py
