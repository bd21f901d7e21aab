"""HTTP routes: parse, call the service, return a Struct. Nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import FromQuery, PathParameter, QueryParameter

from fleet_artifacts.errors import InvalidInput
from fleet_artifacts.models import ArtifactKind, ArtifactOut, ArtifactPage, Health
from fleet_artifacts.ports import ListQuery
from fleet_artifacts.service import ArtifactService, UploadMeta
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
Service = NamedDependency[ArtifactService]
ProductId = NamedDependency[str]

UPLOAD_DESCRIPTION = f"""Upload one artifact. The form is chosen by Content-Type alone:

* `{MULTIPART_MEDIA_TYPE}`: fields `kind`, `fileName`, `runId`, `contentType`, `tags`
  (repeat, `key:value`) first, then the part `file` last. Streams.
* `{ENVELOPE_MEDIA_TYPE}`: JSON `{{"kind", "fileName", "content" (base64), "contentType",
  "runId", "tags": {{}}}}`, for small payloads.
* any other type: the body is the artifact (streams), stored with that Content-Type;
  metadata in the query string (`kind`, `fileName`, `runId`, `tag`, optional `contentType`).
"""


def provide_service(state: State) -> ArtifactService:
    """The per-process service built in the lifespan."""
    service: ArtifactService = state.service
    return service


def authenticate(request: AnyRequest, state: State) -> str:
    """Resolve the caller's product from the bearer token (401 otherwise)."""
    product: str = state.auth.product_for(request.headers.get("authorization"))
    return product


class ArtifactController(Controller):
    """The artifact API; every route needs a bearer token."""

    path = "/fleet"
    tags = ["artifacts"]
    dependencies = {
        "service": Provide(provide_service, sync_to_thread=False),
        "product_id": Provide(authenticate, sync_to_thread=False),
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
        job_id: JobId,
        kind: FromQuery[str | None] = None,
        file_name: Annotated[str | None, QueryParameter(name="fileName")] = None,
        run_id: Annotated[str | None, QueryParameter(name="runId")] = None,
        content_type: Annotated[str | None, QueryParameter(name="contentType")] = None,
        tag: Tag = None,
    ) -> Response[ArtifactOut]:
        """Upload an artifact (multipart, raw body or JSON envelope)."""
        check_id(job_id, "jobId")
        media_type = request.headers.get("content-type", "application/octet-stream")
        essence = media_type.split(";", 1)[0].strip().lower()
        query_meta = (kind, file_name, run_id, content_type, tag)
        if essence in (MULTIPART_MEDIA_TYPE, ENVELOPE_MEDIA_TYPE) and any(v is not None for v in query_meta):
            raise InvalidInput(f"with {essence}, metadata goes in the body, not the query string")
        if essence == MULTIPART_MEDIA_TYPE:
            meta, chunks = await read_multipart(request.stream(), media_type)
            out = await service.upload(product_id, job_id, meta, chunks)
        elif essence == ENVELOPE_MEDIA_TYPE:
            meta, content = await read_envelope(
                request.stream(),
                max_envelope_bytes=service.max_envelope_bytes,
                max_upload_bytes=service.max_upload_bytes,
            )
            out = await service.upload(product_id, job_id, meta, _once(content))
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
            out = await service.upload(product_id, job_id, meta, request.stream())
        location = f"/fleet/jobs/{job_id}/artifacts/{out.id}"
        return Response(out, status_code=201, headers={"Location": location})

    @get("/jobs/{job_id:str}/artifacts", operation_id="listArtifacts")
    async def list_artifacts(
        self,
        service: Service,
        product_id: ProductId,
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
        return await service.list(query)

    @get("/jobs/{job_id:str}/artifacts/{artifact_id:str}", operation_id="getJobArtifact")
    async def get_in_job(
        self, service: Service, product_id: ProductId, job_id: JobId, artifact_id: ArtifactId
    ) -> ArtifactOut:
        """Fetch a pointer with a fresh download URL (a point read)."""
        return await service.get(product_id, check_id(job_id, "jobId"), check_id(artifact_id, "artifactId"))

    @delete("/jobs/{job_id:str}/artifacts/{artifact_id:str}", operation_id="deleteJobArtifact")
    async def delete_in_job(
        self, service: Service, product_id: ProductId, job_id: JobId, artifact_id: ArtifactId
    ) -> None:
        """Delete an artifact's pointer and blob."""
        await service.delete(
            product_id, check_id(artifact_id, "artifactId"), job_id=check_id(job_id, "jobId")
        )

    @get("/artifacts/{artifact_id:str}", operation_id="getArtifact")
    async def get_by_id(
        self, service: Service, product_id: ProductId, artifact_id: ArtifactId
    ) -> ArtifactOut:
        """Fetch a pointer by id alone (a cross-partition lookup on Cosmos)."""
        return await service.get_by_id(product_id, check_id(artifact_id, "artifactId"))

    @delete("/artifacts/{artifact_id:str}", operation_id="deleteArtifact")
    async def delete_by_id(self, service: Service, product_id: ProductId, artifact_id: ArtifactId) -> None:
        """Delete an artifact's pointer and blob, found by id alone."""
        await service.delete(product_id, check_id(artifact_id, "artifactId"))


async def _once(content: bytes) -> AsyncIterator[bytes]:
    yield content


@get("/health", operation_id="health", tags=["health"])
async def health() -> Health:
    """Anonymous liveness probe."""
    return Health(status="ok")
