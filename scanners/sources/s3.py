"""An S3 bucket (optionally under a prefix): new or changed objects, by ETag.

State: ``s3:<key>`` -> the ETag scanned. Each run lists the prefix; an object whose ETag differs
(or is new) is streamed in 1 MiB blocks and checkpointed with its ETag once fully read; objects
gone from the listing lose their state. Binary objects (NUL in the first block) are recorded but
not scanned. boto3 stays inside this adapter: its errors become :class:`SourceError`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from scanners.sources.base import (
    BLOCK,
    Checkpoint,
    Item,
    Piece,
    SourceContext,
    SourceError,
    StateView,
    split_block,
)

PREFIX = "s3:"


class S3Adapter:
    kind = "s3"

    def __init__(
        self,
        bucket: str,
        prefix: str,
        ctx: SourceContext,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.ctx = ctx
        self.endpoint_url = endpoint_url or ctx.aws_endpoint_url
        self.region = region or ctx.aws_region or "us-east-1"

    def _client(self) -> Any:
        return boto3.client(
            "s3",
            region_name=self.region,
            endpoint_url=self.endpoint_url,
            config=Config(connect_timeout=5, read_timeout=60, retries={"max_attempts": 3}),
        )

    def items(self, state: StateView) -> Iterator[Item]:
        try:
            client = self._client()
            seen: set[str] = set()
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix):
                for obj in page.get("Contents", []):
                    key, etag = obj["Key"], obj.get("ETag", "").strip('"')
                    seen.add(key)
                    if state.get(PREFIX + key) == etag:
                        continue
                    yield from self._object(client, key, etag)
            gone = {k: None for k, _ in state.items(PREFIX) if k[len(PREFIX) :] not in seen}
            if gone:
                yield Checkpoint(gone)
        except (ClientError, BotoCoreError) as exc:
            raise SourceError(f"S3 bucket {self.bucket}: {_reason(exc)}") from exc

    def _object(self, client: Any, key: str, etag: str) -> Iterator[Item]:
        resp = (
            client.get_object(Bucket=self.bucket, Key=key, IfMatch=etag)
            if etag
            else client.get_object(Bucket=self.bucket, Key=key)
        )
        body = resp["Body"]
        location = f"s3://{self.bucket}/{key}"
        line = 1
        pending = b""
        first = True
        try:
            while True:
                block = body.read(BLOCK)
                if first and b"\0" in block[:8192]:
                    break
                first = False
                data, pending = split_block(pending + block, final=not block)
                if data:
                    yield Piece(
                        text=data.decode("utf-8", "replace"),
                        location=location,
                        first_line=line,
                        meta={"bucket": self.bucket, "key": key, "etag": etag},
                        nbytes=len(data),
                    )
                    line += data.count(b"\n")
                if not block:
                    break
        finally:
            body.close()
        yield Checkpoint({PREFIX + key: etag})


def _reason(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        return f"{err.get('Code', 'error')} ({exc.operation_name})"
    return type(exc).__name__
