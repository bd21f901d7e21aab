"""Request heads are bounded in size and time: raw sockets against the real `fleet-artifacts serve`.

HTTP clients cannot send what an attacker sends (a header of megabytes, a head trickled
byte by byte), so these tests speak HTTP/1.1 over a socket themselves.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import TOKEN_A
from tests.helpers import clean_env
from tests.servers import serve_process

LIMIT = 16 * 1024


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int, int]]:
    """The service (local backend) with a 16 KiB head bound and a 2 s head timeout: (host, port, pid)."""
    env = clean_env() | {
        "FLEET_ARTIFACTS_TOKENS": f"{TOKEN_A}:prod-a",
        "FLEET_ARTIFACTS_DATA_DIR": str(tmp_path_factory.mktemp("data")),
        "FLEET_ARTIFACTS_MAX_HEADER_BYTES": str(LIMIT),
        "FLEET_ARTIFACTS_HEADER_TIMEOUT_SECONDS": "2",
    }
    with serve_process(env) as (url, proc):
        yield "127.0.0.1", int(url.rsplit(":", 1)[1]), proc.pid


def exchange(address: tuple[str, int], payload: bytes, *, timeout: float = 10) -> bytes:
    """Send ``payload`` (as much as the server takes) and read until the server closes."""
    with socket.create_connection(address, timeout=timeout) as sock:
        # The server may stop reading and answer before all is sent: read what it said.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(payload)
        chunks = []
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def health(host: str, port: int) -> float:
    started = time.perf_counter()
    assert httpx.get(f"http://{host}:{port}/health", timeout=30).status_code == 200
    return time.perf_counter() - started


def test_a_head_over_the_bound_is_431_and_closed(served: tuple[str, int, int]) -> None:
    host, port, _ = served
    for head in (
        b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * (4 * 1024 * 1024) + b"\r\n\r\n",
        b"GET /" + b"p" * (2 * 1024 * 1024) + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",  # huge target
        b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Many: 1\r\n" * 5000 + b"\r\n",
    ):
        started = time.perf_counter()
        answer = exchange((host, port), head)
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
        assert b"application/problem+json" in answer and b"connection: close" in answer
        assert time.perf_counter() - started < 5
    assert health(host, port) < 1


def test_heads_within_the_bound_and_pipelined_requests_still_work(served: tuple[str, int, int]) -> None:
    host, port, _ = served
    header = b"X-Fine: " + b"a" * (LIMIT - 1024) + b"\r\n"
    one = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n" + header + b"\r\n"
    last = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    answer = exchange((host, port), one + one + last)
    assert answer.count(b"HTTP/1.1 200 OK") == 3, answer[:300]
    r = httpx.get(
        f"http://{host}:{port}/fleet/jobs/j/artifacts",
        headers={"Authorization": f"Bearer {TOKEN_A}", "X-Fine": "a" * (LIMIT - 2048)},
    )
    assert r.status_code == 200


def test_a_trickled_head_is_cut_off(served: tuple[str, int, int]) -> None:
    host, port, _ = served
    with socket.create_connection((host, port), timeout=10) as sock:
        started = time.perf_counter()
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        answer = b""
        for _ in range(40):  # one header byte every 0.25 s: never done within the 2 s bound
            try:
                sock.sendall(b"X")
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.25)
            sock.setblocking(False)
            try:
                answer += sock.recv(65536)
            except BlockingIOError:
                pass
            finally:
                sock.setblocking(True)
            if answer:
                break
        elapsed = time.perf_counter() - started
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert 1.5 < elapsed < 6


def test_parallel_huge_heads_leave_memory_flat_and_health_responsive(served: tuple[str, int, int]) -> None:
    host, port, pid = served
    health(host, port)
    before = rss_kib(pid)
    answers: list[bytes] = []
    head = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * (32 * 1024 * 1024) + b"\r\n\r\n"
    threads = [
        threading.Thread(target=lambda: answers.append(exchange((host, port), head))) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    latencies = [health(host, port) for _ in range(5)]
    for thread in threads:
        thread.join(timeout=60)
    assert len(answers) == 4 and all(a.startswith(b"HTTP/1.1 431 ") for a in answers)
    assert max(latencies) < 1, latencies
    assert rss_kib(pid) - before < 16 * 1024, (before, rss_kib(pid))  # KiB: flat, not 300 MiB a head


def test_a_chunked_body_cannot_carry_a_huge_trailer(served: tuple[str, int, int]) -> None:
    host, port, _ = served
    head = b"POST /fleet/jobs/j/artifacts HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    body = b"5\r\nhello\r\n0\r\nX-Trailer: " + b"a" * (8 * 1024 * 1024) + b"\r\n\r\n"
    started = time.perf_counter()
    answer = exchange((host, port), head + body)
    assert b" 431 " in answer.split(b"\r\n", 1)[0] or b"HTTP/1.1 431 " in answer, answer[:300]
    assert time.perf_counter() - started < 5
    assert health(host, port) < 1


def test_a_head_begun_in_the_read_that_ends_a_body_is_timed_too(served: tuple[str, int, int]) -> None:
    host, port, _ = served
    with socket.create_connection((host, port), timeout=15) as sock:
        # One packet: a whole request with a body, then the start of the next head, never finished.
        sock.sendall(
            b"POST /health HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\nhello"
            b"GET /health HTTP/1.1\r\nX-Slow: a"
        )
        started = time.perf_counter()
        answer = b""
        with contextlib.suppress(ConnectionResetError, TimeoutError):
            while chunk := sock.recv(65536):
                answer += chunk
        elapsed = time.perf_counter() - started
    assert b"HTTP/1.1 405 " in answer  # the first request was answered
    assert b"HTTP/1.1 408 " in answer, answer[-300:]  # the unfinished head was cut off
    assert elapsed < 6
