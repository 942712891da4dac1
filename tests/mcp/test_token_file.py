"""The MCP server's identity sources: a token file is re-read when it changes; no identity, no start."""

from __future__ import annotations

import os

import pytest

from broker.agent_mcp import TokenFile, identity_source


def test_identity_token_file_is_re_read_when_it_changes(tmp_path):
    path = tmp_path / "token"
    path.write_text("first.jwt.token\n")
    source = TokenFile(path)
    assert source() == "first.jwt.token"
    path.write_text("second.jwt.token-rotated\n")
    st = path.stat()
    os.utime(path, (st.st_atime, st.st_mtime + 5))  # a rotation within the same mtime tick still counts by size
    assert source() == "second.jwt.token-rotated"
    assert source() == "second.jwt.token-rotated"


def test_identity_source_needs_a_token_file_or_the_dev_issuer(tmp_path):
    with pytest.raises(ValueError, match="--identity-token-file"):
        identity_source(None, None, None)
    with pytest.raises(ValueError, match="--identity-token-file"):
        identity_source(None, tmp_path, None)
