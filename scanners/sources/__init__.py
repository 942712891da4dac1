"""Scan sources: one adapter per file behind the port in :mod:`scanners.sources.base`."""

from __future__ import annotations

from typing import assert_never

from scanners.jobs.spec import FilesSource, GitSource, OpenBaoKvSource, S3Source, Source
from scanners.sources.base import SourceAdapter, SourceContext


def build_source(spec: Source, ctx: SourceContext) -> SourceAdapter:
    """The one place that picks a source adapter for a job's ``source`` spec."""
    if isinstance(spec, FilesSource):
        from scanners.sources.files import FilesSource as Files

        return Files(spec.path, ctx)
    if isinstance(spec, GitSource):
        from scanners.sources.git import GitSource as Git

        return Git(spec.repo, list(spec.refs), ctx)
    if isinstance(spec, S3Source):
        from scanners.sources.s3 import S3Source as S3

        return S3(spec.bucket, spec.prefix, ctx, endpoint_url=spec.endpoint_url, region=spec.region)
    if isinstance(spec, OpenBaoKvSource):
        from scanners.sources.openbao_kv import OpenBaoKvSource as Kv

        return Kv(spec.mount, spec.path, spec.version, ctx)
    assert_never(spec)
