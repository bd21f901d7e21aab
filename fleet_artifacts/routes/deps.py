"""What every handler shares: the typed app state, auth, the public base URL, parameters.

``create_app`` puts one ``Services`` on ``app.state.services`` in the lifespan; ``authorizing``
checks the bearer token of every guarded route; handlers get the services, the caller's
product and the base URL from ``context(request)``. URLs
are built here: a store that serves its own signed URLs (the local backend) signs
root-relative ones, which ``anchor`` makes absolute.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Annotated, Any

import msgspec
from litestar import Request, Response
from litestar.datastructures import State
from litestar.openapi.spec import Schema
from litestar.openapi.spec.enums import OpenAPIType
from litestar.params import HeaderParameter, PathParameter, QueryParameter
from litestar.types import ASGIApp, Receive, Send
from litestar.types import Scope as AsgiScope

from fleet_artifacts.core.access import Scope
from fleet_artifacts.core.archive import JobArchives
from fleet_artifacts.core.artifacts import ArtifactService
from fleet_artifacts.core.audit import actor as audit_actor
from fleet_artifacts.core.direct import DirectUploads
from fleet_artifacts.core.errors import InvalidInput
from fleet_artifacts.core.hosted import HostedBlobStore
from fleet_artifacts.core.jobs import Jobs
from fleet_artifacts.core.kernel import Kernel
from fleet_artifacts.core.lifecycle import Lifecycle
from fleet_artifacts.core.models import ArtifactOut, ArtifactPage, UploadTicket
from fleet_artifacts.core.sessions import SessionService
from fleet_artifacts.core.shares import Shares
from fleet_artifacts.core.validation import ID_PATTERN, MAX_ID_LENGTH, TAG_PATTERN, check_id, whole_number
from fleet_artifacts.routes.access_log import CALLER
from fleet_artifacts.routes.auth import Caller, TokenAuthority

AnyRequest = Request[Any, Any, Any]
BLOB_PATH = "/blobs"  # where a HostedBlobStore's signed URLs are served (its url_prefix + "/")


@dataclass(frozen=True)
class Services:
    """The per-process objects handlers use, built once in the lifespan."""

    kernel: Kernel
    artifacts: ArtifactService
    lifecycle: Lifecycle
    shares: Shares
    direct: DirectUploads
    sessions: SessionService
    jobs: Jobs
    auth: TokenAuthority
    public_base_url: str | None
    hosted: HostedBlobStore | None  # the blob store, when this service serves its URLs
    # Whether a hosted store's write URL may still write ``key``: the direct upload it was
    # issued for is open (``DirectUploads.upload_open``).
    write_allowed: Callable[[str], Awaitable[bool]]

    @cached_property
    def archives(self) -> JobArchives:
        """Zip archives of a job's artifacts: built on first use from the kernel (it holds no state)."""
        return JobArchives(self.kernel)


def services_of(state: State) -> Services:
    """The ``Services`` of a running app."""
    services = state.services
    assert isinstance(services, Services)
    return services


def base_url_of(request: AnyRequest, services: Services) -> str:
    """Where this service is reached: PUBLIC_BASE_URL, else the request's own origin."""
    return origin_of(request.scope, services)


def origin_of(scope: AsgiScope, services: Services) -> str:
    """``base_url_of`` the request of ``scope``."""
    if services.public_base_url:
        return services.public_base_url
    host = next((value for name, value in scope["headers"] if name == b"host"), None)
    key = (scope["scheme"], host, str(scope.get("app_root_path") or scope.get("root_path", "")))
    origin = _origins.get(key)
    if origin is None:  # parsing a URL per request cost a pointer fetch more than its HMAC
        origin = str(Request(scope).base_url).rstrip("/")
        if len(_origins) < 256:  # the trusted hosts bound them; a wildcard could name many
            _origins[key] = origin
    return origin


_origins: dict[tuple[str, bytes | None, str], str] = {}


def needs(scope: Scope) -> dict[str, Any]:
    """A guarded operation's scope: what ``authorizing`` checks and the OpenAPI document states."""
    return {
        "opt": {"scope": scope},
        "security": [{"bearer": [scope.value]}],  # OpenAPI 3.1: the role the bearer token needs
    }


_SERVICES = "fleet_artifacts.services"  # where ``authorizing`` leaves the services, in the scope's state


def authorizing(app: ASGIApp) -> ASGIApp:
    """Route middleware: the token must be valid (401) and hold the operation's scope (403).

    It runs once the route is known and before any body is read. A middleware rather than a
    Litestar guard: a guard call copies the route handler on every request, and the hot read
    path cannot afford it. An operation that declares no scope fails loudly: a new route
    cannot forget it.
    """

    async def middleware(scope: AsgiScope, receive: Receive, send: Send) -> None:
        handler = scope["route_handler"]
        services = services_of(scope["litestar_app"].state)
        auth = services.auth
        header = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"authorization"), None)
        needed = handler.opt.get("scope")
        if needed is None and scope.get("method") == "OPTIONS":
            auth.identify(header)  # Litestar's own OPTIONS answer: any valid token, as before scopes
        elif not isinstance(needed, Scope):
            raise RuntimeError(f"{handler.handler_name} declares no scope: add **needs(Scope.X)")
        else:
            admit(scope, auth, header, needed)
            scope["state"][_SERVICES] = services  # looked up once per request: Call takes it from here
        await app(scope, receive, send)

    return middleware


def admit(scope: AsgiScope, auth: TokenAuthority, header: str | None, needed: Scope) -> Caller:
    """The caller of a request that needs ``needed`` (401/403 otherwise), named for the request.

    The caller goes in the scope's state (the access line names its product) and its token's
    id into the audit actor (this request's audit lines name it). Here and on the hot path.
    """
    caller = auth.authorize(header, needed)
    scope["state"][CALLER] = caller
    audit_actor.set(caller.token_id)
    return caller


class Call:
    """What a guarded handler works with: the services, the caller's product, the public base URL.

    Each handler makes its own (``context(request)``) instead of having Litestar inject three
    dependencies: resolving them took about a sixth of a pointer fetch's CPU (an anyio task
    group per request).
    """

    __slots__ = ("_request", "product", "services")

    def __init__(self, request: AnyRequest) -> None:
        self._request = request
        state = request.scope["state"]
        caller, services = state.get(CALLER), state.get(_SERVICES)
        assert isinstance(caller, Caller) and isinstance(services, Services), (
            "the route is not behind authorizing"
        )
        self.services = services
        self.product: str = caller.product

    @property
    def base_url(self) -> str:
        """Where this service is reached (only the handlers that build URLs ask)."""
        return base_url_of(self._request, self.services)


def context(request: AnyRequest) -> Call:
    """The context of a guarded request."""
    return Call(request)


# The pattern is for the document only (schema_extra): the service checks ids itself, naming the field.
_ID = {"pattern": ID_PATTERN, "maxLength": MAX_ID_LENGTH}
JobId = Annotated[
    str, PathParameter(description="The job the artifacts belong to (partition key).", schema_extra=_ID)
]
ArtifactId = Annotated[
    str, PathParameter(description="The artifact id returned on upload.", schema_extra=_ID)
]
Tag = Annotated[
    list[str] | None,
    QueryParameter(
        description="Tag as key:value; repeat for several (all must match).",
        schema_extra={"items": Schema(type=OpenAPIType.STRING, pattern=TAG_PATTERN)},
    ),
]
# A string checked here (``seconds``), so a bad value's problem names ``expiresIn``, as every other does.
ExpiresIn = Annotated[
    str | None,
    QueryParameter(
        name="expiresIn",
        description="Seconds the signed URLs in this answer live (1 to MAX_SAS_TTL_SECONDS; "
        "default SAS_TTL_SECONDS).",
        schema_extra={"pattern": "^[0-9]{1,9}$"},
    ),
]


def seconds(value: str | None) -> int | None:
    """``expiresIn`` as a whole number of seconds (its bounds are the core's); None if absent."""
    return whole_number(value, "expiresIn", "seconds", digits=9)


IdempotencyKey = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key",
        description="Makes the create safe to retry: the same key (per product and job, within the "
        "retention window) returns the same artifact; reused with other metadata -> 409.",
    ),
]
REPLAYED = "Idempotent-Replayed"


def replayed_header(replayed: bool) -> dict[str, str]:
    """``Idempotent-Replayed: true`` on an answer that replays an earlier create."""
    return {REPLAYED: "true"} if replayed else {}


def job(job_id: str) -> str:
    """A checked job id from the path."""
    return check_id(job_id, "jobId")


def aid(artifact_id: str) -> str:
    """A checked artifact id from the path."""
    return check_id(artifact_id, "artifactId")


def per_method(name: str) -> Callable[..., str]:
    """OpenAPI operation ids for a handler serving GET and HEAD: ``name`` and ``nameHead``."""
    return lambda _handler, method, _path: name if method == "GET" else f"{name}Head"


def anchor(url: str, base_url: str) -> str:
    """Make a root-relative URL (one this service serves) absolute; leave others as they are."""
    return base_url.rstrip("/") + url if url.startswith("/") else url


def anchored(out: ArtifactOut, base_url: str) -> ArtifactOut:
    """An artifact whose download URL (if it has one) is absolute."""
    if out.download_url is None:
        return out
    return msgspec.structs.replace(out, download_url=anchor(out.download_url, base_url))


def served(
    out: ArtifactOut, base_url: str, *, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response[ArtifactOut]:
    """One pointer as an answer: its URL absolute, its version in ``ETag`` (for If-Match on PATCH)."""
    return Response(
        anchored(out, base_url), status_code=status_code, headers={"ETag": out.etag, **(headers or {})}
    )


IfMatch = Annotated[
    str | None,
    HeaderParameter(
        name="If-Match",
        description="Change only this version of the pointer (its ETag, or `*`); another -> 412.",
    ),
]


def if_match_tags(header: str | None) -> list[str] | None:
    """The entity tags an If-Match header names (``["*"]`` for any); None without the header.

    Weak tags (``W/"..."``) never match: If-Match compares strongly (RFC 9110).
    """
    if header is None:
        return None
    tags = [tag.strip() for tag in header.split(",") if tag.strip()]
    if not tags or any(
        not (tag == "*" or (tag.startswith(('"', 'W/"')) and tag.endswith('"'))) for tag in tags
    ):
        raise InvalidInput('If-Match must be "*" or quoted entity tags', field="If-Match")
    return [tag for tag in tags if not tag.startswith("W/")] or ["W/"]


def anchored_page(page: ArtifactPage, base_url: str) -> ArtifactPage:
    """A page whose download URLs are absolute.

    Made so in place: the core built the page for this answer alone, and a copy of each item
    cost a page of a hundred a tenth of its time.
    """
    base = base_url.rstrip("/")
    for item in page.items:  # ``anchor``, with the base trimmed once
        url = item.download_url
        if url is not None and url.startswith("/"):
            item.download_url = base + url
    return page


def anchored_ticket(ticket: UploadTicket, base_url: str) -> UploadTicket:
    """An upload ticket whose write URL is absolute."""
    return msgspec.structs.replace(ticket, upload_url=anchor(ticket.upload_url, base_url))
