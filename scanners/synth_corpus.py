# ruff: noqa: E501
"""A generated prose/log/code corpus with planted fake secrets (for tests and the benchmark).

``build(rng, size)`` returns the text and the planted secrets ``(start, end, format)``. Noise is
made of what makes scanners noisy in practice: UUIDs, hex digests, etags, base64 blobs, minified
JavaScript, lockfile lines, placeholders in config.
"""

from __future__ import annotations

import random
from typing import Final

from scanners.synth import expand

# format -> template; [[...]] marks the secret
FORMATS: Final[dict[str, str]] = {
    "aws-access-key-id": "aws_access_key_id = [[AKIA%{b32:16}]]",
    "aws-secret-access-key": "aws_secret_access_key = [[%{b64:40}]]",
    "github-classic-pat": "export GITHUB_TOKEN=[[%{gh:ghp_}]]",
    "github-fine-grained-pat": "gh auth login --with-token [[github_pat_%{b62:22}_%{b62:59}]]",
    "gitlab-pat": "GITLAB_TOKEN: [[glpat-%{b64u:20}]]",
    "slack-bot-token": "slack token [[xoxb-%{digits:12}-%{digits:13}-%{b62:24}]] rotated",
    "slack-webhook-url": "webhook: https://hooks.slack.com/[[services/T%{uppernum:10}/B%{uppernum:10}/%{b62:24}]]",
    "stripe-live-secret-key": 'stripe.api_key = "[[sk_live_%{b62:99}]]"',
    "openai-api-key": "OPENAI_API_KEY=[[sk-proj-%{b64u:74}T3BlbkFJ%{b64u:74}]]",
    "anthropic-api-key": "use key [[sk-ant-api03-%{b64u:93}AA]] for claude",
    "huggingface-token": "HF_TOKEN=[[hf_%{alpha:34}]]",
    "sendgrid-api-key": "SENDGRID_API_KEY=[[SG.%{b64u:22}.%{b64u:43}]]",
    "gcp-api-key": "maps key=[[AIza%{b64u:35}]]",
    "private-key-pem": "config:\n[[%{pem:RSA PRIVATE KEY}]]",
    "private-key-openssh": "id_ed25519:\n[[%{pem:OPENSSH PRIVATE KEY}]]",
    "jwt": "Authorization token: [[%{jwt}]]",
    "postgres-url-password": "DATABASE_URL=postgresql://app:[[%{b62:20}]]@db.internal:5432/app",
    "mongodb-url-password": "MONGO_URL=mongodb+srv://app:[[%{b62:20}]]@cluster0.x.mongodb.net/db",
    "redis-url-password": "REDIS_URL=redis://:[[%{b62:24}]]@cache:6379/0",
    "amqp-url-password": "BROKER_URL=amqp://celery:[[%{b62:20}]]@rabbit:5672//",
    "vault-service-token": "VAULT_TOKEN=[[hvs.%{b64u:90}]]",
    "openbao-token": "the agent printed its token [[s.%{digits:1}%{upper:1}%{lower:1}%{b62:21}]] in the output",
    "npm-access-token": "//registry.npmjs.org/:_authToken=[[%{gh:npm_}]]",
    "pypi-token": "password = [[pypi-AgEIcHlwaS5vcmc%{b64u:140}]]",
    "digitalocean-token": "DIGITALOCEAN_TOKEN=[[dop_v1_%{hex:64}]]",
    "shopify-token": "SHOPIFY_ACCESS_TOKEN=[[shpat_%{hex:32}]]",
    "generic-password": 'db_password = "[[%{b62:6}!%{b62:8}]]"',
    "azure-storage-account-key": "AccountName=demo;AccountKey=[[%{azkey}]];EndpointSuffix=core.windows.net",
    "telegram-bot-token": "TELEGRAM_BOT_TOKEN=[[%{digits:10}:AA%{b64u:33}]]",
    "databricks-token": "DATABRICKS_TOKEN=[[dapi%{hex:32}]]",
}

_NOISE: Final = [
    "%{digits:4}-11-24T01:02:03.%{digits:3}Z INFO request_id=%{uuid} path=/v1/items/%{digits:5} status=200 dur_ms=%{digits:2}",
    '%{digits:4}-11-24T01:02:04Z DEBUG cache hit key=%{hex:40} etag="%{hex:32}" size=%{digits:4}',
    "%{digits:4}-11-24T01:02:05Z WARN retrying upstream=payments attempt=2 trace_id=%{hex:32} span_id=%{hex:16}",
    "commit %{hex:40}\nAuthor: Dev <dev@example.org>\n    fix: handle empty response (#%{digits:4})",
    '  resolved "https://registry.yarnpkg.com/pkg-%{lower:6}/-/pkg-%{lower:6}-1.2.3.tgz#%{hex:40}"\n  integrity sha512-%{b64:86}==',
    "image: registry.internal/app@sha256:%{hex:64}",
    "data:image/png;base64,%{b64:200}=",
    "!function(e,t){var n=t.createElement('script');n.src='https://cdn.example.org/%{hex:8}.js';e.k='%{b62:12}'}(window,document);var a=%{digits:6};",
    "def handler(event, context):\n    token = os.environ[\"API_TOKEN\"]\n    return client.call(event['id'], token=token)",
    "Please summarise the quarterly report and list the three biggest risks for the %{lower:8} project.",
    "The assistant called tool search_docs with query='rotate credentials' and got 12 results.",
    'password: ${{ secrets.DB_PASSWORD }}\napi_key: <YOUR_API_KEY>\ntoken: "{{ vault_token }}"',
    "session=%{hex:32} user=%{lower:6} role=viewer ip=10.%{digits:1}.%{digits:2}.%{digits:2}",
    "uuid_list = ['%{uuid}', '%{uuid}', '%{uuid}']",
    'blob = "%{b64:120}"',
    "AKIAIOSFODNN7EXAMPLE is the documented example key; sk_live_xxxxxxxxxxxxxxxxxxxxxxxx is a placeholder.",
]


def build(
    rng: random.Random, size: int = 1_000_000, secret_every: int = 4000
) -> tuple[str, list[tuple[int, int, str]]]:
    """About ``size`` characters with one planted secret every ``secret_every`` characters."""
    parts: list[str] = []
    planted: list[tuple[int, int, str]] = []
    length = 0
    next_secret = secret_every // 2
    names = list(FORMATS)
    i = 0
    while length < size:
        if length >= next_secret:
            name = names[i % len(names)]
            i += 1
            text, spans = expand(FORMATS[name], rng)
            planted.extend((length + s, length + e, name) for s, e in spans)
            next_secret += secret_every
        else:
            text, _ = expand(rng.choice(_NOISE), rng)
        parts.append(text + "\n")
        length += len(text) + 1
    return "".join(parts), planted
