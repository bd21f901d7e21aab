"""HTTP routes of resumable upload sessions (the protocol: ``fleet_artifacts.core.sessions``)."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Response, delete, get, patch, post
from litestar.params import HeaderParameter, JSONBody, PathParameter

from fleet_artifacts.core.access import Scope
from fleet_artifacts.core.models import ArtifactOut, SessionOpen, SessionOut
from fleet_artifacts.core.ports import UploadSession
from fleet_artifacts.core.sessions import missing_ranges, public_id
from fleet_artifacts.routes.deps import (
    AnyRequest,
    IdempotencyKey,
    authorizing,
    context,
    needs,
    replayed_header,
    served,
)
from fleet_artifacts.routes.openapi import ChunkOperation, problems
from fleet_artifacts.routes.openapi_links import LinkedOperation
from fleet_artifacts.routes.strict_json import StrictJSON

SESSIONS_PATH = "/uploads"
SessionId = Annotated[str, PathParameter(description="The session id returned when it was opened.")]
ContentRange = Annotated[
    str | None,
    HeaderParameter(
        name="Content-Range",
        description="Where the chunk goes: bytes <first>-<last>/<total or *>.",
        schema_extra={"pattern": r"^bytes \d{1,19}-\d{1,19}/(\d{1,19}|\*)$"},
    ),
]


def session_out(session: UploadSession, base_url: str) -> SessionOut:
    """The client's view of a session, with the URL that addresses it."""
    sid = public_id(session.job_id, session.id)
    return SessionOut(
        id=sid,
        url=f"{base_url.rstrip('/')}{SESSIONS_PATH}/{sid}",
        job_id=session.job_id,
        artifact_id=session.artifact_id,
        kind=session.kind,
        file_name=session.file_name,
        content_type=session.content_type,
        run_id=session.run_id,
        tags=session.tags,
        total_bytes=session.total_bytes,
        received_bytes=sum(c.length for c in session.chunks),
        missing=[(gap.first, gap.last) for gap in missing_ranges(session.chunks, session.total_bytes)],
        created_at=session.created_at,
        expires_at=session.expires_at,
        completed=session.completed,
    )


class UploadSessionController(Controller):
    """Resumable uploads: open, send chunks in any order (retries welcome), complete or abort."""

    path = SESSIONS_PATH
    tags = ["upload sessions"]
    middleware = [authorizing]  # every operation needs a bearer token with its scope, before the body

    @post(
        "/",
        operation_id="openUploadSession",
        operation_class=LinkedOperation,
        **needs(Scope.WRITE),
        responses=problems(400, 401, 403, 409, 413, 503),
        status_code=201,
        dto=StrictJSON[SessionOpen],
        return_dto=None,
    )
    async def open_session(
        self,
        request: AnyRequest,
        data: JSONBody[SessionOpen],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[SessionOut]:
        """Open a resumable upload session for one artifact of a job."""
        ctx = context(request)
        session, replayed = await ctx.services.sessions.open(ctx.product, data, key=idempotency_key)
        out = session_out(session, ctx.base_url)
        return Response(out, status_code=201, headers={"Location": out.url, **replayed_header(replayed)})

    @patch(
        "/{session_id:str}",
        operation_id="sendUploadChunk",
        **needs(Scope.WRITE),
        responses=problems(400, 401, 403, 404, 409, 413, 503),
        operation_class=ChunkOperation,
        request_max_body_size=None,
    )
    async def send_chunk(
        self,
        request: AnyRequest,
        session_id: SessionId,
        content_range: ContentRange = None,
    ) -> SessionOut:
        """Store one chunk at its Content-Range; answers the session's progress."""
        ctx = context(request)
        session = await ctx.services.sessions.put_chunk(
            ctx.product, session_id, content_range, request.stream()
        )
        return session_out(session, ctx.base_url)

    @get(
        "/{session_id:str}",
        operation_id="getUploadSession",
        **needs(Scope.WRITE),
        responses=problems(400, 401, 403, 404, 503),
    )
    async def progress(self, request: AnyRequest, session_id: SessionId) -> SessionOut:
        """Bytes received so far and the ranges still missing."""
        ctx = context(request)
        session, _ = await ctx.services.sessions.load(ctx.product, session_id)
        return session_out(session, ctx.base_url)

    @post(
        "/{session_id:str}/complete",
        operation_id="completeUploadSession",
        operation_class=LinkedOperation,
        **needs(Scope.WRITE),
        responses=problems(400, 401, 403, 404, 409, 413, 503),
        status_code=201,
    )
    async def complete(self, request: AnyRequest, session_id: SessionId) -> Response[ArtifactOut]:
        """Commit the chunks in order and create the artifact (again: the same artifact)."""
        ctx = context(request)
        return served(
            await ctx.services.sessions.complete(ctx.product, session_id), ctx.base_url, status_code=201
        )

    @delete(
        "/{session_id:str}",
        operation_id="abortUploadSession",
        **needs(Scope.WRITE),
        responses=problems(400, 401, 403, 404, 503),
    )
    async def abort(self, request: AnyRequest, session_id: SessionId) -> None:
        """Abort: the session and its staged bytes are dropped."""
        ctx = context(request)
        await ctx.services.sessions.abort(ctx.product, session_id)
