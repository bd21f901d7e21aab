"""An unreachable store answers 503 within seconds; a throttling one is still waited for (issue 15).

Real things only: Azurite killed (nothing listens on its port), the Cosmos gateway stopped, and
a loopback proxy in front of Azurite that answers 503 ServerBusy with Retry-After, as Azure does
when it throttles.
"""

from __future__ import annotations

import http.client
import secrets
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from azure.core.exceptions import ServiceRequestError
from azure.core.pipeline import PipelineContext, PipelineRequest
from azure.core.rest import HttpRequest

from fleet_artifacts.app import create_app
from fleet_artifacts.settings import SettingsError, load_settings
from fleet_artifacts.stores.azure_retry import FailFastRetry, retry_after_seconds
from tests.conftest import TOKEN_A, make_settings
from tests.cosmos_gateway import EMULATOR_KEY, CosmosGateway
from tests.helpers import assert_problem
from tests.servers import AZURITE_ACCOUNT, AZURITE_KEY, Azurite, ThreadedServer

BOUND = 10.0  # seconds: a behaviour bound (the SDK's own backoff took ~87 s), not a speed goal


def _upload(c: httpx.Client, job: str, name: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    r = c.post(f"/fleet/jobs/{job}/artifacts", params={"kind": "log", "fileName": name}, content=b"x" * 1024)
    return r, time.monotonic() - started


def _client(server: ThreadedServer) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKEN_A}"}, timeout=120)


def test_unreachable_blob_endpoint_answers_503_within_seconds(tmp_path: Path) -> None:
    azurite = Azurite(tmp_path / "azurite").start()
    settings = make_settings(azurite, tmp_path / "data", azure_retry_total="3")  # the default
    server = ThreadedServer(create_app(settings)).start()
    job = "job-" + secrets.token_hex(4)
    try:
        with _client(server) as c:
            kept, _ = _upload(c, job, "a")
            assert kept.status_code == 201, kept.text
            azurite.stop()  # killed: connections to its port are refused
            r, elapsed = _upload(c, job, "b")
            assert_problem(r, 503)
            assert int(r.headers["retry-after"]) > 0
            assert elapsed < BOUND
            listed = c.get(f"/fleet/jobs/{job}/artifacts").json()["items"]
            assert [item["id"] for item in listed] == [kept.json()["id"]]  # no pointer without bytes
    finally:
        server.stop()
        azurite.stop()


def test_unreachable_cosmos_endpoint_answers_503_within_seconds(tmp_path: Path) -> None:
    gateway = CosmosGateway(key=EMULATOR_KEY).start()
    settings = make_settings(None, tmp_path / "data", cosmos=gateway, azure_retry_total="3")
    server = ThreadedServer(create_app(settings)).start()
    job = "job-" + secrets.token_hex(4)
    try:
        with _client(server) as c:
            assert _upload(c, job, "a")[0].status_code == 201
            gateway.stop()  # closes the listening socket and cuts open connections
            r, elapsed = _upload(c, job, "b")
            assert_problem(r, 503)
            assert int(r.headers["retry-after"]) > 0
            assert elapsed < BOUND
    finally:
        server.stop()
        gateway.stop()


class ThrottlingProxy:
    """A loopback HTTP proxy to Azurite that answers the next ``throttle`` requests 503 ServerBusy."""

    def __init__(self, upstream_port: int) -> None:
        self.throttle = 0
        self.throttled = 0
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def relay(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with proxy.lock:
                    busy = proxy.throttle > 0
                    if busy:
                        proxy.throttle -= 1
                        proxy.throttled += 1
                if busy:
                    error = (
                        b"<?xml version='1.0'?><Error><Code>ServerBusy</Code><Message>busy</Message></Error>"
                    )
                    self.send_response(503)
                    for name, value in (("Retry-After", "1"), ("x-ms-error-code", "ServerBusy")):
                        self.send_header(name, value)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(error)))
                    self.end_headers()
                    self.wfile.write(error)
                    return
                upstream = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=30)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    answer = upstream.getresponse()
                    data = answer.read()
                    self.send_response(answer.status)
                    for name, value in answer.getheaders():
                        if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                            self.send_header(name, value)
                    length = answer.getheader("Content-Length") if self.command == "HEAD" else None
                    self.send_header("Content-Length", length or str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                finally:
                    upstream.close()

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = relay

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy(azurite: Azurite) -> Iterator[ThrottlingProxy]:
    server = ThrottlingProxy(azurite.port)
    yield server
    server.close()


def test_throttling_is_retried_after_the_servers_retry_after(proxy: ThrottlingProxy, tmp_path: Path) -> None:
    connection_string = (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{proxy.port}/{AZURITE_ACCOUNT};"
    )
    settings = make_settings(
        None,
        tmp_path,
        azure_storage_connection_string=connection_string,
        blob_container="c" + secrets.token_hex(6),
        azure_retry_total="3",
    )
    server = ThreadedServer(create_app(settings)).start()
    job = "job-" + secrets.token_hex(4)
    try:
        with _client(server) as c:
            proxy.throttle = 2  # two 503 ServerBusy + Retry-After: 1, then Azurite answers
            r, elapsed = _upload(c, job, "a")
            assert r.status_code == 201, r.text
            assert proxy.throttled == 2
            assert 2.0 <= elapsed < BOUND  # waited as asked (not 0.5 s, not the SDK's 15 s+)
            assert c.get(f"/fleet/artifacts/{r.json()['id']}").status_code == 200
    finally:
        server.stop()


def _request() -> PipelineRequest[HttpRequest]:
    return PipelineRequest(HttpRequest("PUT", "http://127.0.0.1:9/acct/c/b"), PipelineContext(None))


def test_connection_errors_back_off_briefly_and_stop_at_the_count() -> None:
    policy = FailFastRetry(retry_total=3, connect_retries=2, connect_budget=5.0)
    request = _request()
    settings = policy.configure_retries(request)
    refused = ServiceRequestError("Cannot connect to host (refused)")
    waits = []
    while policy.increment(settings, request.http_request, error=refused):
        waits.append(policy.get_backoff_time(settings))
    assert waits == [0.5, 1.0]  # two retries, then the error goes up (a 503)


def test_connection_errors_stop_once_the_budget_is_spent() -> None:
    policy = FailFastRetry(retry_total=3, connect_retries=5, connect_budget=0.4)
    request = _request()
    settings = policy.configure_retries(request)
    # The first wait (0.5 s) would already end past the budget: no retry at all.
    assert not policy.increment(settings, request.http_request, error=ServiceRequestError("timeout"))


def test_retry_after_headers_are_read_in_the_units_azure_uses() -> None:
    assert retry_after_seconds({"x-ms-retry-after-ms": "250"}) == 0.25
    assert retry_after_seconds({"retry-after": "3"}) == 3.0
    assert retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0  # in the past
    assert retry_after_seconds({}) is None


def test_connect_settings_are_bounded() -> None:
    base = {"FLEET_ARTIFACTS_TOKENS": "t0ken-t0ken-t0ken:acme"}
    defaults = load_settings(base)
    assert (defaults.connect_retries, defaults.connect_timeout_seconds) == (2, 5.0)
    tuned = load_settings(
        base | {"FLEET_ARTIFACTS_CONNECT_RETRIES": "0", "FLEET_ARTIFACTS_CONNECT_TIMEOUT_SECONDS": "1.5"}
    )
    assert (tuned.connect_retries, tuned.connect_timeout_seconds) == (0, 1.5)
    for name, value in (
        ("CONNECT_RETRIES", "11"),
        ("CONNECT_TIMEOUT_SECONDS", "0"),
        ("CONNECT_RETRIES", "x"),
    ):
        with pytest.raises(SettingsError, match=name):
            load_settings(base | {f"FLEET_ARTIFACTS_{name}": value})
