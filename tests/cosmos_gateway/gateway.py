"""The public ``CosmosGateway``: an in-process Cosmos NoSQL endpoint for tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from .auth import EMULATOR_KEY, decode_key
from .routes import Router
from .server import GatewayHTTPServer
from .stats import GatewayStats
from .store import Store


@dataclass
class Fault:
    """An error to answer instead of running matching requests.

    Attributes:
        status: HTTP status to return (e.g. 429, 503).
        remaining: How many more matching requests to fail.
        operation: Operation name to match (see ``Router.operation``), or None for
            any request except the account read.
        substatus: Optional ``x-ms-substatus``.
        headers: Extra response headers, e.g. ``{"x-ms-retry-after-ms": "10"}``.
    """

    status: int
    remaining: int
    operation: str | None
    substatus: int | None
    headers: dict[str, str] = field(default_factory=dict)


class CosmosGateway:
    """A Cosmos DB NoSQL REST endpoint on loopback, backed by memory.

    Args:
        key: Base64 master key clients must sign with (default: the emulator key).
        host: Interface to bind; keep it on loopback.
        port: Port to bind; 0 picks a free one.
        clock: Time source in seconds, used for ``_ts``, TTL and x-ms-date checks.
        enforce_composite_indexes: Reject multi-field ORDER BY without a matching
            composite index, as Cosmos does.
        default_page_size: Page size when the client sends no ``x-ms-max-item-count``.
    """

    def __init__(
        self,
        key: str = EMULATOR_KEY,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.time,
        enforce_composite_indexes: bool = True,
        default_page_size: int = 100,
    ) -> None:
        self.key = decode_key(key)
        self.host = host
        self.requested_port = port
        self.clock = clock
        self.enforce_composite_indexes = enforce_composite_indexes
        self.default_page_size = default_page_size
        self.store = Store(clock)
        self.stats = GatewayStats()
        self.router = Router(self)
        self._faults: list[Fault] = []
        self._faults_lock = threading.Lock()
        self._server: GatewayHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------
    def start(self) -> CosmosGateway:
        """Binds the socket and serves requests from a daemon thread.

        Returns:
            The gateway itself, for chaining.
        """
        if self._server is not None:
            raise RuntimeError("gateway already started")
        self._server = GatewayHTTPServer((self.host, self.requested_port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="cosmos-gateway",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops serving, closes the listening socket and cuts the open connections (an outage)."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
            server.drop_connections()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> CosmosGateway:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (only valid once started)."""
        if self._server is None:
            raise RuntimeError("gateway not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The endpoint to hand to ``CosmosClient``, e.g. ``http://127.0.0.1:8081/``."""
        return f"http://{self.host}:{self.port}/"

    # -- test helpers -------------------------------------------------------
    def reset(self) -> None:
        """Drops all databases, pending faults and statistics."""
        with self.store.lock:
            self.store.databases.clear()
        with self._faults_lock:
            self._faults.clear()
        self.stats.reset()

    def items(self, database: str, container: str) -> list[dict[str, Any]]:
        """Returns every live item of a container, bypassing HTTP and stats.

        Args:
            database: Database id.
            container: Container id.

        Returns:
            Copies of the stored documents in insertion order.
        """
        return [row.doc for row in self.store.scan(database, container, None)[1]]

    def inject_fault(
        self,
        status: int,
        *,
        times: int = 1,
        operation: str | None = None,
        substatus: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Makes the next matching requests fail, e.g. to exercise SDK retries.

        Args:
            status: HTTP status to answer with (429 is retried by the SDK).
            times: How many matching requests to fail.
            operation: Only fail this operation (``create_item``, ``query``,
                ``read_item``...); None matches every data request.
            substatus: Optional ``x-ms-substatus``.
            headers: Extra headers; for 429 the SDK honours ``x-ms-retry-after-ms``.
        """
        fault = Fault(status, times, operation, substatus, dict(headers or {}))
        with self._faults_lock:
            self._faults.append(fault)

    def take_fault(self, operation: str) -> Fault | None:
        """Consumes one pending fault matching an operation.

        Args:
            operation: The operation about to run.

        Returns:
            The fault to answer with, or None to proceed normally.
        """
        if operation == "account":
            return None
        with self._faults_lock:
            for fault in self._faults:
                if fault.operation in (None, operation):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    self.stats.bump("faults_injected")
                    return fault
        return None

    def account_document(self, host: str) -> dict[str, Any]:
        """Builds the ``GET /`` database account answer.

        Args:
            host: The ``Host`` the client used, so the advertised endpoint is
                exactly the one it already talks to.

        Returns:
            The account JSON.
        """
        endpoint = f"http://{host or f'{self.host}:{self.port}'}/"
        location = [{"name": "Local", "databaseAccountEndpoint": endpoint}]
        return {
            "id": "cosmos-test-gateway",
            "_rid": host,
            "_self": "",
            "media": "//media/",
            "addresses": "//addresses/",
            "_dbs": "//dbs/",
            "writableLocations": location,
            "readableLocations": location,
            "enableMultipleWriteLocations": False,
            "userConsistencyPolicy": {"defaultConsistencyLevel": "Session"},
        }
