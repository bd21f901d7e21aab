"""The outermost wrapper: a request id for every request, and one access line when it ends.

uvicorn's own access log is off because it prints every signed URL's query string,
signature included; this line names the route template (``/fleet/jobs/{job_id}/...``)
where one matched, else the path, and nothing of the query. ``log_lines`` writes it.

The request id is the client's ``X-Request-ID`` when it is sane (1 to 128 letters, digits and
``._:-``), else a new one; it is echoed on every answer, carried into problem documents and
written with the access line, the audit lines and (as JSON) every log record of the request.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from fleet_artifacts.core.audit import request_id
from fleet_artifacts.routes.log_lines import access_line

REQUEST_ID = "fleet_artifacts.request_id"  # where the id is kept, in the scope's state
CALLER = "fleet_artifacts.caller"  # where ``deps.authorizing`` leaves the caller, in the scope's state
_SANE = re.compile(rb"[A-Za-z0-9._:-]{1,128}")


def request_id_of(scope: Scope) -> str | None:
    """The id of the request ``scope`` belongs to (None before the wrapper saw it)."""
    state: dict[str, Any] = scope.get("state") or {}
    rid = state.get(REQUEST_ID)
    return rid if isinstance(rid, str) else None


def access_log(app: ASGIApp, *, json: bool = False) -> ASGIApp:
    """Wrap ``app``: give each HTTP request its id, and log one INFO line when its response ends."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        method = scope["method"]
        started = time.perf_counter()
        status = 500  # what the client sees if the app fails before it answers
        given = next((v for k, v in scope["headers"] if k == b"x-request-id"), None)
        raw = given if given is not None and _SANE.fullmatch(given) else os.urandom(12).hex().encode()
        rid = raw.decode()
        scope.setdefault("state", {})[REQUEST_ID] = rid
        request_id.set(rid)  # this request's task only: audit lines and log records name it

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), (b"x-request-id", raw)]}
            await send(message)

        try:
            await app(scope, receive, sending)
        finally:
            # The route template, else the raw (still percent-encoded) path: a decoded one could
            # carry a newline and forge a second log line.
            route = scope.get("path_template") or scope["raw_path"].decode("ascii", "backslashreplace")
            caller = scope["state"].get(CALLER)
            access_line(
                json=json,
                method=method,
                route=route,
                status=status,
                elapsed_ms=(time.perf_counter() - started) * 1000,
                rid=rid,
                product=getattr(caller, "product", None),
            )

    return middleware


def true_allow(app: ASGIApp, methods: dict[str, list[str]]) -> ASGIApp:
    """Answer OPTIONS with every method of the path, not only those of the first handler merged.

    Litestar's automatic OPTIONS handler lists the methods of the route it was made for;
    when handlers of one path are merged from several places (GET and DELETE of one
    artifact, say), its Allow misses some. ``methods`` maps path templates to all of them.
    """

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or scope["method"] != "OPTIONS":
            await app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            template = scope.get("path_template")
            if message["type"] == "http.response.start" and template in methods:
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
                headers.append((b"allow", ", ".join(methods[template]).encode()))
                message = {**message, "headers": headers}
            await send(message)

        await app(scope, receive, sending)

    return middleware
