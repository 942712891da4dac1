"""``token_exchange.mcp_resources``: the allow-list of MCP servers the broker issues tokens for."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from broker.config import TokenExchangeSettings


def test_mcp_resource_urls_are_normalised_without_a_trailing_slash():
    settings = TokenExchangeSettings(mcp_resources=[{"url": "https://mcp.internal/mcp/", "server_agent": "mcp-gw"}])
    assert settings.mcp_resources[0].url == "https://mcp.internal/mcp"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://mcp.internal/mcp", "must be an absolute http"),
        ("/mcp/relative-only", "must be an absolute http"),
        ("https://mcp.internal/mcp?tenant=a", "no query, fragment or user info"),
        ("https://user:pw@mcp.internal/mcp", "no query, fragment or user info"),
    ],
)
def test_mcp_resource_urls_that_are_not_plain_http_urls_are_refused(url, message):
    with pytest.raises(ValidationError, match=message):
        TokenExchangeSettings(mcp_resources=[{"url": url, "server_agent": "mcp-gw"}])


def test_mcp_resource_server_agent_must_be_an_agent_name():
    with pytest.raises(ValidationError, match="server_agent"):
        TokenExchangeSettings(mcp_resources=[{"url": "https://mcp.internal/mcp", "server_agent": "Not A Name"}])
