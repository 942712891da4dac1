"""AWS Signature Version 4 for the gateway's ``sigv4`` resources: botocore's own signer (no
hand-written crypto), kept in this adapter so botocore stays out of the domain and the API."""

from __future__ import annotations

from collections.abc import Mapping

from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from broker.secrets import Secret


def sigv4_headers(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    access_key_id: Secret,
    secret_access_key: Secret,
    session_token: Secret | None,
    region: str,
    service: str,
) -> dict[str, str]:
    """The headers to send: ``headers`` plus ``Authorization``, ``X-Amz-Date``,
    ``X-Amz-Security-Token`` (and ``X-Amz-Content-SHA256`` for S3), signed over the method, the
    URL (host, path, query), these headers and the body."""
    request = AWSRequest(method=method, url=url, data=body, headers=dict(headers))
    credentials = Credentials(
        access_key_id.reveal(), secret_access_key.reveal(), session_token.reveal() if session_token else None
    )
    signer = S3SigV4Auth if service == "s3" else SigV4Auth
    signer(credentials, service, region).add_auth(request)
    return {k: str(v) for k, v in request.headers.items()}


__all__ = ["sigv4_headers"]
