"""Prometheus metrics (``FLEET_ARTIFACTS_METRICS=true``): the counting wrapper and ``GET /metrics``.

Off (the default), the app installs neither: no route, no wrapper, no cost per request. On, every
HTTP request is counted by a wrapper just inside the access log, with labels of bounded values
only: the route *template* (``/fleet/artifacts/{artifact_id}``, or ``unmatched`` for a 404 that
matched no route, never the raw path), the method (``other`` for a made-up one) and the status.

    fleet_artifacts_requests_total{route,method,status}          answered requests
    fleet_artifacts_request_duration_seconds{route,method}       histogram, 1 ms .. 30 s
    fleet_artifacts_received_bytes_total{route}                  request body bytes (ASGI http.request)
    fleet_artifacts_sent_bytes_total{route}                      response body bytes (http.response.body)
    fleet_artifacts_requests_in_flight                           requests being served
    fleet_artifacts_transfers_in_flight{kind}                    upload: a body being received on an
                                                                 upload route (multipart/raw upload,
                                                                 session chunk, signed PUT); download:
                                                                 a 200/206 GET streaming content, an
                                                                 archive.zip or a signed blob
    fleet_artifacts_signed_urls_total{permission}                URLs issued: r (read), cw (direct upload)
    fleet_artifacts_backend_errors_total{route,kind}             503 backend-unavailable problems
    fleet_artifacts_sweeps_total{outcome}                        background sweeps run here (ok, partial)
    fleet_artifacts_swept_items_total{step}                      what each sweep step removed or moved

Each app has its own ``CollectorRegistry`` (tests build several apps in one process), and the
numbers are this process's: behind a load balancer, scrape every replica.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Mapping, Sequence
from typing import Any

from litestar import Request, Response, get
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, ReceiveMessage, Scope, Send
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from fleet_artifacts.core.errors import Unauthenticated

UNMATCHED = "unmatched"  # the route label of a request no route matched: its path is the client's
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Where a request body is an artifact's bytes, and where a response streams them.
UPLOAD_ROUTES = frozenset(
    {
        ("POST", "/fleet/jobs/{job_id}/artifacts"),
        ("PATCH", "/uploads/{session_id}"),
        ("PUT", "/blobs/{key}"),
    }
)
DOWNLOAD_ROUTES = frozenset(
    {
        "/fleet/jobs/{job_id}/artifacts/{artifact_id}/content",
        "/fleet/artifacts/{artifact_id}/content",
        "/fleet/jobs/{job_id}/archive.zip",
        "/blobs/{key}",
    }
)
_BACKEND_PROBLEM = b"/problems/backend-unavailable"
_PREFIX = "fleet_artifacts_"
# The classic text format every Prometheus reads (the names here need none of 1.0.0's escaping);
# Litestar adds the charset to a text/ type itself.
CONTENT_TYPE = "text/plain; version=0.0.4"


class _Route:
    """The label children of one (route, method), resolved once: a request touches no label dict."""

    __slots__ = (
        "_labels",
        "_requests",
        "backend",
        "download",
        "duration",
        "received",
        "sent",
        "statuses",
        "upload",
    )

    def __init__(self, metrics: Metrics, route: str, method: str) -> None:
        self._requests = metrics.requests
        self._labels = (route, method)
        self.statuses: dict[int, Any] = {}
        self.duration = metrics.duration.labels(route, method)
        self.received = metrics.received.labels(route)
        self.sent = metrics.sent.labels(route)
        self.backend = metrics.backend_errors.labels(route, "unavailable")
        self.upload = (method, route) in UPLOAD_ROUTES
        self.download = method == "GET" and route in DOWNLOAD_ROUTES

    def answered(self, status: int, seconds: float, received: int, sent: int) -> None:
        """Count one answered request."""
        child = self.statuses.get(status)
        if child is None:
            child = self.statuses[status] = self._requests.labels(*self._labels, str(status))
        child.inc()
        self.duration.observe(seconds)
        if received:
            self.received.inc(received)
        if sent:
            self.sent.inc(sent)


class Metrics:
    """One app's metrics, in a registry of its own; ``token`` guards ``GET /metrics`` when given."""

    def __init__(self, *, token: str | None = None) -> None:
        """Register every metric (all zero) in a new registry."""
        self.token = None if token is None else f"Bearer {token}".encode()
        self.registry = registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter(
            _PREFIX + "requests", "Answered HTTP requests.", ["route", "method", "status"], registry=registry
        )
        self.duration = Histogram(
            _PREFIX + "request_duration_seconds",
            "Time from a request's start to its response's end.",
            ["route", "method"],
            buckets=BUCKETS,
            registry=registry,
        )
        self.received = Counter(
            _PREFIX + "received_bytes", "Request body bytes.", ["route"], registry=registry
        )
        self.sent = Counter(_PREFIX + "sent_bytes", "Response body bytes.", ["route"], registry=registry)
        self.in_flight = Gauge(_PREFIX + "requests_in_flight", "Requests being served.", registry=registry)
        transfers = Gauge(
            _PREFIX + "transfers_in_flight", "Uploads and downloads in progress.", ["kind"], registry=registry
        )
        self.uploads, self.downloads = transfers.labels("upload"), transfers.labels("download")
        self.signed_urls = Counter(
            _PREFIX + "signed_urls", "Signed URLs issued.", ["permission"], registry=registry
        )
        self._signed = {p: self.signed_urls.labels(p) for p in ("r", "cw")}
        self.backend_errors = Counter(
            _PREFIX + "backend_errors",
            "Answers 503 because a backend was unavailable.",
            ["route", "kind"],
            registry=registry,
        )
        self.sweeps = Counter(
            _PREFIX + "sweeps", "Sweeps run by this replica.", ["outcome"], registry=registry
        )
        self.swept = Counter(
            _PREFIX + "swept_items", "Items each sweep step handled.", ["step"], registry=registry
        )
        self._routes: dict[str, dict[str, _Route]] = {}

    def route(self, route: str, method: str) -> _Route:
        """The label children of ``route`` and ``method`` (made on first use, a bounded set)."""
        methods = self._routes.get(route)
        if methods is None:
            methods = self._routes[route] = {}
        children = methods.get(method)
        if children is None:
            children = methods[method] = _Route(self, route, method if method in METHODS else "other")
        return children

    def signed(self, permission: str, count: int) -> None:
        """Count ``count`` signed URLs (``core.audit.count_signed_with`` calls it)."""
        child = self._signed.get(permission)
        if child is None:
            child = self._signed[permission] = self.signed_urls.labels(permission)
        child.inc(count)

    def swept_once(self, done: Mapping[str, Sequence[str]]) -> None:
        """Count one sweep's outcome and each step's items (what ``Sweeper.run_if_due`` returned)."""
        self.sweeps.labels("partial" if "errors" in done else "ok").inc()
        for step, items in done.items():
            if step != "errors":
                self.swept.labels(step).inc(len(items))

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)


def counting(app: ASGIApp, metrics: Metrics) -> ASGIApp:
    """Wrap ``app``: count every HTTP request into ``metrics`` (installed only when metrics are on)."""
    in_flight = metrics.in_flight

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        method: str = scope["method"]
        status = 500  # what the client sees if the app fails before it answers
        received = sent = 0
        upload: bool | None = None  # decided at the first body bytes, once the route is known
        download = peek = backend = False

        async def receiving() -> ReceiveMessage:
            nonlocal received, upload
            message = await receive()
            if message["type"] == "http.request":
                size = len(message.get("body", b""))
                received += size
                if upload is None and size:
                    upload = (method, scope.get("path_template")) in UPLOAD_ROUTES
                    if upload:
                        metrics.uploads.inc()
            return message

        async def sending(message: Message) -> None:
            nonlocal status, sent, download, peek, backend
            if message["type"] == "http.response.body":
                body = message.get("body", b"")
                sent += len(body)
                if peek:  # a 503's problem document comes in one piece: is it a backend's?
                    peek = False
                    backend = _BACKEND_PROBLEM in body
            elif message["type"] == "http.response.start":
                status = message["status"]
                peek = status == 503
                if status in (200, 206) and method == "GET" and scope.get("path_template") in DOWNLOAD_ROUTES:
                    download = True
                    metrics.downloads.inc()
            await send(message)

        in_flight.inc()
        try:
            await app(scope, receiving, sending)
        finally:
            in_flight.dec()
            if upload:
                metrics.uploads.dec()
            if download:
                metrics.downloads.dec()
            children = metrics.route(scope.get("path_template") or UNMATCHED, method)
            children.answered(status, time.perf_counter() - started, received, sent)
            if backend:
                children.backend.inc()

    return middleware


@get("/metrics", include_in_schema=False, sync_to_thread=False)
def metrics_page(request: Request[Any, Any, Any]) -> Response[bytes]:
    """This process's metrics in Prometheus' text format; with a metrics token, only for its bearer."""
    metrics: Metrics = request.app.state.metrics
    if metrics.token is not None:
        given = (request.headers.get("authorization") or "").encode("latin-1", "replace")
        if not hmac.compare_digest(given, metrics.token):
            raise Unauthenticated("GET /metrics needs the metrics token (FLEET_ARTIFACTS_METRICS_TOKEN)")
    return Response(metrics.exposition(), media_type=CONTENT_TYPE, headers={"Cache-Control": "no-store"})
