"""The architecture, checked: no import cycles, one kind registry, a fail-closed request flow,
a composition root that starts nothing."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import grimp
import pytest

from broker.backends.kinds import KINDS, ResourceKind
from broker.services.tasks import TaskService

ROOT = Path(__file__).resolve().parents[2]


def _cycles(graph: grimp.ImportGraph, modules: set[str]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    edges = {m: sorted(graph.find_modules_directly_imported_by(m) & modules) for m in modules}
    for start in sorted(modules):
        if start in index:
            continue
        work = [(start, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            recurse = False
            for j in range(i, len(edges[node])):
                nxt = edges[node][j]
                if nxt not in index:
                    work.append((node, j + 1))
                    work.append((nxt, 0))
                    recurse = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if recurse:
                continue
            if low[node] == index[node]:
                component = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    component.append(w)
                    if w == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return out


def test_no_module_import_cycles_counting_function_local_imports():
    graph = grimp.build_graph("broker", "scanners", "rotation", include_external_packages=False)
    modules = set(graph.modules)
    assert "broker.container" in modules and "scanners.engine" in modules
    assert _cycles(graph, modules) == []


def test_scanners_import_nothing_of_the_broker_or_rotation():
    graph = grimp.build_graph("broker", "scanners", "rotation", include_external_packages=False)
    for module in graph.modules:
        if module.startswith("scanners"):
            imported = graph.find_modules_directly_imported_by(module)
            assert not {m for m in imported if m.startswith(("broker", "rotation"))}, module


def test_every_resource_kind_has_one_registry_entry_and_every_surface_agrees():
    assert set(KINDS) == set(ResourceKind)
    # the API schema takes its values from the enum
    from broker.api.schemas import ResourceIn

    schema = ResourceIn.model_json_schema()
    kind_schema = schema["properties"]["kind"]
    ref = kind_schema.get("$ref", "").rsplit("/", 1)[-1]
    values = schema["$defs"][ref]["enum"] if ref else kind_schema["enum"]
    assert sorted(values) == sorted(k.value for k in ResourceKind)
    # the Terraform provider (a separate process talking HTTP) lists the same kinds
    from terraform.provider.resources.resource import BLOCK_OF_KIND
    from terraform.provider.resources.resource import KINDS as TF_KINDS

    assert sorted(TF_KINDS) == sorted(k.value for k in ResourceKind)
    assert {k.value: spec.settings_block for k, spec in KINDS.items()} == BLOCK_OF_KIND
    # the Cedar schema documents the kind attribute with the same list
    cedar = (ROOT / "policies/default/schema.cedarschema").read_text()
    listed = re.search(r"kind: String,\s*//\s*(.+)", cedar)
    assert listed is not None
    assert sorted(k.strip() for k in listed.group(1).split("|")) == sorted(k.value for k in ResourceKind)


def test_the_request_flow_cannot_be_built_without_its_chain_gate():
    with pytest.raises(TypeError):
        TaskService(object(), object(), lambda: None, dict, {}, object(), object())  # type: ignore[arg-type,call-arg]
    with pytest.raises(TypeError, match="needs chain"):
        TaskService(object(), object(), lambda: None, dict, {}, object(), object(), None)  # type: ignore[arg-type]


def test_the_credential_flow_requires_locks_and_metrics():
    from broker.approvals.flow import CredentialFlow

    with pytest.raises(TypeError):
        CredentialFlow(object(), object(), object())  # type: ignore[arg-type,call-arg]


@pytest.mark.openbao
def test_building_the_container_starts_no_thread(openbao, tmp_path):
    from broker.config import Settings
    from broker.container import Container

    before = {t.ident for t in threading.enumerate()}
    settings = Settings(
        dev_mode=True,
        data_dir=tmp_path,
        dev_issuer=True,
        admin_token="test-admin-token-0123456789abcdef",  # type: ignore[arg-type]
        openbao={"addr": openbao.address, "token": openbao.root_token.reveal()},
    )  # type: ignore[arg-type]
    container = Container.build(settings)
    try:
        started = [t.name for t in threading.enumerate() if t.ident not in before]
        assert started == []
    finally:
        container.close()
