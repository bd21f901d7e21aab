"""The hot read path: a plain pointer fetch, answered before Litestar's per-route work.

Dashboards fetch pointers (``GET /fleet/jobs/{job}/artifacts/{id}`` and ``/fleet/artifacts/{id}``)
far more often than anything else. Through Litestar's route machinery (the parameter model,
a ``Response`` object and its header map, the per-route middleware and exception wrapper)
a fetch cost about three times the work it does (a token check, one indexed read, one HMAC).

So a plain fetch is answered here, in front of the router: the same token check
(``TokenAuthority.authorize``, refusals audited as ever), the same core call
(``ArtifactService.get``), the same bytes and headers, and errors rendered by the service's own
problem handlers. "Plain" is decided before anything runs, with no side effect: GET of one of
the two paths, both ids well formed, a query of at most ``disposition`` and ``expiresIn``
(once each, letters and digits only), no ``Origin`` header (CORS answers carry Litestar's
headers), no root path. Anything else goes to the router, which documents these two
operations in the OpenAPI document and stays their reference: ``tests/test_hot_reads.py``
sends the same requests both ways and compares the answers byte for byte.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Litestar, Request
from litestar.enums import ScopeType
from litestar.routes import HTTPRoute
from litestar.types import ASGIApp, Receive, Send
from litestar.types import Scope as AsgiScope

from fleet_artifacts.core.access import Scope
from fleet_artifacts.core.audit import actor as audit_actor
from fleet_artifacts.core.validation import is_id
from fleet_artifacts.routes import artifacts
from fleet_artifacts.routes.access_log import CALLER
from fleet_artifacts.routes.deps import anchored, origin_of, seconds, services_of
from fleet_artifacts.routes.problems import EXCEPTION_HANDLERS

_DISPOSITIONS = frozenset({"attachment", "inline"})
_encode = msgspec.json.Encoder().encode  # what Litestar's own encoder answers for this struct


def plain_fetch(path: str, query: bytes) -> tuple[str | None, str, str, str | None] | None:
    """``(job id or None, artifact id, disposition, expiresIn)`` of a plain fetch; None otherwise.

    Example:
        >>> plain_fetch("/fleet/jobs/nightly-42/artifacts/abc", b"disposition=inline")
        ('nightly-42', 'abc', 'inline', None)
        >>> plain_fetch("/fleet/artifacts/abc/content", b"") is None
        True
    """
    parts = path.split("/")
    if len(parts) == 6 and parts[1] == "fleet" and parts[2] == "jobs" and parts[4] == "artifacts":
        job_id: str | None = parts[3]
    elif len(parts) == 4 and parts[1] == "fleet" and parts[2] == "artifacts":
        job_id = None
    else:
        return None
    artifact_id = parts[-1]
    if not is_id(artifact_id) or (job_id is not None and not is_id(job_id)):
        return None
    disposition, expires_in = "attachment", None
    seen: set[str] = set()
    for pair in query.decode("latin-1").split("&") if query else ():
        key, eq, value = pair.partition("=")
        if not eq or key in seen or not (value.isascii() and value.isalnum()):
            return None  # odd forms (repeats, escapes, empty values) are the router's to judge
        seen.add(key)
        if key == "disposition" and value in _DISPOSITIONS:
            disposition = value
        elif key == "expiresIn" and value.isdigit():
            expires_in = value
        else:
            return None
    return job_id, artifact_id, disposition, expires_in


def hot_reads(app: ASGIApp, litestar: Litestar) -> ASGIApp:
    """Wrap ``app`` (the router): answer plain pointer fetches here, pass everything else on."""
    templates = {  # the router's own templates, for the access line and the metrics
        route.route_handler_map["GET"][0].fn: route.path_format
        for route in litestar.routes
        if isinstance(route, HTTPRoute) and "GET" in route.route_handler_map
    }
    in_job, by_id = templates[artifacts.get_in_job.fn], templates[artifacts.get_by_id.fn]

    async def middleware(scope: AsgiScope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or scope["method"] != "GET" or scope.get("root_path"):
            await app(scope, receive, send)
            return
        fetch = plain_fetch(scope["path"], scope["query_string"])
        authorization: str | None = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"origin":
                fetch = None
        if fetch is None:
            await app(scope, receive, send)
            return
        job_id, artifact_id, disposition, expires_in = fetch
        scope["path_template"] = by_id if job_id is None else in_job
        try:
            services = services_of(litestar.state)
            caller = services.auth.authorize(authorization, Scope.READ)
            scope["state"][CALLER] = caller
            audit_actor.set(caller.token_id)
            out = await services.artifacts.get(
                caller.product, artifact_id, job_id, disposition=disposition, expires_in=seconds(expires_in)
            )
            body = _encode(anchored(out, origin_of(scope, services)))
        except Exception as exc:
            await _problem(litestar, scope, receive, send, exc)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"etag", out.etag.encode("latin-1")),
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body, "more_body": False})

    return middleware


async def _problem(
    litestar: Litestar, scope: AsgiScope, receive: Receive, send: Send, exc: Exception
) -> None:
    """Answer ``exc`` with the handler the router's exception middleware would pick (by the MRO)."""
    handler = next(EXCEPTION_HANDLERS[cls] for cls in type(exc).__mro__ if cls in EXCEPTION_HANDLERS)
    request: Request[Any, Any, Any] = Request(scope, receive, send)
    response = handler(request, exc)
    await response.to_asgi_response(app=None, request=request, type_encoders=litestar.type_encoders)(
        scope, receive, send
    )
