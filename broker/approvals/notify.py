"""What the approval webhook posts: the broker's JSON facts, or a Slack-compatible message.

Both carry the console URL of the approval (``url``), so a person goes from the notification to
the page where they sign in and decide. Never a secret: only the facts of the request.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

Format = Literal["json", "slack"]


def _escape(text: object) -> str:
    """Slack mrkdwn: ``&``, ``<`` and ``>`` are control characters (links, mentions)."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_message(payload: Mapping[str, Any]) -> dict[str, Any]:
    """A Slack incoming-webhook body (``text`` + Block Kit ``blocks``) for a pending approval."""
    e = {
        k: _escape(payload.get(k, ""))
        for k in ("agent", "owner", "action", "resource", "tier", "task_id", "approval_id", "expires_at")
    }
    url = str(payload.get("url", ""))
    reasons = "\n".join(f"• {_escape(r)}" for r in payload.get("reasons") or [])
    headline = f"Approval needed: {e['agent']} wants {e['action']} on {e['resource']} (tier {e['tier']})"
    return {
        "text": f"{headline} — {url}",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{headline}*"}},
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": f"*Agent*\n{e['agent']} (owner {e['owner']})"},
                    {"type": "mrkdwn", "text": f"*Task*\n{e['task_id']}"},
                    {"type": "mrkdwn", "text": f"*Approval*\n{e['approval_id']}"},
                    {"type": "mrkdwn", "text": f"*Expires*\n{e['expires_at']}"},
                ],
            },
            *([{"type": "section", "text": {"type": "mrkdwn", "text": f"*Why*\n{reasons}"}}] if reasons else []),
            {
                "type": "actions",
                "elements": [
                    {"type": "button", "text": {"type": "plain_text", "text": "Open in the console"}, "url": url},
                ],
            },
        ],
    }


def formatter(fmt: Format) -> Callable[[dict[str, Any]], dict[str, Any]]:
    if fmt == "slack":
        return slack_message
    return dict
