"""One access line per request: method, route, status, duration. Never the query string.

uvicorn's own access log is off because it prints every signed URL's query string,
signature included; this line names the route template (``/fleet/jobs/{job_id}/...``)
where one matched, else the path, and nothing of the query.

The line is written straight to stderr in the form of the app's other log lines
(``INFO - <time> - fleet_artifacts.access - GET /fleet/... 200 1.2ms``), not through a
``logging`` record: making a record, finding its caller and formatting its time cost a
pointer fetch about a seventh of its CPU. The ``fleet_artifacts.access`` logger's level
still decides (FLEET_ARTIFACTS_LOG_LEVEL=WARNING silences it).
"""

from __future__ import annotations

import logging
import sys
import time

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("fleet_artifacts.access")


class _Clock:
    """The local time as ``logging`` formats ``asctime`` (``2026-12-01 08:00:00,123``), its seconds kept."""

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def now(self) -> str:
        stamp = time.time()
        second = int(stamp)
        if second != self._second:
            self._second, self._text = second, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        return f"{self._text},{int((stamp - second) * 1000):03d}"


_clock = _Clock()


def stderr_lines(text: str) -> None:
    """Write ``text`` and a newline to stderr (as it is now: a test or a caller may swap it)."""
    sys.stderr.write(text + "\n")


def write_line(method: str, route: str, status: int, elapsed_ms: float) -> None:
    """Write one access line, if the access logger is on."""
    if log.isEnabledFor(logging.INFO):
        stderr_lines(f"INFO - {_clock.now()} - {log.name} - {method} {route} {status} {elapsed_ms:.1f}ms")


def access_log(app: ASGIApp) -> ASGIApp:
    """Wrap ``app`` so each HTTP request logs one INFO line when its response ends."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        method = scope["method"]
        started = time.perf_counter()
        status = 500  # what the client sees if the app fails before it answers

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await app(scope, receive, sending)
        finally:
            # The route template, else the raw (still percent-encoded) path: a decoded one could
            # carry a newline and forge a second log line.
            route = scope.get("path_template") or scope["raw_path"].decode("ascii", "backslashreplace")
            elapsed_ms = (time.perf_counter() - started) * 1000
            write_line(method, route, status, elapsed_ms)

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
