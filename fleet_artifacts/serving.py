"""How the app is served: uvicorn's httptools protocol with a bounded request head.

uvicorn's httptools protocol accepts a header block of any size: httptools joins a
header value piece by piece, so one 160 MiB header costs about 30 s of CPU and
300 MiB, and stalls every other request meanwhile. ``BoundedHttpToolsProtocol``
counts the bytes of each request head as they arrive and answers 431 (then closes)
once they pass ``max_head_bytes``, before the parser sees more; a client that
trickles its head is cut off ``head_timeout`` seconds after its first byte. The
h11 protocol bounds heads too, but parses in pure Python: slower on every request.

Example:
    >>> uvicorn.run(app, http=bounded_protocol(65536, 10.0))  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# Fed to the parser in slices this small while a head is arriving, so a head is never
# counted short by more than one slice (the rest of a read that ends the head is body).
_SLICE = 4096


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` refusing heads over ``max_head_bytes`` or slower than ``head_timeout``.

    A head is the request line and headers, and also a chunked body's trailer section (header
    fields after the last chunk, which httptools joins the same way): bytes fed to the parser
    that are neither head nor body count against the same bound until the next body bytes.
    """

    max_head_bytes = 64 * 1024
    head_timeout = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # between requests, and while a request's head arrives
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_bytes = 0  # body bytes the parser handed over, all told
        self._framing_bytes = 0  # bytes since the last body bytes that were not body: chunk framing, trailers

    def data_received(self, data: bytes) -> None:
        """Count the bytes of a head while it arrives; past the bound answer 431 and stop reading."""
        if not self._in_head:
            self._feed_body(data)
            return
        view = memoryview(data)
        while view and self._in_head:
            piece, view = view[:_SLICE], view[_SLICE:]
            self._head_bytes += len(piece)
            if self._head_bytes > self.max_head_bytes:
                self._refuse(431, "the request head (request line and headers) is too large")
                return
            super().data_received(bytes(piece))
            if self.transport.is_closing():
                return
        if view:  # the head ended inside this read: the rest is body (or the next request)
            self._feed_body(bytes(view))

    def _feed_body(self, data: bytes) -> None:
        before = self._body_bytes
        super().data_received(data)
        body = self._body_bytes - before
        other = len(data) - body
        # Chunk framing between body bytes is a few bytes; trailers come after the last of them.
        self._framing_bytes = other if body else self._framing_bytes + other
        if self._framing_bytes > self.max_head_bytes and not self.transport.is_closing():
            self._refuse(431, "the request's trailer section is too large")

    def on_message_begin(self) -> None:
        """The first byte of a head: from now on it has ``head_timeout`` to arrive whole."""
        super().on_message_begin()
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_too_slow)

    def on_headers_complete(self) -> None:
        """A whole head arrived in time and in bounds."""
        self._in_head = False
        self._head_bytes = 0
        self._framing_bytes = 0
        self._cancel_head_timer()
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        """Body bytes: count them, so what is not body can be told apart."""
        self._body_bytes += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        """The body is in: the next bytes on this connection start another head."""
        super().on_message_complete()
        self._in_head = True
        self._head_bytes = 0

    def connection_lost(self, exc: Exception | None) -> None:
        """Drop the head timer with the connection."""
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            self._refuse(408, "the request head did not arrive in time")

    def _refuse(self, status: int, detail: str) -> None:
        self._cancel_head_timer()
        titles = {408: "Request Timeout", 431: "Request Header Fields Too Large"}
        problem = {"type": "about:blank", "title": titles[status], "status": status, "detail": detail}
        body = json.dumps(problem)
        head = (
            f"HTTP/1.1 {status} {titles[status]}\r\n"
            "content-type: application/problem+json\r\n"
            f"content-length: {len(body)}\r\n"
            "connection: close\r\n\r\n"
        )
        self.transport.write(head.encode("ascii") + body.encode("ascii"))
        self.transport.close()


def bounded_protocol(max_head_bytes: int, head_timeout: float) -> type[BoundedHttpToolsProtocol]:
    """The protocol class for uvicorn's ``http=`` option, with these bounds."""
    return type(
        "BoundedHttpTools",
        (BoundedHttpToolsProtocol,),
        {"max_head_bytes": max_head_bytes, "head_timeout": head_timeout},
    )
