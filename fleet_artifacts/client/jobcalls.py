"""Sans-IO requests of the job-level routes, share links and upload sessions (see ``calls``)."""

from __future__ import annotations

import math
from typing import Any

import httpx
import msgspec

from fleet_artifacts.client.calls import CBOR, JSON, Call, artifact_path, decoder, nothing, opt, seg
from fleet_artifacts.client.models import EventPage, JobPage, Manifest, ManifestBody, SealOut, UploadSession
from fleet_artifacts.client.sources import Source
from fleet_artifacts.core.models import ArtifactOut, JobRetentionOut, ShareOut


def job_retention(job_id: str, body: dict[str, Any] | None = None) -> Call[JobRetentionOut]:
    """GET (no body) or PUT a job's retention."""
    path = f"/fleet/jobs/{seg(job_id)}/retention"
    return Call("GET" if body is None else "PUT", path, decoder(JobRetentionOut), json=body)


def share(artifact_id: str, job_id: str | None, expires_in: int, disposition: str) -> Call[ShareOut]:
    """Make a share link (not repeated after a lost answer: that would make two)."""
    body = {"expiresIn": expires_in, "disposition": disposition}
    return Call(
        "POST",
        artifact_path(artifact_id, job_id, "/shares"),
        decoder(ShareOut),
        json=body,
        ok=frozenset({201}),
        repeatable=False,
    )


def shares(artifact_id: str, job_id: str | None) -> Call[list[ShareOut]]:
    """An artifact's live share links."""
    return Call("GET", artifact_path(artifact_id, job_id, "/shares"), decoder(list[ShareOut]))


def revoke_share(share_id: str) -> Call[None]:
    """Revoke a share link."""
    return Call(
        "DELETE", f"/fleet/shares/{seg(share_id)}", nothing, ok=frozenset({204, 200}), gone_is_done=True
    )


def jobs(limit: int | None, continuation_token: str | None) -> Call[JobPage]:
    """One page of the product's jobs, most recently active first."""
    params: list[tuple[str, str]] = []
    opt(params, "limit", limit)
    opt(params, "continuationToken", continuation_token)
    return Call("GET", "/fleet/jobs", decoder(JobPage), params=params)


def manifest_body(job_id: str, *, cbor: bool, if_none_match: str | None) -> Call[ManifestBody | None]:
    """A job's manifest as served (None on 304 Not Modified)."""
    headers = {"Accept": CBOR if cbor else JSON}
    if if_none_match:
        headers["If-None-Match"] = if_none_match

    def decode(response: httpx.Response) -> ManifestBody | None:
        if response.status_code == 304:
            return None
        media = response.headers.get("content-type", JSON).split(";")[0].strip()
        return ManifestBody(body=response.content, etag=response.headers.get("etag", ""), media_type=media)

    path = f"/fleet/jobs/{seg(job_id)}/manifest"
    return Call("GET", path, decode, headers=headers, ok=frozenset({200, 304}))


def decode_manifest(body: ManifestBody) -> Manifest:
    """The manifest's content, from JSON or CBOR bytes."""
    if body.media_type == CBOR:
        import cbor2

        return msgspec.convert(cbor2.loads(body.body), Manifest, strict=False)
    return msgspec.json.decode(body.body, type=Manifest)


def seal(job_id: str) -> Call[SealOut]:
    """Seal a job: later creates answer 409 (sealing twice is harmless)."""
    return Call("POST", f"/fleet/jobs/{seg(job_id)}/seal", decoder(SealOut), ok=frozenset({200, 201}))


def events(since: str | None, limit: int | None, wait: float | None, job_id: str | None) -> Call[EventPage]:
    """One page of the event feed (long-polls up to ``wait`` seconds when it is empty)."""
    params: list[tuple[str, str]] = []
    opt(params, "since", since)
    opt(params, "limit", limit)
    # The service waits whole seconds, 0-30: a fraction rounds up, so a wait is never shorter.
    opt(params, "wait", None if wait is None else min(30, math.ceil(wait)))
    opt(params, "jobId", job_id)
    return Call("GET", "/fleet/events", decoder(EventPage), params=params)


def open_session(meta: dict[str, Any], size: int | None, key: str) -> Call[UploadSession]:
    """``POST /uploads``: open a resumable upload session."""
    body = meta if size is None else {**meta, "sizeBytes": size}
    return Call(
        "POST",
        "/uploads",
        decoder(UploadSession),
        json=body,
        headers={"Idempotency-Key": key},
        ok=frozenset({201}),
    )


def session_chunk(session_id: str, first: int, source: Source, total: int | None) -> Call[UploadSession]:
    """``PATCH /uploads/{id}``: one chunk at its place (repeating the same bytes is a no-op)."""
    assert source.size is not None
    last = first + source.size - 1
    headers = {
        "Content-Range": f"bytes {first}-{last}/{'*' if total is None else total}",
        "Content-Type": "application/octet-stream",
        "Content-Length": str(source.size),
    }
    return Call("PATCH", f"/uploads/{seg(session_id)}", decoder(UploadSession), headers=headers, body=source)


def session(session_id: str, action: str = "") -> Call[Any]:
    """GET the session's progress, POST ``complete`` or DELETE (``abort``) it."""
    path = f"/uploads/{seg(session_id)}"
    if action == "complete":
        return Call("POST", path + "/complete", decoder(ArtifactOut), ok=frozenset({201, 200}))
    if action == "abort":
        return Call("DELETE", path, nothing, ok=frozenset({204, 200}), gone_is_done=True)
    return Call("GET", path, decoder(UploadSession))


def retention_body(retention_days: int | None, keep_forever: bool, apply_to_existing: bool) -> dict[str, Any]:
    """A job retention body."""
    body: dict[str, Any] = {"applyToExisting": apply_to_existing}
    if retention_days is not None:
        body["retentionDays"] = retention_days
    if keep_forever:
        body["keepForever"] = True
    return body
