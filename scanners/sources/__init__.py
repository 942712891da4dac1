"""Scan sources: one adapter per file behind the port in :mod:`scanners.sources.base`."""

from __future__ import annotations

from typing import assert_never

from scanners.jobs.spec import FilesSource, GitSource, OpenBaoKvSource, S3Source, Source
from scanners.sources.base import SourceAdapter, SourceContext
from scanners.sources.files import FilesAdapter
from scanners.sources.git import GitAdapter
from scanners.sources.openbao_kv import OpenBaoKvAdapter
from scanners.sources.s3 import S3Adapter


def build_source(spec: Source, ctx: SourceContext) -> SourceAdapter:
    """The one place that picks a source adapter for a job's ``source`` spec."""
    if isinstance(spec, FilesSource):
        return FilesAdapter(spec.path, ctx)
    if isinstance(spec, GitSource):
        return GitAdapter(spec.repo, list(spec.refs), ctx)
    if isinstance(spec, S3Source):
        return S3Adapter(spec.bucket, spec.prefix, ctx, endpoint_url=spec.endpoint_url, region=spec.region)
    if isinstance(spec, OpenBaoKvSource):
        return OpenBaoKvAdapter(spec.mount, spec.path, spec.version, ctx)
    assert_never(spec)
