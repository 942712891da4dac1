"""Fixtures for the backend adapter tests: real OpenBao, real PostgreSQL, a moto server.

Servers are session-scoped (each starts in about a second) and shared with the rest of the suite
where tests/conftest.py already provides them; every test gets its own names.
"""

from __future__ import annotations

import pathlib
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parents[1]))

from support.moto import MotoServer, start_moto
from support.postgres import PostgresServer

from broker.backends._openbao_http import OpenBaoHTTP
from broker.backends.port import IssueRequest
from broker.models import (
    Action,
    Agent,
    Consequence,
    DecisionId,
    Environment,
    GrantId,
    Resource,
    Sensitivity,
    Task,
    TaskId,
    TaskState,
    TrustLevel,
)
from broker.openbao_server import OpenBaoServer


# -- OpenBao (the session's dev server from tests/conftest.py) ------------------------------------
@pytest.fixture(scope="session")
def openbao_http(openbao: OpenBaoServer) -> OpenBaoHTTP:
    return OpenBaoHTTP(openbao.address, openbao.root_token)


# -- PostgreSQL (tests/conftest.py's pg_server: 127.0.0.1:5432 or a private cluster) ---------------
@pytest.fixture(scope="session")
def postgres_server(pg_server: PostgresServer) -> PostgresServer:
    return pg_server


# -- moto ----------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = start_moto(tmp_path_factory.mktemp("moto"))
    try:
        yield server
    finally:
        server.stop()


# -- requests ------------------------------------------------------------------------------------
ACTIONS = {
    "db.read": Action("db.read", Consequence.READ_SENSITIVE, True),
    "db.write": Action("db.write", Consequence.WRITE, True),
    "storage.read": Action("storage.read", Consequence.READ_SENSITIVE, True),
    "storage.write": Action("storage.write", Consequence.WRITE, True),
    "secrets.read": Action("secrets.read", Consequence.SECRET_ACCESS, False),
    "iam.modify": Action("iam.modify", Consequence.PRIVILEGE, False),
    "data.export": Action("data.export", Consequence.EXPORT, False),
}


def make_resource(kind: str, settings: dict[str, Any], name: str = "res") -> Resource:
    return Resource(name=name, kind=kind, sensitivity=Sensitivity.INTERNAL, environment=Environment.DEV,
                    settings=settings)


def make_task(task_id: str | None = None, agent: str = "demo-agent") -> Task:
    now = datetime.now(UTC)
    return Task(task_id=TaskId(task_id or "tsk_" + uuid.uuid4().hex), agent=agent, profile="demo",
                purpose="test", on_behalf_of=None, state=TaskState.ACTIVE, created_at=now,
                expires_at=now + timedelta(hours=1))


def make_request(resource: Resource, action: str, *, ttl: int = 300, uses: int = 0,
                 task: Task | None = None,
                 persist_handle: Callable[[dict[str, Any]], None] | None = None) -> IssueRequest:
    task = task or make_task()
    agent = Agent(name=task.agent, owner="owner", trust_level=TrustLevel.STANDARD, bindings=(), profiles=("demo",))
    return IssueRequest(task=task, agent=agent, action=ACTIONS[action], resource=resource, ttl_seconds=ttl,
                        uses=uses, decision_id=DecisionId("dec_" + uuid.uuid4().hex),
                        grant_id=GrantId("grt_" + uuid.uuid4().hex), persist_handle=persist_handle)
