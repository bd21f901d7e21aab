"""The browse page's pages: jobs, one job's artifacts, one artifact's preview, a share link, a zip.

Each handler is the API call it stands for, rendered: the jobs listing (``Jobs.list``), the
artifacts listing (``ArtifactService.list``), the preview (``core.previews``), share links
(``Shares.create``) and the zip route itself (``routes.archive``). Signed URLs are anchored here,
as the API anchors them.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

import msgspec
from litestar import Request, Response, get, post
from litestar.params import FromQuery, QueryParameter
from litestar.response import Stream, Template

from fleet_artifacts.core.access import Scope
from fleet_artifacts.core.errors import InvalidInput
from fleet_artifacts.core.models import VISIBLE, ArtifactKind
from fleet_artifacts.core.ports import ListQuery
from fleet_artifacts.core.previews import TAIL_BYTES, preview, preview_kind
from fleet_artifacts.core.validation import check_id
from fleet_artifacts.routes import archive
from fleet_artifacts.routes.deps import (
    AnyRequest,
    ArtifactId,
    JobId,
    aid,
    anchored,
    anchored_page,
    context,
    job,
)
from fleet_artifacts.routes.problems import EXCEPTION_HANDLERS
from fleet_artifacts.routes.ui.session import CAN_SHARE, UI_PATH, page, signed_in
from fleet_artifacts.routes.ui.views import Order, SortBy, query_link, sorted_artifacts

JOBS_PER_PAGE = 50
ARTIFACTS_PER_PAGE = 200  # sorting orders one page: the listing itself is newest first
SHARE_SECONDS = 7 * 86400  # a share link made from the page lives a week (at most MAX_SHARE_SECONDS)
KINDS = [kind.value for kind in ArtifactKind]


def guarded(scope: Scope) -> dict[str, Any]:
    """A page behind a signed-in browser, needing ``scope`` as its API call does."""
    return {"opt": {"scope": scope}, "middleware": [signed_in]}


Text = Annotated[str | None, QueryParameter(required=False)]


@get("/", name="ui-jobs", **guarded(Scope.READ))
async def jobs_page(request: AnyRequest, after: Text = None) -> Template:
    """The product's jobs, most recently active first, paged."""
    ctx = context(request)
    found = await ctx.services.jobs.list(ctx.product, limit=JOBS_PER_PAGE, continuation=after or None)
    more = query_link(UI_PATH, {"after": found.continuation_token}) if found.continuation_token else None
    return page(
        "jobs.html",
        {"product": ctx.product, "jobs": found.items, "more": more, "now": ctx.services.kernel.now()},
    )


@get("/jobs/{job_id:str}", **guarded(Scope.READ))
async def job_page(
    request: AnyRequest,
    job_id: JobId,
    kind: Text = None,
    run: Text = None,
    sort: FromQuery[SortBy] = "age",
    order: FromQuery[Order] = "asc",
    after: Text = None,
) -> Template:
    """A job's artifacts as a table: filtered by kind and run, sorted by name, size or age."""
    ctx = context(request)
    query = ListQuery(
        job_id=job(job_id),
        product_id=ctx.product,
        kind=_kind(kind),
        run_id=check_id(run, "run") if run else None,
        statuses=tuple(VISIBLE),
        limit=ARTIFACTS_PER_PAGE,
        continuation=after or None,
    )
    found = anchored_page(await ctx.services.artifacts.list(query), ctx.base_url)
    items = sorted_artifacts(found.items, sort, order)
    base = f"{UI_PATH}/jobs/{quote(query.job_id)}"
    filters = {"kind": kind, "run": run}

    def sort_link(by: str) -> str:
        flip = "desc" if (sort, order) == (by, "asc") else "asc"
        return query_link(base, {**filters, "sort": by, "order": flip})

    images = [a.download_url for a in items if a.download_url and _is_image(a.content_type)]
    return page(
        "job.html",
        {
            "product": ctx.product,
            "job_id": query.job_id,
            "base": base,
            "items": items,
            "images": set(images),
            "kinds": KINDS,
            "kind": kind or "",
            "run": run or "",
            "sort": sort,
            "order": order,
            "sort_links": {by: sort_link(by) for by in ("name", "size", "age")},
            "zip": query_link(f"{base}/archive.zip", filters),
            "more": query_link(
                base, {**filters, "sort": sort, "order": order, "after": found.continuation_token}
            )
            if found.continuation_token
            else None,
            "now": ctx.services.kernel.now(),
        },
        image_urls=images,
    )


@get("/jobs/{job_id:str}/artifacts/{artifact_id:str}", **guarded(Scope.READ))
async def artifact_page(request: AnyRequest, job_id: JobId, artifact_id: ArtifactId) -> Template:
    """One artifact: its pointer, a preview, download and copy-link buttons."""
    ctx = context(request)
    found = await preview(ctx.services.kernel, ctx.product, aid(artifact_id), job(job_id))
    artifact = anchored(found.artifact, ctx.base_url)
    return page(
        "artifact.html",
        {
            "product": ctx.product,
            "a": artifact,
            "preview": found,
            "tail_kib": TAIL_BYTES // 1024,
            "base": f"{UI_PATH}/jobs/{quote(artifact.job_id)}",
            "can_share": bool(request.scope["state"].get(CAN_SHARE)),
            "now": ctx.services.kernel.now(),
        },
        image_urls=[artifact.download_url] if found.kind == "image" and artifact.download_url else [],
    )


@post("/jobs/{job_id:str}/artifacts/{artifact_id:str}/share", status_code=200, **guarded(Scope.SHARE))
async def share_page(request: AnyRequest, job_id: JobId, artifact_id: ArtifactId) -> Template:
    """Make a share link of the artifact (a token with the share scope) and show it once."""
    ctx = context(request)
    made = await ctx.services.shares.create(
        ctx.product, aid(artifact_id), job(job_id), expires_in=SHARE_SECONDS, disposition="attachment"
    )
    url = ctx.base_url.rstrip("/") + f"/s/{made.token}"
    return page(
        "share.html",
        {
            "product": ctx.product,
            "url": url,
            "link": made.link,
            "back": f"{UI_PATH}/jobs/{quote(made.link.job_id)}/artifacts/{quote(made.link.artifact_id)}",
        },
    )


@get("/jobs/{job_id:str}/archive.zip", **guarded(Scope.READ))
async def job_zip(request: AnyRequest, job_id: JobId, kind: Text = None, run: Text = None) -> Stream:
    """The job as one zip: the API's archive route itself, answered to the signed-in browser."""
    # ``fn`` is the route's own function: its concurrency bound and headers, not a copy of them.
    answer: Stream = await archive.job_archive.fn(request, job_id, _kind(kind), run or None)
    return answer


def _kind(value: str | None) -> ArtifactKind | None:
    if not value:
        return None
    try:
        return ArtifactKind(value)
    except ValueError:
        raise InvalidInput(f"kind must be one of {', '.join(KINDS)}", field="kind") from None


def _is_image(content_type: str) -> bool:
    return preview_kind(content_type) == "image"


def error_page(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """An error on a page, as a page: the status, words and headers of the API's problem document.

    The project's errors, Litestar's own (a bad ``sort``, a failed CSRF check) and unexpected
    ones (logged by the API's handler) alike: a browser is never handed problem+json.
    """
    handle = next(h for cls, h in EXCEPTION_HANDLERS.items() if isinstance(exc, cls))
    problem = handle(request, exc)
    body = msgspec.convert(problem.content, dict[str, Any])
    status = problem.status_code or 500
    answer = page(
        "error.html",
        {
            "title": body.get("title", "Error"),
            "detail": body.get("detail", ""),
            "status": status,
            "request_id": body.get("requestId"),  # what to quote to an operator: it is in the logs
        },
        status_code=status,
    )
    # Retry-After (503), Allow (405), WWW-Authenticate: what the problem said besides its body
    # (the page's own security headers win).
    said = {k: v for k, v in problem.headers.items() if k.lower() not in ("content-type", "content-length")}
    answer.headers = {**said, **answer.headers}
    return answer
