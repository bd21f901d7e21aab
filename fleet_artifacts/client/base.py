"""What ``Client`` and ``AsyncClient`` share besides the sans-IO calls and flows: settings and glue."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, TypeVar

import httpx
import msgspec

import fleet_artifacts.client.flows as flows
import fleet_artifacts.client.jobcalls as jobcalls
from fleet_artifacts import __version__
from fleet_artifacts.client.calls import JSON, Call, new_key, seg
from fleet_artifacts.client.errors import DigestMismatch, FleetError
from fleet_artifacts.client.flows import Fetch, Flow, Form, Meta, UploadOptions
from fleet_artifacts.client.models import Manifest, ManifestBody, Problem
from fleet_artifacts.client.retry import RetryPolicy
from fleet_artifacts.client.sources import CHUNK_SIZE, Progress, Sink, Source
from fleet_artifacts.core.models import ArtifactOut

T = TypeVar("T")
_LIST_FILTERS = {"kind", "run_id", "tags", "status", "limit", "continuation_token", "expires_in"}


class ClientBase:
    """Settings and request glue common to both clients.

    Args:
        base_url: the service's origin.
        token: bearer token; sent to the service only, never to a signed URL.
        timeout: seconds per connect, read, write (connecting: at most 10).
        retry: when and how long to retry (``RetryPolicy``).
        upload: how uploads pick their path (``UploadOptions``: direct threshold, concurrency...).
        chunk_size: bytes per read of an upload body.
        verify: TLS verification (False, True or an ``ssl.SSLContext``).
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        upload: UploadOptions | None = None,
        chunk_size: int = CHUNK_SIZE,
        verify: Any = True,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.timeout = httpx.Timeout(timeout, connect=min(timeout, 10.0))
        self.retry = retry or RetryPolicy()
        self.upload_options = upload or UploadOptions()
        self.chunk_size = chunk_size
        self.verify = verify
        self._agent = f"fleet-artifacts-client/{__version__}"

    def url_of(self, call: Call[Any]) -> str:
        """Where a call goes: its path under the base URL (or its own absolute URL)."""
        return call.path if "://" in call.path else self.base_url + call.path

    def _headers(self, extra: dict[str, str], authorized: bool) -> dict[str, str]:
        headers = {"User-Agent": self._agent, **extra}
        if authorized and self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    def request_args(self, call: Call[Any], content: Any) -> dict[str, Any]:
        """Keyword arguments of ``httpx.Client.request`` for ``call`` (``content``: the body stream)."""
        headers = self._headers(call.headers, call.authorized)
        args: dict[str, Any] = {"headers": headers}
        if call.params:  # httpx replaces a URL's own query with params, even an empty list
            args["params"] = call.params
        if call.json is not None:
            args["content"] = msgspec.json.encode(call.json)
            headers.setdefault("Content-Type", JSON)
        elif call.form is not None and call.body is not None:
            fields: dict[str, list[str]] = {}
            for name, value in call.form:
                fields.setdefault(name, []).append(value)
            file_name = fields.get("fileName", ["file"])[0]
            content_type = fields.get("contentType", ["application/octet-stream"])[0]
            args["data"] = fields
            args["files"] = {"file": (file_name, call.body.reader(), content_type)}
        elif content is not None:
            args["content"] = content
        return args

    def may_retry(self, retry: int, call: Call[Any]) -> bool:
        """Whether attempts remain and the body, if any, can be sent again."""
        return retry + 1 < self.retry.attempts and (call.body is None or call.body.rewindable)

    def fetch_url(self, step: Fetch) -> str:
        """A fetch's URL: a signed URL as it is, a service path under the base URL."""
        return step.url if "://" in step.url else self.base_url + step.url

    def fetch_args(self, step: Fetch) -> dict[str, Any]:
        """Keyword arguments of the streamed GET of a fetch (no token to signed URLs)."""
        # identity: the sha256 is of the stored bytes, not of a compressed rendition of them.
        headers = self._headers({"Accept-Encoding": "identity"}, step.authorized)
        # Never params=[] with a signed URL: httpx would replace its query, signature included.
        return {"params": step.params, "headers": headers} if step.params else {"headers": headers}

    @staticmethod
    def name_of(source: Source, file_name: str | None) -> str:
        """The artifact's file name: the one given, else the source's own."""
        name = file_name or source.name
        if not name:
            raise ValueError("file_name is needed when uploading bytes or an unnamed file object")
        return name

    def upload_flow(
        self, job_id: str, source: Source, meta: Meta, key: str | None, form: Form
    ) -> Flow[ArtifactOut]:
        """The shared upload flow with this client's options and a key kept across retries."""
        return flows.upload(
            job_id, source, meta, key=key or new_key(), form=form, options=self.upload_options
        )

    @staticmethod
    def download_flow(
        artifact: ArtifactOut | str, dest: Path, job_id: str | None, progress: Progress | None, fsync: bool
    ) -> Flow[Path]:
        """The shared download flow."""
        return flows.download(artifact, dest, job_id=job_id, progress=progress, fsync=fsync)

    @staticmethod
    def url_or_raise(out: ArtifactOut) -> str:
        """The pointer's download URL; FleetError 409 when it has none (archived, restoring)."""
        if out.download_url is None:
            detail = f"{out.file_name} ({out.id}) is {out.status.value}: {out.reason or 'no download URL'}"
            raise FleetError(Problem(status=409, title="artifact not readable now", detail=detail))
        return out.download_url

    @staticmethod
    def list_filters(filters: dict[str, Any]) -> dict[str, Any]:
        """Every list filter, None where not given; TypeError naming an unknown one."""
        unknown = set(filters) - _LIST_FILTERS
        if unknown:
            raise TypeError(f"unknown list filter(s): {', '.join(sorted(unknown))}")
        return {name: filters.get(name) for name in _LIST_FILTERS}

    @staticmethod
    def checked_manifest(body: ManifestBody | None) -> Manifest:
        """Decode a manifest, checking its strong ETag is the body's sha256."""
        assert body is not None  # no If-None-Match was sent, so no 304
        digest = hashlib.sha256(body.body).hexdigest()
        if body.etag and body.etag.strip('"') != digest:
            raise DigestMismatch(
                Problem(
                    title="manifest does not match its ETag", detail=f"ETag {body.etag}, body sha256 {digest}"
                )
            )
        return jobcalls.decode_manifest(body)

    @staticmethod
    def archive_fetch(job_id: str, dest: Path, kind: str | None, run_id: str | None) -> Fetch:
        """The fetch of a job's zip archive (with the token: it is a service route)."""
        params = [(name, value) for name, value in (("kind", kind), ("runId", run_id)) if value]
        sink = Sink(dest, sha256=None, size=None)
        return Fetch(f"/fleet/jobs/{seg(job_id)}/archive.zip", sink, authorized=True, params=params)
