"""/docs and /redoc work offline: the pages reference only assets the broker itself serves."""

from __future__ import annotations

import re

import httpx
import pytest
from support.wait import HTTP_TIMEOUT

pytestmark = [pytest.mark.openbao]

URL_ATTRS = re.compile(r"""(?:src|href|spec-url)\s*=\s*["']([^"']+)["']|url\s*:\s*["']([^"']+)["']""")


def _references(html: str) -> list[str]:
    return [a or b for a, b in URL_ATTRS.findall(html)]


@pytest.mark.parametrize(
    ("page", "expected_assets"),
    [
        ("/docs", {"/docs/static/swagger-ui-bundle.js", "/docs/static/swagger-ui.css", "/docs/static/favicon.png"}),
        ("/redoc", {"/docs/static/redoc.standalone.js", "/docs/static/favicon.png"}),
    ],
)
def test_docs_page_references_only_assets_the_broker_serves(broker, page, expected_assets):
    r = httpx.get(broker.url + page, timeout=HTTP_TIMEOUT)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert "://" not in html, "the page points outside the broker (a CDN, fonts, a favicon)"
    refs = set(_references(html))
    assert expected_assets <= refs
    assert "/openapi.json" in refs
    for ref in refs:
        assert ref.startswith("/") and not ref.startswith("//"), ref
        asset = httpx.get(broker.url + ref, timeout=HTTP_TIMEOUT)
        assert asset.status_code == 200, ref
        assert len(asset.content) > 1000, ref  # the real asset, not an empty stub


def test_docs_assets_have_the_right_content_types(broker):
    js = httpx.get(broker.url + "/docs/static/swagger-ui-bundle.js", timeout=HTTP_TIMEOUT)
    css = httpx.get(broker.url + "/docs/static/swagger-ui.css", timeout=HTTP_TIMEOUT)
    assert "javascript" in js.headers["content-type"] and "SwaggerUIBundle" in js.text
    assert css.headers["content-type"].startswith("text/css")


def test_docs_static_mount_serves_no_file_outside_its_folder(broker):
    r = httpx.get(broker.url + "/docs/static/..%2f..%2f__init__.py", timeout=HTTP_TIMEOUT)
    assert r.status_code == 404
