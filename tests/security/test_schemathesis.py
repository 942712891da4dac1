"""A bounded schemathesis run against a broker on loopback: no operation answers 5xx, and every
answer is one the OpenAPI document lists (issue 12 §3).

Every operation is fuzzed except the ones that call out to admin-defined endpoints (registering
or rotating a managed secret, running a scan job); those have targeted tests
(tests/security/test_ssrf.py, tests/rotation, tests/scans). ``NHI_SCHEMATHESIS_EXAMPLES`` sets the
examples per operation (default 20). The last test prints the figures: cases, operations, 5xx.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    allow_header_conformance,
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from support.broker import ADMIN_TOKEN, RunningBroker, start_broker

pytestmark = [pytest.mark.openbao, pytest.mark.slow]

EXAMPLES = int(os.environ.get("NHI_SCHEMATHESIS_EXAMPLES", "20"))
OUTBOUND = [  # (method, path): call admin-defined endpoints; covered by targeted tests
    ("PUT", "/v1/admin/managed-secrets/{name}"),
    ("POST", "/v1/admin/managed-secrets/{name}/rotate"),
    ("POST", "/v1/admin/scan-jobs/{name}/run"),
]
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    allow_header_conformance,
]
STATS: dict[str, Counter[str]] = {"cases": Counter(), "status": Counter(), "server_errors": Counter()}


@pytest.fixture(scope="module")
def fuzz_broker(openbao, tmp_path_factory) -> Iterator[RunningBroker]:
    # generous limits: the fuzzer is one address sending thousands of requests
    running = start_broker(
        tmp_path_factory.mktemp("fuzz"),
        openbao,
        limits={"auth_failures_per_minute": 100_000, "scans_per_minute": 100_000, "max_queued_scans": 1000},
    )
    yield running
    running.stop()


def _operations(broker: RunningBroker) -> list[Any]:
    schema = schemathesis.openapi.from_url(f"{broker.url}/openapi.json")
    ops = [result.ok() for result in schema.get_all_operations()]
    return [
        op
        for op in ops
        if (op.method.upper(), op.path) not in OUTBOUND and not op.path.startswith("/v1/tasks/{task_id}/gateway/")
    ]  # calls upstreams: tests/gateway


def _exercise(broker: RunningBroker, operation: Any, mode: GenerationMode, failures: list[str]) -> None:
    label = f"{operation.method.upper()} {operation.path}"
    agent = operation.path.startswith("/v1/tasks") or operation.path == "/v1/scan"

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
    )
    def run(case: Any) -> None:
        token = broker.token() if agent else ADMIN_TOKEN  # a fresh identity token per call (single use)
        case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
        response = case.call(headers={"Authorization": f"Bearer {token}"}, timeout=30)
        STATS["cases"][label] += 1
        STATS["status"][str(response.status_code)] += 1
        if response.status_code >= 500:
            STATS["server_errors"][label] += 1
        try:
            case.validate_response(response, checks=CHECKS)
        except (AssertionError, BaseExceptionGroup) as exc:  # a FailureGroup: every failed check of the case
            failures.append(f"{label}: {response.status_code} {str(exc)[:600]}")

    try:
        run()
    except Unsatisfiable:  # nothing in the operation can be made invalid (no parameters, no body)
        assert mode is GenerationMode.NEGATIVE, label


def test_no_operation_answers_a_server_error_or_an_undocumented_status(fuzz_broker: RunningBroker) -> None:
    failures: list[str] = []
    operations = _operations(fuzz_broker)
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):  # valid input, and input the schema refuses
            _exercise(fuzz_broker, operation, mode, failures)
    assert len(STATS["cases"]) == len(operations), "some operations were never called"
    assert not failures, "\n".join(dict.fromkeys(failures))


def test_schemathesis_figures(capsys: pytest.CaptureFixture[str]) -> None:
    cases, operations = sum(STATS["cases"].values()), len(STATS["cases"])
    with capsys.disabled():
        print(
            f"\nschemathesis: {cases} cases, {operations} operations, "
            f"{sum(STATS['server_errors'].values())} server errors; statuses {dict(sorted(STATS['status'].items()))}"
        )
    assert operations >= 40, "the run did not reach the operations"
    assert not STATS["server_errors"], STATS["server_errors"]
