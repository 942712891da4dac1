"""The MCP tests' rig (tests/support/mcp_rig.py): a real broker and upstream, ``nhi-broker mcp`` over HTTP."""

from support.mcp_rig import mcp_http, mcp_rig

__all__ = ["mcp_http", "mcp_rig"]
