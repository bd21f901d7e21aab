"""The hot read paths: a plain pointer fetch or list page, answered before Litestar's per-route work.

Dashboards fetch pointers (``GET /fleet/jobs/{job}/artifacts/{id}`` and ``/fleet/artifacts/{id}``)
and list a job's page (``GET /fleet/jobs/{job}/artifacts``) far more often than anything else.
Through Litestar's route machinery (the parameter model, a ``Response`` object and its header
map, the per-route middleware and exception wrapper) a fetch cost about twice the work it does
(a token check, one indexed read, one HMAC).

So a plain request of these three is answered here, in front of the router: the same token
check (``TokenAuthority.authorize``, refusals audited as ever), the same core call, the same
bytes and headers, and errors rendered by the service's own problem handlers. "Plain" is
decided before anything runs, with no side effect: GET of one of the paths, the ids well
formed, only the operation's own query parameters (once each, but ``tag``), each value of
``[A-Za-z0-9._:~-]`` (nothing to unescape) and of the type and range the router would accept,
no ``Origin`` header (CORS answers carry Litestar's headers), no root path. Anything else goes
to the router, which documents these operations in the OpenAPI document and stays their
reference: ``tests/test_hot_reads.py`` sends the same requests both ways and compares the
answers.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple, get_args

import msgspec
from litestar import Litestar, Request
from litestar.enums import ScopeType
from litestar.routes import HTTPRoute
from litestar.types import ASGIApp, Receive, Send
from litestar.types import Scope as AsgiScope

from fleet_artifacts.core.access import Scope
from fleet_artifacts.core.models import ArtifactKind
from fleet_artifacts.core.validation import is_id
from fleet_artifacts.routes import artifacts
from fleet_artifacts.routes.deps import (
    Services,
    admit,
    anchored,
    anchored_page,
    origin_of,
    seconds,
    services_of,
)
from fleet_artifacts.routes.problems import EXCEPTION_HANDLERS

_PLAIN = re.compile(r"[A-Za-z0-9._:~-]+")  # a query value with nothing to unescape
_LIMIT = re.compile(r"[1-9][0-9]{0,3}")
# A Host the router takes (Litestar refuses others with 400): a name or address, and a port.
_HOST = re.compile(rb"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
_DISPOSITIONS = frozenset({"attachment", "inline"})
_KINDS = frozenset(kind.value for kind in ArtifactKind)
_STATUSES = frozenset(get_args(artifacts.Listed))
FETCH_KEYS = frozenset({"disposition", "expiresIn"})
LIST_KEYS = frozenset({"kind", "runId", "tag", "status", "limit", "continuationToken", "expiresIn"})
_encode = msgspec.json.Encoder().encode  # what Litestar's own encoder answers for these structs


class Fetch(NamedTuple):
    """A plain pointer fetch."""

    job_id: str | None
    artifact_id: str
    disposition: str
    expires_in: str | None


class Listing(NamedTuple):
    """A plain list request: the job and the query's values, checked as the router would."""

    job_id: str
    kind: ArtifactKind | None
    run_id: str | None
    tags: list[str]
    status: str | None
    limit: int
    continuation: str | None
    expires_in: str | None


def plain(path: str, query: bytes, reserved: frozenset[str] = frozenset()) -> Fetch | Listing | None:
    """What a plain request of the hot paths asks; None for anything else.

    Example:
        >>> plain("/fleet/jobs/nightly-42/artifacts/abc", b"disposition=inline")
        Fetch(job_id='nightly-42', artifact_id='abc', disposition='inline', expires_in=None)
        >>> plain("/fleet/jobs/nightly-42/artifacts", b"limit=5&tag=os:linux").limit
        5
        >>> plain("/fleet/artifacts/abc/content", b"") is None
        True
    """
    parts = path.split("/")
    if len(parts) < 4 or parts[1] != "fleet" or not is_id(parts[-1]) or not reserved.isdisjoint(parts):
        return None  # (the last part of a list's path is "artifacts"; ``reserved``: another route's)
    if len(parts) == 5 and parts[2] == "jobs" and parts[4] == "artifacts":
        return _listing(parts[3], query) if is_id(parts[3]) else None
    if len(parts) == 6 and parts[2] == "jobs" and parts[4] == "artifacts" and is_id(parts[3]):
        job_id: str | None = parts[3]
    elif len(parts) == 4 and parts[2] == "artifacts":
        job_id = None
    else:
        return None
    values = _values(query, FETCH_KEYS)
    if values is None:
        return None
    disposition = values.get("disposition", ["attachment"])[0]
    expires_in = values.get("expiresIn", [None])[0]
    if disposition not in _DISPOSITIONS or not (expires_in is None or expires_in.isdigit()):
        return None
    return Fetch(job_id, parts[-1], disposition, expires_in)


def _listing(job_id: str, query: bytes) -> Listing | None:
    values = _values(query, LIST_KEYS)
    if values is None:
        return None
    kind, status = values.get("kind", [None])[0], values.get("status", [None])[0]
    limit = values.get("limit", ["100"])[0]
    expires_in = values.get("expiresIn", [None])[0]
    if (
        (kind is not None and kind not in _KINDS)
        or (status is not None and status not in _STATUSES)
        or not (_LIMIT.fullmatch(limit) and int(limit) <= 1000)  # no leading zero, as msgspec
        or not (expires_in is None or expires_in.isdigit())
    ):
        return None  # the router's parameter problem (or its reading of the value) is the answer
    return Listing(
        job_id,
        None if kind is None else ArtifactKind(kind),
        values.get("runId", [None])[0],
        values.get("tag", []),
        status,
        int(limit),
        values.get("continuationToken", [None])[0],
        expires_in,
    )


def _values(query: bytes, keys: frozenset[str]) -> dict[str, list[Any]] | None:
    """The query's values by key: only ``keys``, each once (``tag`` may repeat), each plain."""
    values: dict[str, list[Any]] = {}
    for pair in query.decode("latin-1").split("&") if query else ():
        key, eq, value = pair.partition("=")
        if not eq or key not in keys or (key in values and key != "tag") or not _PLAIN.fullmatch(value):
            return None
        values.setdefault(key, []).append(value)
    return values


def hot_reads(app: ASGIApp, litestar: Litestar) -> ASGIApp:
    """Wrap ``app`` (the router): answer plain fetches and list pages here, pass everything else on."""
    templates = {  # the router's own templates, for the access line and the metrics
        route.route_handler_map["GET"][0].fn: route.path_format
        for route in litestar.routes
        if isinstance(route, HTTPRoute) and "GET" in route.route_handler_map
    }
    in_job, by_id = templates[artifacts.get_in_job.fn], templates[artifacts.get_by_id.fn]
    listed = templates[artifacts.list_artifacts.fn]
    reserved = literals_in_their_place(litestar, (in_job, by_id, listed))

    async def middleware(scope: AsgiScope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or scope["method"] != "GET" or scope.get("root_path"):
            await app(scope, receive, send)
            return
        asked = plain(scope["path"], scope["query_string"], reserved)
        authorization: str | None = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                if authorization is None:  # the first, as the router's check reads it
                    authorization = value.decode("latin-1")
            elif name == b"origin" or (name == b"host" and not _HOST.fullmatch(value)):
                asked = None  # CORS headers, or the router's 400 for a malformed Host
        if asked is None:
            await app(scope, receive, send)
            return
        if isinstance(asked, Fetch):
            scope["path_template"] = by_id if asked.job_id is None else in_job
        else:
            scope["path_template"] = listed
        try:
            services = services_of(litestar.state)
            caller = admit(scope, services.auth, authorization, Scope.READ)
            body, headers = await _answer(asked, caller.product, services, scope)
        except Exception as exc:
            await _problem(litestar, scope, receive, send, exc)
            return
        headers.append((b"content-type", b"application/json"))
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    return middleware


def literals_in_their_place(litestar: Litestar, templates: tuple[str, ...]) -> frozenset[str]:
    """Literal segments of other routes where one of ``templates`` has a parameter.

    ``GET /fleet/jobs/{job}/artifacts/uploads`` is the upload route's (405 for GET), not a fetch
    of an artifact named ``uploads``: a path holding such a segment is left to the router.
    """
    found: set[str] = set()
    for route in litestar.routes:
        other = route.path_format.split("/")
        for template in templates:
            mine = template.split("/")
            if route.path_format == template or len(mine) != len(other):
                continue
            if all(a == b or a.startswith("{") for a, b in zip(mine, other, strict=True)):
                found.update(
                    b for a, b in zip(mine, other, strict=True) if a.startswith("{") and "{" not in b
                )
    return frozenset(found)


async def _answer(
    asked: Fetch | Listing, product: str, services: Services, scope: AsgiScope
) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """The body and the headers (before the content's) the router's handler would answer."""
    if isinstance(asked, Fetch):
        out = await services.artifacts.get(
            product,
            asked.artifact_id,
            asked.job_id,
            disposition=asked.disposition,
            expires_in=seconds(asked.expires_in),
        )
        return _encode(anchored(out, origin_of(scope, services))), [(b"etag", out.etag.encode("latin-1"))]
    query = artifacts.list_query(
        product,
        asked.job_id,
        asked.kind,
        asked.run_id,
        asked.tags,
        asked.status,
        asked.limit,
        asked.continuation,
    )
    page = await services.artifacts.list(query, expires_in=seconds(asked.expires_in))
    return _encode(anchored_page(page, origin_of(scope, services))), []


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
