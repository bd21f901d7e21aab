"""One table from errors to RFC 9457 problem documents.

Every error response of the service is ``application/problem+json`` with ``type``,
``title``, ``status``, ``detail`` and ``instance``; a 400 about parameters adds ``field``
(the first) and ``invalidParams`` (``name``, ``reason``, ``in``). The project's own errors
are mapped by the table below, Litestar's HTTP exceptions (routing, validation, body
limits) by their status, anything else is a logged 500. ``Problem`` is that shape, for
the OpenAPI document.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from fleet_artifacts.core import errors
from fleet_artifacts.core.audit import request_id
from fleet_artifacts.core.idempotency import KeyInUse

log = logging.getLogger(__name__)


class InvalidParam(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One parameter a 400 refused."""

    name: str
    reason: str
    in_: str | None = msgspec.field(default=None, name="in")


class Problem(msgspec.Struct, kw_only=True, omit_defaults=True, rename="camel"):
    """An RFC 9457 problem document, as every error response of the service is."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    field: str | None = None
    invalid_params: list[InvalidParam] | None = None
    limit_bytes: int | None = None


PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://fleet-artifacts.dev/problems/"

# error class -> (status, problem type slug)
PROBLEM_TABLE: dict[type[errors.ArtifactError], tuple[int, str]] = {
    errors.InvalidInput: (400, "invalid-input"),
    errors.Unauthenticated: (401, "unauthenticated"),
    errors.SignatureRejected: (403, "signature-rejected"),
    errors.Forbidden: (403, "forbidden"),
    errors.NotFound: (404, "not-found"),
    errors.Conflict: (409, "conflict"),
    errors.Gone: (410, "gone"),
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
    if (rid := request_id.get()) is not None:  # what to quote to an operator, who finds it in the logs
        body["requestId"] = rid
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
    if isinstance(exc, KeyInUse):
        headers["Retry-After"] = "1"  # the first request holding the key is still at work: ask again
    if isinstance(exc, errors.RangeNotSatisfiable):
        headers["Content-Range"] = f"bytes */{exc.size}"
    if isinstance(exc, errors.InvalidInput) and exc.field:
        extra["field"] = exc.field
        extra["invalidParams"] = [{"name": exc.field, "reason": exc.detail}]
    if isinstance(exc, errors.PayloadTooLarge):
        extra["limitBytes"] = exc.limit
    if isinstance(exc, errors.Forbidden):
        extra["requiredScope"] = exc.scope
    return problem(status, exc.detail, slug=slug, instance=request.url.path, headers=headers, **extra)


def http_exception_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    """Answer Litestar's own HTTP exceptions (404 route, 405, 400 validation, 413)."""
    assert isinstance(exc, HTTPException)
    extra: dict[str, Any] = {}
    detail = exc.detail or HTTPStatus(exc.status_code).phrase
    if isinstance(exc, ValidationException) and isinstance(exc.extra, list) and exc.extra:
        # The same shape as the service's own 400s: the first field, and every invalid parameter.
        params = [_invalid_param(e) for e in exc.extra if isinstance(e, dict)]
        if params:
            extra["field"] = params[0]["name"]
            extra["invalidParams"] = params
            detail = "; ".join(f"{p['in']} parameter {p['name']!r}: {p['reason']}" for p in params)
    return problem(exc.status_code, detail, instance=request.url.path, headers=exc.headers, **extra)


def _invalid_param(error: dict[str, Any]) -> dict[str, str]:
    source = error.get("source", "body")
    where = str(getattr(source, "value", source))  # Litestar gives a ParamType or a plain string
    return {"name": str(error.get("key", "")), "reason": str(error.get("message", "")), "in": where}


def internal_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    """Log an unexpected error and answer a bare 500 problem (no internals leak)."""
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem(500, "the service failed unexpectedly", instance=request.url.path)


EXCEPTION_HANDLERS = {
    errors.ArtifactError: artifact_error_handler,
    HTTPException: http_exception_handler,
    Exception: internal_error_handler,
}
