"""HTTP plumbing: a threaded stdlib server whose handler speaks Cosmos errors."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
import traceback
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from . import auth
from .errors import GatewayError
from .http_types import Request, Response

if TYPE_CHECKING:
    from .gateway import CosmosGateway

_LOG = logging.getLogger(__name__)
# Bodies above this size are refused before being read, like Cosmos's 2 MB item cap (plus slack).
_MAX_BODY = 4 * 1024 * 1024


class GatewayHTTPServer(ThreadingHTTPServer):
    """A threaded HTTP server that knows which gateway it serves."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], gateway: CosmosGateway) -> None:
        super().__init__(address, GatewayRequestHandler)
        self.gateway = gateway
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        if isinstance(request, socket.socket):
            with self._connections_lock:
                self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        """Cut every open connection, the SDK's kept-alive ones too: a stopped server serves nothing."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class GatewayRequestHandler(BaseHTTPRequestHandler):
    """Decodes one request, authenticates it, routes it and writes the answer."""

    # HTTP/1.1 keeps the SDK's pooled connections alive; every reply sets Content-Length.
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle on, the client's
    # delayed ACK would add ~40 ms to every request.
    disable_nagle_algorithm = True
    server_version = "CosmosTestGateway/1.0"
    server: GatewayHTTPServer

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    def do_OPTIONS(self) -> None:
        self._handle()

    def log_message(self, format: str, *args: Any) -> None:
        _LOG.debug("%s " + format, self.address_string(), *args)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY:
            self.close_connection = True
            raise GatewayError(413, "RequestEntityTooLarge", f"Request body of {length} bytes is too large.")
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        gateway = self.server.gateway
        activity_id = self.headers.get("x-ms-activity-id") or str(uuid.uuid4())
        try:
            body = self._read_body()
            path = urllib.parse.urlsplit(self.path).path
            segments = [urllib.parse.unquote(part) for part in path.split("/") if part]
            headers = {name.lower(): value for name, value in self.headers.items()}
            request = Request(self.command, segments, headers, body, self.headers.get("Host", ""))
            response = self._authorised(gateway, request)
        except GatewayError as exc:
            response = _error_response(exc)
        except Exception as exc:
            # Any gateway bug must reach the test as a readable 500, never a hung client.
            _LOG.exception("cosmos gateway internal error")
            response = _error_response(
                GatewayError(500, "InternalServerError", f"Gateway bug: {exc!r}\n{traceback.format_exc()}")
            )
        self._send(response, activity_id)

    def _authorised(self, gateway: CosmosGateway, request: Request) -> Response:
        try:
            # Wall-clock time on purpose: a fake TTL clock must not break x-ms-date checks.
            auth.verify(gateway.key, request.verb, request.segments, request.headers, time.time())
        except GatewayError:
            gateway.stats.bump("auth_failures")
            raise
        gateway.stats.bump("requests")
        if request.verb in ("HEAD", "OPTIONS"):
            raise GatewayError(405, "MethodNotAllowed", f"{request.verb} is not supported by the gateway.")
        fault = gateway.take_fault(gateway.router.operation(request))
        if fault is not None:
            message = f"Fault injected by the Cosmos test gateway (status {fault.status})."
            response = _error_response(GatewayError(fault.status, "InjectedFault", message, fault.substatus))
            response.headers.update(fault.headers)
            return response
        return gateway.router.route(request)

    def _send(self, response: Response, activity_id: str) -> None:
        payload = b""
        if response.body is not None:
            payload = json.dumps(response.body, separators=(",", ":")).encode("utf-8")
        self.send_response(response.status)
        headers = {
            "Content-Type": "application/json",
            "Content-Length": str(len(payload)),
            "x-ms-activity-id": activity_id,
            "x-ms-request-charge": "1.0",
        }
        if isinstance(response.body, dict) and isinstance(response.body.get("_etag"), str):
            headers["etag"] = response.body["_etag"]
        headers.update(response.headers)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if payload and self.command != "HEAD":
            self.wfile.write(payload)


def _error_response(exc: GatewayError) -> Response:
    headers = {}
    if exc.substatus is not None:
        headers["x-ms-substatus"] = str(exc.substatus)
    return Response(exc.status, {"code": exc.code, "message": exc.message}, headers)
