"""What a scan job may reach: local paths under the scan roots, URLs the outbound policy allows.

Checked twice: when the job is accepted (``PUT /v1/admin/scan-jobs/{name}``: 422 naming the
field) and when it runs (a job stored before the roots changed, a symlink planted later, a name
that now resolves to a private address: the run fails with the reason, nothing is read).
Implements the runner's :class:`scanners.jobs.ports.SourcePolicy`. Paths:
:mod:`broker.pathpolicy`; URLs: :mod:`broker.netpolicy`; characters: :mod:`broker.text`.
"""

from __future__ import annotations

from dataclasses import dataclass

from broker.config import Settings
from broker.errors import InvalidInput
from broker.netpolicy import OutboundPolicy
from broker.pathpolicy import ScanRoots
from broker.text import first_bad
from broker.text import message as text_message
from scanners.jobs.spec import GIT_SCHEMES, FilesSource, GitSource, S3Source, Source


@dataclass(frozen=True, slots=True)
class SourceGuard:
    roots: ScanRoots
    outbound: OutboundPolicy

    @classmethod
    def from_settings(cls, settings: Settings) -> SourceGuard:
        return cls(ScanRoots.build(settings.scan_roots, data_dir=settings.data_dir), settings.outbound_policy())

    def accept(self, source: Source) -> None:
        """The job may be stored: :class:`InvalidInput` naming ``source.<kind>.<field>`` if not."""
        for name, value in source.model_dump().items():
            found = first_bad(value)  # NUL, controls, bidi overrides
            if found is not None:
                raise InvalidInput(f"source.{source.kind}.{name}", text_message(found, free_text=False))
        if isinstance(source, FilesSource):
            self.roots.check(source.path, field="source.files.path")
        elif isinstance(source, GitSource):
            if source.repo.startswith("/"):
                self.roots.check(source.repo, field="source.git.repo")
            else:
                self.outbound.check_url(source.repo, field="source.git.repo", schemes=GIT_SCHEMES)
        elif isinstance(source, S3Source) and source.endpoint_url is not None:
            self.outbound.check_url(source.endpoint_url, field="source.s3.endpoint_url")

    def path_allowed(self, path: str) -> bool:
        return self.roots.allows(path)

    def before_run(self, source: Source) -> None:
        """:meth:`accept` again, and every URL's resolved addresses (raises :class:`InvalidInput`)."""
        self.accept(source)
        if isinstance(source, GitSource) and not source.repo.startswith("/"):
            self.outbound.check_resolved(source.repo, field="source.git.repo", schemes=GIT_SCHEMES)
        elif isinstance(source, S3Source) and source.endpoint_url is not None:
            self.outbound.check_resolved(source.endpoint_url, field="source.s3.endpoint_url")
