"""HTTP routes: parse, call the service, return a Struct. Nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, Literal

from litestar import Controller, HttpMethod, Request, Response, delete, get, post, route
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.handlers.base import BaseRouteHandler
from litestar.params import FromQuery, HeaderParameter, JSONBody, PathParameter, QueryParameter
from litestar.response import Redirect

from fleet_artifacts.downloads import stream_blob
from fleet_artifacts.errors import InvalidInput
from fleet_artifacts.models import (
    ArtifactKind,
    ArtifactOut,
    ArtifactPage,
    DirectUploadRequest,
    FinalizeRequest,
    Health,
    Pointer,
    UploadTicket,
)
from fleet_artifacts.ports import ListQuery
from fleet_artifacts.service import ArtifactService, UploadMeta, content_disposition
from fleet_artifacts.uploads import (
    ENVELOPE_MEDIA_TYPE,
    MULTIPART_MEDIA_TYPE,
    parse_kind,
    read_envelope,
    read_multipart,
)
from fleet_artifacts.validation import check_id, parse_tags

AnyRequest = Request[Any, Any, Any]
JobId = Annotated[str, PathParameter(description="The job the artifacts belong to (partition key).")]
ArtifactId = Annotated[str, PathParameter(description="The artifact id returned on upload.")]
Tag = Annotated[
    list[str] | None,
    QueryParameter(description="Tag as key:value; repeat for several (all must match)."),
]
IdempotencyKey = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key",
        description="Makes the create safe to retry: the same key (per product and job, within the "
        "retention window) returns the same artifact; reused with other metadata -> 409.",
    ),
]
REPLAYED = "Idempotent-Replayed"
Service = NamedDependency[ArtifactService]
ProductId = NamedDependency[str]
BaseUrl = NamedDependency[str]
Disposition = Literal["attachment", "inline"]
DispositionParam = Annotated[
    Disposition,
    QueryParameter(description="Content-Disposition of the download: attachment saves, inline views."),
]
CONTENT_DESCRIPTION = """Streams the artifact's bytes with Content-Type, Content-Length,
Content-Disposition and `ETag` (the sha256). `If-None-Match` answers 304; a single `Range`
answers 206 with Content-Range (416 if unsatisfiable). `?redirect=true` answers 302 to a fresh
signed URL instead."""

UPLOAD_DESCRIPTION = f"""Upload one artifact. The form is chosen by Content-Type alone:

* `{MULTIPART_MEDIA_TYPE}`: fields `kind`, `fileName`, `runId`, `contentType`, `tags`
  (repeat, `key:value`) first, then the part `file` last. Streams.
* `{ENVELOPE_MEDIA_TYPE}`: JSON `{{"kind", "fileName", "content" (base64), "contentType",
  "runId", "tags": {{}}}}`, for small payloads.
* any other type: the body is the artifact (streams), stored with that Content-Type;
  metadata in the query string (`kind`, `fileName`, `runId`, `tag`, optional `contentType`).
"""


def per_method(name: str) -> Callable[..., str]:
    """OpenAPI operation ids for a handler serving GET and HEAD: ``name`` and ``nameHead``."""
    return lambda _handler, method, _path: name if method == "GET" else f"{name}Head"


def provide_service(state: State) -> ArtifactService:
    """The per-process service built in the lifespan."""
    service: ArtifactService = state.service
    return service


def provide_base_url(request: AnyRequest, state: State) -> str:
    """Where this service is reached: PUBLIC_BASE_URL, else the request's own origin."""
    configured: str | None = state.public_base_url
    return configured or str(request.base_url).rstrip("/")


def require_token(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard: refuse a request without a valid token before its body is read or parsed."""
    connection.app.state.auth.product_for(connection.headers.get("authorization"))


def authenticate(request: AnyRequest, state: State) -> str:
    """Resolve the caller's product from the bearer token (401 otherwise)."""
    product: str = state.auth.product_for(request.headers.get("authorization"))
    return product


class ArtifactController(Controller):
    """The artifact API; every route needs a bearer token."""

    path = "/fleet"
    tags = ["artifacts"]
    guards = [require_token]
    dependencies = {
        "service": Provide(provide_service, sync_to_thread=False),
        "product_id": Provide(authenticate, sync_to_thread=False),
        "base_url": Provide(provide_base_url, sync_to_thread=False),
    }

    @post(
        "/jobs/{job_id:str}/artifacts",
        operation_id="uploadArtifact",
        description=UPLOAD_DESCRIPTION,
        request_max_body_size=None,  # the service enforces MAX_UPLOAD_BYTES while streaming
        status_code=201,
    )
    async def upload(
        self,
        request: AnyRequest,
        service: Service,
        product_id: ProductId,
        base_url: BaseUrl,
        job_id: JobId,
        kind: FromQuery[str | None] = None,
        file_name: Annotated[str | None, QueryParameter(name="fileName")] = None,
        run_id: Annotated[str | None, QueryParameter(name="runId")] = None,
        content_type: Annotated[str | None, QueryParameter(name="contentType")] = None,
        tag: Tag = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[ArtifactOut]:
        """Upload an artifact (multipart, raw body or JSON envelope)."""
        check_id(job_id, "jobId")
        media_type = request.headers.get("content-type", "application/octet-stream")
        essence = media_type.split(";", 1)[0].strip().lower()
        query_meta = (kind, file_name, run_id, content_type, tag)
        if essence in (MULTIPART_MEDIA_TYPE, ENVELOPE_MEDIA_TYPE) and any(v is not None for v in query_meta):
            raise InvalidInput(f"with {essence}, metadata goes in the body, not the query string")
        chunks: AsyncIterator[bytes]
        if essence == MULTIPART_MEDIA_TYPE:
            meta, chunks = await read_multipart(request.stream(), media_type)
        elif essence == ENVELOPE_MEDIA_TYPE:
            meta, content = await read_envelope(
                request.stream(),
                max_envelope_bytes=service.max_envelope_bytes,
                max_upload_bytes=service.max_upload_bytes,
            )
            chunks = _once(content)
        else:
            if (length := request.headers.get("content-length")) and length.isdigit():
                service.check_size(int(length))
            meta = UploadMeta.checked(
                kind=parse_kind(kind),
                file_name=file_name or "",
                content_type=content_type or media_type,
                run_id=run_id,
                tags=parse_tags(tag or []),
            )
            chunks = request.stream()
        out, replayed = await service.upload_once(
            product_id, job_id, meta, chunks, key=idempotency_key, base_url=base_url
        )
        headers = {"Location": f"/fleet/jobs/{job_id}/artifacts/{out.id}"}
        if replayed:
            headers[REPLAYED] = "true"
        return Response(out, status_code=201, headers=headers)

    @post(
        "/jobs/{job_id:str}/artifacts/uploads",
        operation_id="startDirectUpload",
        status_code=201,
        description="Start a direct-to-blob upload: answers an UPLOADING pointer with `uploadUrl`, a "
        "create+write URL for exactly its blob (an Azure SAS, or the local backend's signed PUT route). "
        "Write the bytes there (e.g. `BlobClient.from_blob_url(uploadUrl).upload_blob(...)`), then "
        "call `finalize`.",
    )
    async def start_direct_upload(
        self,
        service: Service,
        product_id: ProductId,
        base_url: BaseUrl,
        job_id: JobId,
        data: JSONBody[DirectUploadRequest],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[UploadTicket]:
        """Start a direct-to-blob upload."""
        meta = UploadMeta.checked(
            kind=data.kind,
            file_name=data.file_name,
            content_type=data.content_type,
            run_id=data.run_id,
            tags=data.tags,
        )
        ticket, replayed = await service.direct.start_once(
            product_id,
            check_id(job_id, "jobId"),
            meta,
            data.size_bytes,
            key=idempotency_key,
            base_url=base_url,
        )
        return Response(ticket, status_code=201, headers={REPLAYED: "true"} if replayed else {})

    @post(
        "/jobs/{job_id:str}/artifacts/{artifact_id:str}/finalize",
        operation_id="finalizeDirectUpload",
        status_code=200,
        description="Check the committed blob against the client's `sizeBytes` and `sha256` (hashing it "
        "when `verify` is true or it is at most VERIFY_MAX_BYTES), then make the artifact ACTIVE. A "
        "mismatch answers 422 and discards the upload.",
    )
    async def finalize(
        self,
        service: Service,
        product_id: ProductId,
        base_url: BaseUrl,
        job_id: JobId,
        artifact_id: ArtifactId,
        data: JSONBody[FinalizeRequest],
    ) -> ArtifactOut:
        """Finalize a direct-to-blob upload."""
        return await service.direct.finalize(
            product_id, check_id(job_id, "jobId"), _aid(artifact_id), data, base_url=base_url
        )

    @get("/jobs/{job_id:str}/artifacts", operation_id="listArtifacts")
    async def list_artifacts(
        self,
        service: Service,
        product_id: ProductId,
        base_url: BaseUrl,
        job_id: JobId,
        kind: FromQuery[ArtifactKind | None] = None,
        run_id: Annotated[str | None, QueryParameter(name="runId")] = None,
        tag: Tag = None,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
        continuation_token: Annotated[str | None, QueryParameter(name="continuationToken")] = None,
    ) -> ArtifactPage:
        """List a job's artifacts, newest first; pass continuationToken for the next page."""
        query = ListQuery(
            job_id=check_id(job_id, "jobId"),
            product_id=product_id,
            kind=kind,
            run_id=None if run_id is None else check_id(run_id, "runId"),
            tags=parse_tags(tag or []),
            limit=limit,
            continuation=continuation_token,
        )
        return await service.list(query, base_url=base_url)

    @get("/jobs/{job_id:str}/artifacts/{artifact_id:str}", operation_id="getJobArtifact")
    async def get_in_job(
        self,
        service: Service,
        product_id: ProductId,
        base_url: BaseUrl,
        job_id: JobId,
        artifact_id: ArtifactId,
        disposition: DispositionParam = "attachment",
    ) -> ArtifactOut:
        """Fetch a pointer with a fresh download URL (a point read)."""
        pointer = await service.pointer(product_id, _aid(artifact_id), check_id(job_id, "jobId"))
        return await service.present(pointer, disposition=disposition, base_url=base_url)

    @get("/artifacts/{artifact_id:str}", operation_id="getArtifact")
    async def get_by_id(
        self,
        service: Service,
        product_id: ProductId,
        base_url: BaseUrl,
        artifact_id: ArtifactId,
        disposition: DispositionParam = "attachment",
    ) -> ArtifactOut:
        """Fetch a pointer by id alone (a cross-partition lookup on Cosmos)."""
        pointer = await service.pointer(product_id, _aid(artifact_id))
        return await service.present(pointer, disposition=disposition, base_url=base_url)

    @route(
        "/jobs/{job_id:str}/artifacts/{artifact_id:str}/content",
        http_method=[HttpMethod.GET, HttpMethod.HEAD],
        operation_id=per_method("downloadJobArtifact"),
        description=CONTENT_DESCRIPTION,
    )
    async def content_in_job(
        self,
        request: AnyRequest,
        service: Service,
        product_id: ProductId,
        base_url: BaseUrl,
        job_id: JobId,
        artifact_id: ArtifactId,
        disposition: DispositionParam = "attachment",
        redirect: FromQuery[bool] = False,
    ) -> Response[Any]:
        """Download the bytes through the service (Range, ETag), or redirect to a signed URL."""
        pointer = await service.pointer(product_id, _aid(artifact_id), check_id(job_id, "jobId"))
        return await _content(request, service, pointer, disposition, redirect, base_url)

    @route(
        "/artifacts/{artifact_id:str}/content",
        http_method=[HttpMethod.GET, HttpMethod.HEAD],
        operation_id=per_method("downloadArtifact"),
        description=CONTENT_DESCRIPTION,
    )
    async def content_by_id(
        self,
        request: AnyRequest,
        service: Service,
        product_id: ProductId,
        base_url: BaseUrl,
        artifact_id: ArtifactId,
        disposition: DispositionParam = "attachment",
        redirect: FromQuery[bool] = False,
    ) -> Response[Any]:
        """Download the bytes, the artifact looked up by id alone."""
        pointer = await service.pointer(product_id, _aid(artifact_id))
        return await _content(request, service, pointer, disposition, redirect, base_url)

    @delete("/jobs/{job_id:str}/artifacts/{artifact_id:str}", operation_id="deleteJobArtifact")
    async def delete_in_job(
        self, service: Service, product_id: ProductId, job_id: JobId, artifact_id: ArtifactId
    ) -> None:
        """Delete an artifact's pointer and blob."""
        await service.delete(product_id, _aid(artifact_id), job_id=check_id(job_id, "jobId"))

    @delete("/artifacts/{artifact_id:str}", operation_id="deleteArtifact")
    async def delete_by_id(self, service: Service, product_id: ProductId, artifact_id: ArtifactId) -> None:
        """Delete an artifact's pointer and blob, found by id alone."""
        await service.delete(product_id, _aid(artifact_id))


def _aid(artifact_id: str) -> str:
    return check_id(artifact_id, "artifactId")


async def _content(
    request: AnyRequest,
    service: ArtifactService,
    pointer: Pointer,
    disposition: Disposition,
    redirect: bool,
    base_url: str,
) -> Response[Any]:
    head = request.method == "HEAD"
    if redirect:
        url, _ = await service.signed_url(pointer, disposition=disposition, base_url=base_url)
        return Redirect(url, status_code=302, headers={"Cache-Control": "no-store"})
    return await stream_blob(
        service.blobs,
        pointer.blob_key,
        size=pointer.size_bytes,
        content_type=pointer.content_type,
        content_disposition=content_disposition(pointer.file_name, disposition),
        etag=f'"{pointer.sha256}"',
        headers=dict(request.headers),
        head=head,
    )


async def _once(content: bytes) -> AsyncIterator[bytes]:
    yield content


@get("/health", operation_id="health", tags=["health"])
async def health() -> Health:
    """Anonymous liveness probe."""
    return Health(status="ok")
