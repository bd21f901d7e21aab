"""Sans-IO requests: each route as a ``Call`` (what to send, how to read the answer).

Both clients send these; neither builds a request or parses an answer itself. A Call is
made once per logical operation and sent as often as retries need, so a create's
``Idempotency-Key`` is the same on every attempt.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
import msgspec

from fleet_artifacts.client.sources import Source
from fleet_artifacts.core.models import (
    ArtifactOut,
    ArtifactPage,
    JobDeleted,
    UploadTicket,
)

T = TypeVar("T")
JSON = "application/json"
CBOR = "application/cbor"


@dataclass
class Call(Generic[T]):
    """One request and how to read its answer.

    Attributes:
        method: HTTP method.
        path: path under the service's base URL (or an absolute URL with ``authorized`` off).
        decode: reads a successful answer.
        params: query parameters, in order (repeated names allowed).
        headers: extra request headers.
        json: a JSON body (encoded when sent).
        body: a streamed body (read again from its start on a retry).
        form: multipart fields; the body then goes as the last part, ``file``.
        ok: statuses that are success.
        repeatable: sending it again after an attempt that may have arrived does no harm.
        gone_is_done: a 404 after such an attempt means that attempt did the job (deletes).
        authorized: send the bearer token (never to anything but the service).
    """

    method: str
    path: str
    decode: Callable[[httpx.Response], T]
    params: list[tuple[str, str]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    json: Any = None
    body: Source | None = None
    form: list[tuple[str, str]] | None = None  # with ``body``: sent as multipart, the body as ``file``
    ok: frozenset[int] = frozenset({200})
    repeatable: bool = True
    gone_is_done: bool = False
    authorized: bool = True


def decoder(kind: type[T]) -> Callable[[httpx.Response], T]:
    """Decode a JSON answer into ``kind`` with msgspec."""

    def decode(response: httpx.Response) -> T:
        return msgspec.json.decode(response.content, type=kind)

    return decode


class Made(msgspec.Struct, frozen=True):
    """A create's answer: the artifact, and whether the service replayed an earlier create's."""

    artifact: ArtifactOut
    replayed: bool  # the Idempotency-Key had made it already (Idempotent-Replayed: true)


def made(response: httpx.Response) -> Made:
    """Decode a create's answer, noting a replay."""
    artifact = msgspec.json.decode(response.content, type=ArtifactOut)
    return Made(artifact, response.headers.get("idempotent-replayed", "").lower() == "true")


def nothing(_response: httpx.Response) -> None:
    """An answer without a body worth reading (204)."""
    return None


def seg(value: str) -> str:
    """One path segment, percent-encoded."""
    return quote(value, safe="")


def artifact_path(artifact_id: str, job_id: str | None, suffix: str = "") -> str:
    """The job-scoped path (a point read) when the job is known, else the id-only one."""
    if job_id is not None:
        return f"/fleet/jobs/{seg(job_id)}/artifacts/{seg(artifact_id)}{suffix}"
    return f"/fleet/artifacts/{seg(artifact_id)}{suffix}"


def new_key() -> str:
    """A fresh Idempotency-Key."""
    return "fa-" + secrets.token_urlsafe(24)


def opt(params: list[tuple[str, str]], name: str, value: object) -> None:
    """Append ``name=value`` unless the value is None or False (True is sent as ``true``)."""
    if value is None or value is False:
        return
    params.append((name, "true" if value is True else str(value)))


def meta_pairs(meta: dict[str, Any], *, tag_field: str) -> list[tuple[str, str]]:
    """``meta_json``'s metadata as name=value pairs, each tag as ``<tag_field>=key:value``.

    A raw upload's query string (``tag``) and a multipart form's fields (``tags``).
    """
    pairs: list[tuple[str, str]] = []
    for name, value in meta.items():
        if name == "tags":
            pairs += [(tag_field, f"{k}:{v}") for k, v in value.items()]
        else:
            opt(pairs, name, value)
    return pairs


def meta_json(
    kind: str,
    file_name: str,
    *,
    run_id: str | None,
    content_type: str | None,
    tags: dict[str, str] | None,
    retention_days: int | None,
    keep_forever: bool,
) -> dict[str, Any]:
    """The same metadata as a JSON object (direct upload start, sessions, envelope)."""
    out: dict[str, Any] = {"kind": kind, "fileName": file_name, "tags": dict(tags or {})}
    for name, value in (("runId", run_id), ("contentType", content_type), ("retentionDays", retention_days)):
        if value is not None:
            out[name] = value
    if keep_forever:
        out["keepForever"] = True
    return out


def upload_raw(
    job_id: str, params: list[tuple[str, str]], source: Source, key: str, ct: str | None
) -> Call[Made]:
    """``POST /fleet/jobs/{job}/artifacts`` with the file as the body (streams)."""
    # No Content-Type at all when none is given: the service then guesses it from fileName.
    headers = {"Idempotency-Key": key} if ct is None else {"Idempotency-Key": key, "Content-Type": ct}
    if source.size is not None:
        headers["Content-Length"] = str(source.size)
    return Call(
        "POST",
        f"/fleet/jobs/{seg(job_id)}/artifacts",
        made,
        params=params,
        headers=headers,
        body=source,
        ok=frozenset({201}),
    )


def upload_json(job_id: str, payload: dict[str, Any], key: str, media_type: str) -> Call[Made]:
    """``POST .../artifacts`` with a JSON envelope (base64 content)."""
    return Call(
        "POST",
        f"/fleet/jobs/{seg(job_id)}/artifacts",
        made,
        headers={"Idempotency-Key": key, "Content-Type": media_type},
        json=payload,
        ok=frozenset({201}),
    )


def upload_multipart(job_id: str, meta: dict[str, Any], source: Source, key: str) -> Call[Made]:
    """``POST .../artifacts`` as multipart/form-data: metadata fields first, the ``file`` part last."""
    return Call(
        "POST",
        f"/fleet/jobs/{seg(job_id)}/artifacts",
        made,
        headers={"Idempotency-Key": key},
        form=meta_pairs(meta, tag_field="tags"),
        body=source,
        ok=frozenset({201}),
    )


def start_direct(job_id: str, meta: dict[str, Any], size: int | None, key: str) -> Call[UploadTicket]:
    """``POST .../artifacts/uploads``: an UPLOADING pointer and its write URL."""
    body = dict(meta) if size is None else {**meta, "sizeBytes": size}
    return Call(
        "POST",
        f"/fleet/jobs/{seg(job_id)}/artifacts/uploads",
        decoder(UploadTicket),
        headers={"Idempotency-Key": key},
        json=body,
        ok=frozenset({201}),
    )


def finalize(job_id: str, artifact_id: str, size: int, sha256: str | None, verify: bool) -> Call[ArtifactOut]:
    """``POST .../finalize``: the service checks the blob against the claim (repeatable)."""
    body: dict[str, Any] = {"sizeBytes": size, "verify": verify}
    if sha256 is not None:
        body["sha256"] = sha256
    return Call("POST", artifact_path(artifact_id, job_id, "/finalize"), decoder(ArtifactOut), json=body)


def get(
    artifact_id: str, job_id: str | None, disposition: str | None, expires_in: int | None
) -> Call[ArtifactOut]:
    """The pointer with a fresh download URL."""
    params: list[tuple[str, str]] = []
    opt(params, "disposition", disposition)
    opt(params, "expiresIn", expires_in)
    return Call("GET", artifact_path(artifact_id, job_id), decoder(ArtifactOut), params=params)


def list_page(
    job_id: str,
    *,
    kind: str | None,
    run_id: str | None,
    tags: dict[str, str] | None,
    status: str | None,
    limit: int | None,
    continuation_token: str | None,
    expires_in: int | None,
) -> Call[ArtifactPage]:
    """One page of a job's artifacts, newest first."""
    params: list[tuple[str, str]] = []
    opt(params, "kind", kind)
    opt(params, "runId", run_id)
    params += [("tag", f"{k}:{v}") for k, v in (tags or {}).items()]
    opt(params, "status", status)
    opt(params, "limit", limit)
    opt(params, "continuationToken", continuation_token)
    opt(params, "expiresIn", expires_in)
    return Call("GET", f"/fleet/jobs/{seg(job_id)}/artifacts", decoder(ArtifactPage), params=params)


def delete(artifact_id: str, job_id: str | None, purge: bool) -> Call[None]:
    """Delete one artifact (a 404 after a lost answer means the first attempt did it)."""
    params: list[tuple[str, str]] = []
    opt(params, "purge", purge)
    return Call(
        "DELETE",
        artifact_path(artifact_id, job_id),
        nothing,
        params=params,
        ok=frozenset({204, 200}),
        gone_is_done=True,
    )


def delete_job(job_id: str, kind: str | None, run_id: str | None, purge: bool) -> Call[JobDeleted]:
    """Delete a job's artifacts (narrowed by kind and run); answers how many."""
    params: list[tuple[str, str]] = []
    opt(params, "kind", kind)
    opt(params, "runId", run_id)
    opt(params, "purge", purge)
    return Call("DELETE", f"/fleet/jobs/{seg(job_id)}/artifacts", decoder(JobDeleted), params=params)


def patch(
    artifact_id: str, job_id: str | None, body: dict[str, Any], if_match: str | None
) -> Call[ArtifactOut]:
    """Change retention and/or tags."""
    headers = {"If-Match": if_match} if if_match else {}
    return Call("PATCH", artifact_path(artifact_id, job_id), decoder(ArtifactOut), json=body, headers=headers)


def lifecycle(
    artifact_id: str, job_id: str | None, action: str, body: dict[str, Any] | None
) -> Call[ArtifactOut]:
    """``archive``, ``restore`` (200 or 202) or ``undelete``."""
    return Call(
        "POST",
        artifact_path(artifact_id, job_id, f"/{action}"),
        decoder(ArtifactOut),
        json=body,
        ok=frozenset({200, 202}),
        repeatable=action == "restore",  # archiving twice may answer 409; undelete twice 404
    )


def expired(expires_at: datetime | None, now: datetime, margin: float = 60.0) -> bool:
    """Whether a signed URL expiring at ``expires_at`` is too close to its end to start a download."""
    return expires_at is None or (expires_at - now).total_seconds() < margin


def patch_body(
    *,
    retention_days: int | None,
    expires_at: datetime | None,
    keep_forever: bool | None,
    tags: dict[str, str] | None,
) -> dict[str, Any]:
    """A PATCH body from the fields given (left out: unchanged)."""
    body: dict[str, Any] = {}
    if retention_days is not None:
        body["retentionDays"] = retention_days
    if expires_at is not None:
        body["expiresAt"] = expires_at
    if keep_forever is not None:
        body["keepForever"] = keep_forever
    if tags is not None:
        body["tags"] = tags
    return body
