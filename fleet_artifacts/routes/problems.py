"""One table from errors to RFC 9457 problem documents.

Every error response of the service is ``application/problem+json``: the
project's own errors by the table below, Litestar's HTTP exceptions (routing,
validation, body limits) by their status, anything else as a logged 500.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from fleet_artifacts.core import errors

log = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://fleet-artifacts.dev/problems/"

# error class -> (status, problem type slug)
PROBLEM_TABLE: dict[type[errors.ArtifactError], tuple[int, str]] = {
    errors.InvalidInput: (400, "invalid-input"),
    errors.Unauthenticated: (401, "unauthenticated"),
    errors.SignatureRejected: (403, "signature-rejected"),
    errors.NotFound: (404, "not-found"),
    errors.Conflict: (409, "conflict"),
    errors.PreconditionFailed: (412, "precondition-failed"),
    errors.PayloadTooLarge: (413, "payload-too-large"),
    errors.UnsupportedMediaType: (415, "unsupported-media-type"),
    errors.RangeNotSatisfiable: (416, "range-not-satisfiable"),
    errors.Unprocessable: (422, "unprocessable"),
    errors.Unavailable: (503, "backend-unavailable"),
}


def problem(
    status: int,
    detail: str,
    *,
    slug: str | None = None,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response[dict[str, Any]]:
    """Build a problem+json response."""
    body: dict[str, Any] = {
        "type": TYPE_BASE + slug if slug else "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    body.update(extra)
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def artifact_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    """Answer one of the project's errors by the table."""
    assert isinstance(exc, errors.ArtifactError)
    status, slug = next(
        (entry for cls, entry in PROBLEM_TABLE.items() if isinstance(exc, cls)), (500, "internal")
    )
    headers: dict[str, str] = {}
    extra: dict[str, Any] = {}
    if isinstance(exc, errors.Unauthenticated):
        headers["WWW-Authenticate"] = 'Bearer realm="fleet-artifacts"'
    if isinstance(exc, errors.Unavailable):
        headers["Retry-After"] = str(exc.retry_after)
        log.warning("backend unavailable: %s (cause: %r)", exc.detail, exc.__cause__)
    if isinstance(exc, errors.RangeNotSatisfiable):
        headers["Content-Range"] = f"bytes */{exc.size}"
    if isinstance(exc, errors.InvalidInput) and exc.field:
        extra["field"] = exc.field
    if isinstance(exc, errors.PayloadTooLarge):
        extra["limitBytes"] = exc.limit
    return problem(status, exc.detail, slug=slug, instance=request.url.path, headers=headers, **extra)


def http_exception_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    """Answer Litestar's own HTTP exceptions (404 route, 405, 400 validation, 413)."""
    assert isinstance(exc, HTTPException)
    extra: dict[str, Any] = {}
    if isinstance(exc, ValidationException) and exc.extra:
        extra["errors"] = exc.extra
    detail = exc.detail or HTTPStatus(exc.status_code).phrase
    return problem(exc.status_code, detail, instance=request.url.path, headers=exc.headers, **extra)


def internal_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    """Log an unexpected error and answer a bare 500 problem (no internals leak)."""
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem(500, "the service failed unexpectedly", instance=request.url.path)


EXCEPTION_HANDLERS = {
    errors.ArtifactError: artifact_error_handler,
    HTTPException: http_exception_handler,
    Exception: internal_error_handler,
}
