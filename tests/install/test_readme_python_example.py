"""The README's Python example runs as written (against a running broker), and fails loudly, naming
the path, when pointed at a directory with no dev issuer (it once minted with a fresh key and got
"signature is invalid")."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from broker.errors import NotFound

pytestmark = [pytest.mark.openbao]
ROOT = Path(__file__).resolve().parents[2]


def _readme_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    (block,) = [b for b in blocks if "BrokerClient" in b]
    return block


def _run(example: str, url: str, data_dir: Path) -> str:
    code = example.replace("http://127.0.0.1:8080", url).replace('".nhi-broker"', repr(str(data_dir)))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})
    return out.getvalue()


def test_readme_python_example_uses_dev_issuer_load():
    example = _readme_example()
    assert "DevIssuer.load(" in example and "load_or_create" not in example


def test_readme_python_example_gets_a_credential(broker):
    printed = _run(_readme_example(), broker.url, broker.data_dir)
    # the in-process broker's own log lines may land in the captured stdout too
    assert re.search(r"^low \d{4}-\d\d-\d\dT\S+$", printed, re.M), printed  # tier of db.read on demo-data, expiry


def test_readme_python_example_names_the_path_when_the_data_dir_is_wrong(broker, tmp_path):
    with pytest.raises(NotFound, match=re.escape(str(tmp_path / "wrong"))):
        _run(_readme_example(), broker.url, tmp_path / "wrong")
    assert not (tmp_path / "wrong").exists()
