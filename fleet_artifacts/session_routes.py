"""HTTP routes of resumable upload sessions (see ``fleet_artifacts.sessions``)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.di import Provide
from litestar.params import HeaderParameter, JSONBody, PathParameter

from fleet_artifacts.models import ArtifactOut
from fleet_artifacts.routes import (
    REPLAYED,
    BaseUrl,
    IdempotencyKey,
    ProductId,
    Service,
    authenticate,
    provide_base_url,
    provide_service,
    require_token,
)
from fleet_artifacts.sessions import SessionOpen, SessionOut

SessionId = Annotated[str, PathParameter(description="The session id returned when it was opened.")]
ContentRange = Annotated[
    str | None,
    HeaderParameter(
        name="Content-Range", description="Where the chunk goes: bytes <first>-<last>/<total or *>."
    ),
]


class UploadSessionController(Controller):
    """Resumable uploads: open, send chunks in any order (retries welcome), complete or abort."""

    path = "/uploads"
    tags = ["upload sessions"]
    guards = [require_token]
    dependencies = {
        "service": Provide(provide_service, sync_to_thread=False),
        "product_id": Provide(authenticate, sync_to_thread=False),
        "base_url": Provide(provide_base_url, sync_to_thread=False),
    }

    @post("/", operation_id="openUploadSession", status_code=201)
    async def open_session(
        self,
        service: Service,
        product_id: ProductId,
        base_url: BaseUrl,
        data: JSONBody[SessionOpen],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[SessionOut]:
        """Open a resumable upload session for one artifact of a job."""
        session, replayed = await service.sessions.start(
            product_id, data, key=idempotency_key, base_url=base_url
        )
        headers = {"Location": session.url} | ({REPLAYED: "true"} if replayed else {})
        return Response(session, status_code=201, headers=headers)

    @patch("/{session_id:str}", operation_id="sendUploadChunk", request_max_body_size=None)
    async def send_chunk(
        self,
        request: Request[Any, Any, Any],
        service: Service,
        product_id: ProductId,
        base_url: BaseUrl,
        session_id: SessionId,
        content_range: ContentRange = None,
    ) -> SessionOut:
        """Store one chunk at its Content-Range; answers the session's progress."""
        session = await service.sessions.put_chunk(product_id, session_id, content_range, request.stream())
        return service.sessions.out(session, base_url)

    @get("/{session_id:str}", operation_id="getUploadSession")
    async def progress(
        self, service: Service, product_id: ProductId, base_url: BaseUrl, session_id: SessionId
    ) -> SessionOut:
        """Bytes received so far and the ranges still missing."""
        session, _ = await service.sessions.load(product_id, session_id)
        return service.sessions.out(session, base_url)

    @post("/{session_id:str}/complete", operation_id="completeUploadSession", status_code=201)
    async def complete(
        self, service: Service, product_id: ProductId, base_url: BaseUrl, session_id: SessionId
    ) -> ArtifactOut:
        """Commit the chunks in order and create the artifact (again: the same artifact)."""
        return await service.sessions.complete(product_id, session_id, base_url=base_url)

    @delete("/{session_id:str}", operation_id="abortUploadSession")
    async def abort(self, service: Service, product_id: ProductId, session_id: SessionId) -> None:
        """Abort: the session and its staged bytes are dropped."""
        await service.sessions.abort(product_id, session_id)
