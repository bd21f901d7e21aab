"""``Client``: the blocking Python client (what the CLI uses, from several threads at once).

Every route is a one-line method over a sans-IO ``Call`` (``calls``/``jobcalls``);
multi-step operations run the shared ``flows``. This module only sends and waits.

Example:
    >>> with Client("http://127.0.0.1:8080", token) as fleet:  # doctest: +SKIP
    ...     out = fleet.upload("build.log", "nightly-42", run_id="attempt-1")
    ...     fleet.download(out.id, Path("copies/"))
"""

from __future__ import annotations

import builtins
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import httpx

import fleet_artifacts.client.calls as calls
import fleet_artifacts.client.jobcalls as jobcalls
from fleet_artifacts.client.base import ClientBase
from fleet_artifacts.client.blobs import write_blob
from fleet_artifacts.client.calls import Call
from fleet_artifacts.client.errors import FleetConnectionError, FleetError, connection_problem, problem_of
from fleet_artifacts.client.flows import BlobWrite, Fetch, Flow, Form, Meta
from fleet_artifacts.client.models import (
    Event,
    EventPage,
    JobPage,
    JobSummary,
    Manifest,
    ManifestBody,
    SealOut,
)
from fleet_artifacts.client.retry import NOT_SENT, RETRY_STATUSES, not_now, retryable_failure
from fleet_artifacts.client.sources import BackgroundWriter, Progress, Source
from fleet_artifacts.client.transport import BulkTransport
from fleet_artifacts.core.models import ArtifactOut, ArtifactPage, JobRetentionOut, ShareOut

T = TypeVar("T")
PathOrFile = str | Path | bytes | BinaryIO


class Client(ClientBase):
    """Blocking client of a fleet-artifacts service (thread-safe: one per process is enough).

    Args:
        base_url: the service's origin, e.g. ``http://127.0.0.1:8080``.
        token: bearer token (never logged, never in an error message).
        **options: see ``ClientBase`` (timeout, retry policy, upload options, chunk size).
    """

    def __init__(self, base_url: str, token: str | None = None, **options: Any) -> None:
        super().__init__(base_url, token, **options)
        self._http = httpx.Client(transport=BulkTransport(verify=self.verify), timeout=self.timeout)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sending ---------------------------------------------------------------------------

    def send(self, call: Call[T]) -> T:
        """Send one call, retrying as the policy allows; its decoded answer or a FleetError."""
        retry, arrived = 0, False
        while True:
            content = None if call.body is None or call.form is not None else call.body.chunks()
            try:
                response = self._http.request(
                    call.method, self.url_of(call), **self.request_args(call, content)
                )
            except httpx.TransportError as exc:
                arrived = arrived or not isinstance(exc, NOT_SENT)
                if self.may_retry(retry, call) and retryable_failure(exc, repeatable=call.repeatable):
                    time.sleep(self.retry.delay(retry, None))
                    retry += 1
                    continue
                raise FleetConnectionError(connection_problem(self.base_url, exc)) from None
            if response.status_code in call.ok or (
                call.gone_is_done and arrived and response.status_code == 404
            ):
                return call.decode(response)
            if not_now(response) and self.may_retry(retry, call):
                time.sleep(self.retry.delay(retry, response))
                retry += 1
                continue
            raise FleetError(problem_of(response))

    def run(self, flow: Flow[T]) -> T:
        """Drive a flow: run each step it yields, throw failures back into it."""
        result: Any = None
        failure: FleetError | None = None
        while True:
            try:
                step = flow.send(result) if failure is None else flow.throw(failure)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            result, failure = None, None
            try:
                if isinstance(step, BlobWrite):
                    write_blob(step)
                elif isinstance(step, Fetch):
                    result = self._fetch(step)
                else:
                    result = self.send(step)
            except FleetError as exc:
                failure = exc

    def _fetch(self, step: Fetch) -> Path:
        retry = 0
        while True:
            step.sink.open()
            try:
                with self._http.stream("GET", self.fetch_url(step), **self.fetch_args(step)) as response:
                    if response.status_code != 200:
                        response.read()
                        if response.status_code in RETRY_STATUSES and retry + 1 < self.retry.attempts:
                            step.sink.discard()
                            time.sleep(self.retry.delay(retry, response))
                            retry += 1
                            continue
                        raise FleetError(problem_of(response))
                    writer = BackgroundWriter(step.sink)
                    try:
                        for chunk in response.iter_bytes():
                            writer.write(chunk)
                    finally:
                        writer.close()
                return step.sink.commit()
            except httpx.TransportError as exc:
                step.sink.discard()
                if retry + 1 < self.retry.attempts:
                    time.sleep(self.retry.delay(retry, None))
                    retry += 1
                    continue
                raise FleetConnectionError(connection_problem(self.base_url, exc)) from None
            except BaseException:
                step.sink.discard()  # nothing half-written is ever left behind
                raise

    # -- uploads ---------------------------------------------------------------------------

    def upload(
        self,
        file: PathOrFile,
        job_id: str,
        *,
        kind: str | None = None,
        file_name: str | None = None,
        run_id: str | None = None,
        content_type: str | None = None,
        tags: dict[str, str] | None = None,
        retention_days: int | None = None,
        keep_forever: bool = False,
        idempotency_key: str | None = None,
        form: Form = "auto",
        progress: Progress | None = None,
    ) -> ArtifactOut:
        """Upload a file (path, binary file object or bytes) as one artifact of ``job_id``.

        ``form="auto"`` streams it through the service, or writes it straight to Blob Storage
        when it is at least ``direct_threshold`` bytes. The sha256 is computed while reading
        and checked against what the service stored. Kind: guessed from the name when None.
        """
        source = Source(file, chunk_size=self.chunk_size, progress=progress)
        meta = Meta(
            self.name_of(source, file_name), kind, run_id, content_type, tags, retention_days, keep_forever
        )
        return self.run(self.upload_flow(job_id, source, meta, idempotency_key, form))

    # -- reading ---------------------------------------------------------------------------

    def get(
        self,
        artifact_id: str,
        job_id: str | None = None,
        *,
        disposition: str | None = None,
        expires_in: int | None = None,
    ) -> ArtifactOut:
        """The pointer with a fresh download URL (job-scoped when ``job_id`` is given)."""
        return self.send(calls.get(artifact_id, job_id, disposition, expires_in))

    def download_url(
        self, artifact_id: str, job_id: str | None = None, *, expires_in: int | None = None
    ) -> str:
        """A freshly signed download URL (FleetError 409 when the artifact is archived)."""
        return self.url_or_raise(self.get(artifact_id, job_id, expires_in=expires_in))

    def list(self, job_id: str, **filters: Any) -> ArtifactPage:
        """One page of a job's artifacts, newest first.

        Filters: ``kind``, ``run_id``, ``tags``, ``status``, ``limit``, ``continuation_token``,
        ``expires_in`` (life of the signed URLs in the answer).
        """
        return self.send(calls.list_page(job_id, **self.list_filters(filters)))

    def iter_artifacts(self, job_id: str, **filters: Any) -> Iterator[ArtifactOut]:
        """Every artifact of a job matching ``filters``, page after page."""
        token = filters.pop("continuation_token", None)
        while True:
            page = self.list(job_id, continuation_token=token, **filters)
            yield from page.items
            token = page.continuation_token
            if not token:
                return

    def download(
        self,
        artifact: ArtifactOut | str,
        dest: str | Path,
        *,
        job_id: str | None = None,
        progress: Progress | None = None,
        fsync: bool = False,
    ) -> Path:
        """Download into ``dest`` (a directory: under the artifact's file name), sha256 verified.

        The bytes go to a temp file beside the target, renamed into place once size and
        digest match; on any failure nothing is left (DigestMismatch on a mismatch). ``fsync``:
        flush to disk before the rename (survives a power loss; costs a disk flush).
        """
        return self.run(self.download_flow(artifact, Path(dest), job_id, progress, fsync))

    def read(self, artifact: ArtifactOut | str, *, job_id: str | None = None) -> bytes:
        """An artifact's bytes in memory (small ones), sha256 verified."""
        with tempfile.TemporaryDirectory(prefix="fleet-read-") as scratch:
            return self.download(artifact, Path(scratch) / "artifact", job_id=job_id).read_bytes()

    # -- changing --------------------------------------------------------------------------

    def delete(self, artifact_id: str, job_id: str | None = None, *, purge: bool = False) -> None:
        """Delete an artifact (DELETED within a soft-delete window unless ``purge``)."""
        self.send(calls.delete(artifact_id, job_id, purge))

    def delete_job(
        self, job_id: str, *, kind: str | None = None, run_id: str | None = None, purge: bool = False
    ) -> int:
        """Delete a job's artifacts (narrowed by kind and run); how many."""
        return self.send(calls.delete_job(job_id, kind, run_id, purge)).deleted

    def update(
        self,
        artifact_id: str,
        job_id: str | None = None,
        *,
        retention_days: int | None = None,
        expires_at: datetime | None = None,
        keep_forever: bool | None = None,
        tags: dict[str, str] | None = None,
        if_match: str | None = None,
    ) -> ArtifactOut:
        """Change retention and/or replace tags (``if_match``: only that version)."""
        body = calls.patch_body(
            retention_days=retention_days, expires_at=expires_at, keep_forever=keep_forever, tags=tags
        )
        return self.send(calls.patch(artifact_id, job_id, body, if_match))

    def archive(self, artifact_id: str, job_id: str | None = None, *, tier: str = "Archive") -> ArtifactOut:
        """Move the blob to a colder tier (Archive: offline until restored)."""
        return self.send(calls.lifecycle(artifact_id, job_id, "archive", {"tier": tier}))

    def restore(
        self, artifact_id: str, job_id: str | None = None, *, priority: str = "Standard"
    ) -> ArtifactOut:
        """Rehydrate an archived artifact (RESTORING until readable)."""
        return self.send(calls.lifecycle(artifact_id, job_id, "restore", {"priority": priority}))

    def undelete(self, artifact_id: str, job_id: str | None = None) -> ArtifactOut:
        """Bring back a DELETED artifact within the soft-delete window."""
        return self.send(calls.lifecycle(artifact_id, job_id, "undelete", None))

    def job_retention(self, job_id: str) -> JobRetentionOut:
        """A job's retention for its later uploads."""
        return self.send(jobcalls.job_retention(job_id))

    def set_job_retention(
        self,
        job_id: str,
        *,
        retention_days: int | None = None,
        keep_forever: bool = False,
        apply_to_existing: bool = False,
    ) -> JobRetentionOut:
        """Set a job's retention (``apply_to_existing``: re-date its artifacts too)."""
        body = jobcalls.retention_body(retention_days, keep_forever, apply_to_existing)
        return self.send(jobcalls.job_retention(job_id, body))

    def share(
        self,
        artifact_id: str,
        job_id: str | None = None,
        *,
        expires_in: int = 7 * 86400,
        disposition: str = "attachment",
    ) -> ShareOut:
        """Make a share link (its ``url`` is in this answer only)."""
        return self.send(jobcalls.share(artifact_id, job_id, expires_in, disposition))

    def shares(self, artifact_id: str, job_id: str | None = None) -> builtins.list[ShareOut]:
        """An artifact's live share links (without URLs)."""
        return self.send(jobcalls.shares(artifact_id, job_id))

    def revoke_share(self, share_id: str) -> None:
        """Revoke a share link."""
        self.send(jobcalls.revoke_share(share_id))

    # -- jobs ------------------------------------------------------------------------------

    def jobs(self, *, limit: int | None = None, continuation_token: str | None = None) -> JobPage:
        """One page of the product's jobs, most recently active first."""
        return self.send(jobcalls.jobs(limit, continuation_token))

    def iter_jobs(self, *, limit: int | None = None) -> Iterator[JobSummary]:
        """Every job, page after page."""
        token = None
        while True:
            page = self.jobs(limit=limit, continuation_token=token)
            yield from page.items
            if not (token := page.continuation_token):
                return

    def manifest_body(
        self, job_id: str, *, cbor: bool = False, if_none_match: str | None = None
    ) -> ManifestBody | None:
        """The manifest as served (canonical JSON or CBOR) with its ETag; None when not modified."""
        return self.send(jobcalls.manifest_body(job_id, cbor=cbor, if_none_match=if_none_match))

    def manifest(self, job_id: str) -> Manifest:
        """A job's manifest, its ETag checked against the body's sha256."""
        return self.checked_manifest(self.manifest_body(job_id))

    def seal(self, job_id: str) -> SealOut:
        """Seal a job: no artifact can be added to it afterwards."""
        return self.send(jobcalls.seal(job_id))

    def download_archive(
        self, job_id: str, dest: str | Path, *, kind: str | None = None, run_id: str | None = None
    ) -> Path:
        """A job's artifacts as one zip file at ``dest`` (streamed; written whole or not at all)."""
        return self._fetch(self.archive_fetch(job_id, Path(dest), kind, run_id))

    def events(
        self,
        since: str | None = None,
        *,
        limit: int | None = None,
        wait: float | None = None,
        job_id: str | None = None,
    ) -> EventPage:
        """One page of the event feed after cursor ``since`` (long-polls ``wait`` seconds)."""
        return self.send(jobcalls.events(since, limit, wait, job_id))

    def tail(
        self, since: str | None = None, *, wait: float = 30.0, job_id: str | None = None
    ) -> Iterator[Event]:
        """Every event from ``since`` on, forever: long-polls, resuming from each page's ``next``."""
        while True:
            page = self.events(since, wait=wait, job_id=job_id)
            yield from page.items
            since = page.next

    def __repr__(self) -> str:
        return f"Client({self.base_url!r})"
