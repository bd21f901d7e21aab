"""The synchronous client's HTTP transport: httpx over httpcore, without two bulk-transfer costs.

Measured against curl on the same routes (``bench/client_vs_curl.py``), a stock
``httpx.Client`` loses on large bodies for two reasons in httpcore's sync network stream
(``httpcore/_backends/sync.py``, ``SyncStream``):

* ``write`` sends with ``buffer = buffer[n:]`` after each partial ``send``: slicing
  ``bytes`` copies the rest, so one large chunk costs time quadratic in its size (a
  512 MiB ``bytes`` body: gigabytes of memcpy). Here the slices are memoryviews (no copy).
* ``HTTP11Connection`` reads 64 KiB per ``recv`` (``READ_NUM_BYTES``), and every read
  goes through h11 and httpx's stream layers as one event. Here a read takes what the
  socket holds, up to ``read_size`` (1 MiB), so there are 16 times fewer trips.

Everything else (h11 framing, pooling, timeouts, TLS) is httpcore's own. The async client
keeps httpx's default transport: anyio's streams already write without the copy, and
asyncio reads up to 256 KiB per event.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

READ_SIZE = 1024 * 1024
_TIMEOUT_OF = {"read": httpcore.ReadTimeout, "write": httpcore.WriteTimeout}
_ERROR_OF = {"read": httpcore.ReadError, "write": httpcore.WriteError}


class _BulkStream(httpcore.NetworkStream):
    """A socket stream reading up to ``read_size`` at once and writing without copies."""

    def __init__(self, inner: httpcore.NetworkStream, read_size: int) -> None:
        self._inner = inner
        self._sock: socket.socket = inner.get_extra_info("socket")
        self._read_size = read_size

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        """Whatever the socket holds, up to the larger of ``max_bytes`` and ``read_size``."""
        try:
            self._sock.settimeout(timeout)
            return self._sock.recv(max(max_bytes, self._read_size))
        except TimeoutError as exc:
            raise httpcore.ReadTimeout(exc) from exc
        except OSError as exc:
            raise httpcore.ReadError(exc) from exc

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        """Send it all; partial sends advance a memoryview (no copy of the rest)."""
        view = memoryview(buffer)
        try:
            self._sock.settimeout(timeout)
            while view:
                sent = self._sock.send(view)
                view = view[sent:]
        except TimeoutError as exc:
            raise httpcore.WriteTimeout(exc) from exc
        except OSError as exc:
            raise httpcore.WriteError(exc) from exc

    def close(self) -> None:
        """Close the socket."""
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        """Upgrade to TLS; the TLS socket gets the same treatment."""
        upgraded = self._inner.start_tls(ssl_context, server_hostname, timeout)
        if isinstance(upgraded.get_extra_info("socket"), socket.socket):
            return _BulkStream(upgraded, self._read_size)
        return upgraded

    def get_extra_info(self, info: str) -> Any:
        """As the wrapped stream answers."""
        return self._inner.get_extra_info(info)


class _BulkBackend(httpcore.NetworkBackend):
    """httpcore's sync backend, handing out ``_BulkStream`` connections."""

    def __init__(self, read_size: int) -> None:
        self._backend = httpcore.SyncBackend()
        self._read_size = read_size

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        """Connect as httpcore does, then wrap."""
        stream = self._backend.connect_tcp(host, port, timeout, local_address, socket_options)
        return _BulkStream(stream, self._read_size)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        """Connect as httpcore does, then wrap."""
        return _BulkStream(self._backend.connect_unix_socket(path, timeout, socket_options), self._read_size)

    def sleep(self, seconds: float) -> None:
        """Sleep as httpcore does."""
        self._backend.sleep(seconds)


class BulkTransport(httpx.HTTPTransport):
    """``httpx.HTTPTransport`` whose connection pool uses the bulk-friendly streams above."""

    def __init__(
        self,
        *,
        verify: ssl.SSLContext | bool = True,
        limits: httpx.Limits | None = None,
        read_size: int = READ_SIZE,
    ) -> None:
        limits = limits or httpx.Limits(max_connections=32, max_keepalive_connections=16)
        super().__init__(verify=verify, limits=limits)
        context = verify if isinstance(verify, ssl.SSLContext) else httpx.create_ssl_context(verify=verify)
        # The one line that reaches into httpx: its pool, rebuilt with our network backend.
        self._pool = httpcore.ConnectionPool(
            ssl_context=context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_BulkBackend(read_size),
        )
