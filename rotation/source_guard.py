"""What a scan job may reach: local paths under the scan roots, URLs the outbound policy allows.

Checked twice: when the job is accepted (``PUT /v1/admin/scan-jobs/{name}``: 422 naming the
field) and when it runs (a job stored before the roots changed, a symlink planted later, a name
that now resolves to a private address: the run fails with a :class:`SourceError`, nothing is
read). Paths: :mod:`broker.pathpolicy`; URLs: :mod:`broker.netpolicy`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from broker.netpolicy import OutboundPolicy
from broker.pathpolicy import ScanRoots
from rotation.scan_spec import GIT_SCHEMES, FilesSource, GitSource, S3Source, Source


@dataclass(frozen=True, slots=True)
class SourceGuard:
    roots: ScanRoots
    outbound: OutboundPolicy

    @classmethod
    def from_settings(cls, settings: Any) -> SourceGuard:
        return cls(ScanRoots.build(getattr(settings, "scan_roots", []), data_dir=getattr(settings, "data_dir", None)),
                   settings.outbound_policy())

    def accept(self, source: Source) -> None:
        """The job may be stored: :class:`InvalidInput` naming ``source.<kind>.<field>`` if not."""
        if isinstance(source, FilesSource):
            self.roots.check(source.path, field="source.files.path")
        elif isinstance(source, GitSource):
            if source.repo.startswith("/"):
                self.roots.check(source.repo, field="source.git.repo")
            else:
                self.outbound.check_url(source.repo, field="source.git.repo", schemes=GIT_SCHEMES)
        elif isinstance(source, S3Source) and source.endpoint_url is not None:
            self.outbound.check_url(source.endpoint_url, field="source.s3.endpoint_url")

    def before_run(self, source: Source) -> None:
        """:meth:`accept` again, and every URL's resolved addresses (raises :class:`InvalidInput`)."""
        self.accept(source)
        if isinstance(source, GitSource) and not source.repo.startswith("/"):
            self.outbound.check_resolved(source.repo, field="source.git.repo", schemes=GIT_SCHEMES)
        elif isinstance(source, S3Source) and source.endpoint_url is not None:
            self.outbound.check_resolved(source.endpoint_url, field="source.s3.endpoint_url")
