"""The Python client (sync and async) against the real server, on every backend variant.

Faults are real too: tiny HTTP servers in front of the service answer 503 with
Retry-After, lose an answer after the service acted on it, or serve tampered bytes.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from fleet_artifacts.client import (
    AsyncClient,
    Client,
    DigestMismatch,
    FleetConnectionError,
    FleetError,
    RetryPolicy,
    UploadOptions,
)
from tests.conftest import TOKEN_A
from tests.servers import ThreadedServer, free_port

KiB, MiB = 1024, 1024 * 1024
# Direct above 1 MiB, in 256 KiB blocks; the server fixture verifies only up to 256 KiB itself,
# so a direct upload's pointer says sha256Verified false while a proxied one says true.
SMALL_DIRECT = UploadOptions(direct_threshold=MiB, block_size=256 * KiB)
FAST_RETRY = RetryPolicy(attempts=4, backoff=0.01, max_backoff=0.05)

Handler = Callable[[BaseHTTPRequestHandler, bytes], bool]  # True: answered; False: forward


@contextmanager
def front(target: str, handle: Handler) -> Iterator[tuple[str, list[dict[str, str]]]]:
    """An HTTP server in front of ``target``: ``handle`` answers a request or lets it through."""
    seen: list[dict[str, str]] = []

    class Front(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _any(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            seen.append({"method": self.command, "path": self.path, **dict(self.headers)})
            if handle(self, body):
                return
            forwarded = httpx.request(
                self.command,
                target + self.path,
                content=body,
                headers={
                    k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")
                },
                timeout=30,
            )
            self.send_response(forwarded.status_code)
            for name, value in forwarded.headers.items():
                if name.lower() not in (
                    "content-length",
                    "transfer-encoding",
                    "connection",
                    "content-encoding",
                ):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(forwarded.content)))
            self.end_headers()
            self.wfile.write(forwarded.content)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

    server = ThreadingHTTPServer(("127.0.0.1", 0), Front)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def answer(handler: BaseHTTPRequestHandler, status: int, body: bytes, **headers: str) -> None:
    handler.send_response(status)
    for name, value in {"Content-Length": str(len(body)), **headers}.items():
        handler.send_header(name.replace("_", "-"), value)
    handler.end_headers()
    handler.wfile.write(body)


def write(path: Path, size: int) -> bytes:
    data = secrets.token_bytes(size)
    path.write_bytes(data)
    return data


def test_sync_uploads_small_proxied_and_large_direct_and_downloads_verified(
    server: ThreadedServer, job_id: str, tmp_path: Path
) -> None:
    small = write(tmp_path / "build.log", 10 * KiB)
    large = write(tmp_path / "dist.tar.gz", 3 * MiB + 7)
    with Client(server.url, TOKEN_A, upload=SMALL_DIRECT) as fleet:
        proxied = fleet.upload(tmp_path / "build.log", job_id, run_id="r1", tags={"os": "linux"})
        direct = fleet.upload(tmp_path / "dist.tar.gz", job_id, run_id="r1")
        assert (proxied.kind.value, proxied.sha256, proxied.sha256_verified) == (
            "log",
            hashlib.sha256(small).hexdigest(),
            True,
        )
        # Direct: the client's sha256 claim, recorded unverified past VERIFY_MAX_BYTES.
        assert (direct.kind.value, direct.size_bytes, direct.sha256_verified) == ("build", len(large), False)
        assert direct.sha256 == hashlib.sha256(large).hexdigest()
        with (tmp_path / "build.log").open("rb") as file:  # a file object, and the other forms
            assert fleet.upload(file, job_id, form="multipart").sha256 == proxied.sha256
        assert fleet.upload(small, job_id, file_name="e.log", form="envelope").sha256 == proxied.sha256
        assert fleet.upload(small, job_id, file_name="s.log", form="resumable").sha256 == proxied.sha256

        out = tmp_path / "out"
        out.mkdir()
        assert fleet.download(direct.id, out, job_id=job_id).read_bytes() == large
        assert fleet.download(proxied, out).read_bytes() == small  # by pointer, by id alone
        assert sorted(p.name for p in out.iterdir()) == ["build.log", "dist.tar.gz"]  # no temp left
        listed = list(fleet.iter_artifacts(job_id, limit=2))
        assert len(listed) == 5
        assert [a.id for a in fleet.list(job_id, tags={"os": "linux"}).items] == [proxied.id]
        assert fleet.update(proxied.id, job_id, retention_days=3).retention_days == 3
        link = fleet.share(proxied.id, job_id, expires_in=600)
        assert link.url and httpx.get(link.url, follow_redirects=True).content == small
        assert fleet.download_url(proxied.id).startswith("http")
        fleet.delete(proxied.id, job_id)
        with pytest.raises(FleetError):
            fleet.get(proxied.id, job_id)
        assert fleet.delete_job(job_id) == 4


async def test_async_client_uploads_both_ways_and_downloads(
    server: ThreadedServer, job_id: str, tmp_path: Path
) -> None:
    small = write(tmp_path / "notes.md", 5 * KiB)
    large = write(tmp_path / "image.bin", 2 * MiB + 1)
    async with AsyncClient(server.url, TOKEN_A, upload=SMALL_DIRECT) as fleet:
        proxied, direct = await asyncio.gather(
            fleet.upload(tmp_path / "notes.md", job_id, kind="document"),
            fleet.upload(tmp_path / "image.bin", job_id),
        )
        assert proxied.sha256_verified and not direct.sha256_verified
        assert direct.sha256 == hashlib.sha256(large).hexdigest()
        assert await fleet.read(proxied.id, job_id=job_id) == small
        path = await fleet.download(direct, tmp_path / "copy.bin")
        assert path.read_bytes() == large
        ids = [a.id async for a in fleet.iter_artifacts(job_id, limit=1)]
        assert sorted(ids) == sorted([proxied.id, direct.id])
        with pytest.raises(FleetError) as refused:
            await fleet.upload(b"x", job_id, file_name="a.txt", kind="nope")
        assert refused.value.status == 400 and refused.value.problem.field == "kind"
        await fleet.delete(direct.id)


def test_a_lost_answer_is_retried_with_the_same_key_and_makes_one_artifact(
    server: ThreadedServer, job_id: str
) -> None:
    dropped: list[int] = []

    def lose_first_create(handler: BaseHTTPRequestHandler, body: bytes) -> bool:
        if handler.command != "POST" or dropped:
            return False
        dropped.append(1)
        # The service does the upload; the client never hears about it.
        httpx.post(
            server.url + handler.path,
            content=body,
            headers={k: v for k, v in handler.headers.items() if k.lower() not in ("host", "content-length")},
        ).raise_for_status()
        handler.close_connection = True
        return True

    with front(server.url, lose_first_create) as (url, seen), Client(url, TOKEN_A, retry=FAST_RETRY) as fleet:
        out = fleet.upload(b"once only\n", job_id, file_name="once.log")
    posts = [r for r in seen if r["method"] == "POST"]
    assert len(posts) == 2 and posts[0]["Idempotency-Key"] == posts[1]["Idempotency-Key"]
    with Client(server.url, TOKEN_A) as fleet:
        assert [a.id for a in fleet.list(job_id).items] == [out.id]


@pytest.mark.parametrize("status", [503, 429])
def test_retries_wait_what_retry_after_says_and_keep_the_key(
    server: ThreadedServer, job_id: str, status: int
) -> None:
    busy: list[int] = []

    def busy_twice(handler: BaseHTTPRequestHandler, _body: bytes) -> bool:
        if len(busy) < 2:
            busy.append(1)
            problem = json.dumps(
                {"type": "about:blank", "title": "busy", "status": status, "detail": "later"}
            )
            answer(
                handler, status, problem.encode(), Content_Type="application/problem+json", Retry_After="1"
            )
            return True
        return False

    with front(server.url, busy_twice) as (url, seen), Client(url, TOKEN_A, retry=FAST_RETRY) as fleet:
        started = time.monotonic()
        out = fleet.upload(b"patience\n", job_id, file_name="p.log")
        elapsed = time.monotonic() - started
    assert out.size_bytes == 9
    assert 2.0 <= elapsed < 10, elapsed  # two Retry-After: 1 waits, not the 10 ms backoff
    assert len({r["Idempotency-Key"] for r in seen}) == 1 and len(seen) == 3


async def test_async_retries_honour_retry_after_too(server: ThreadedServer, job_id: str) -> None:
    busy: list[int] = []

    def busy_once(handler: BaseHTTPRequestHandler, _body: bytes) -> bool:
        if not busy:
            busy.append(1)
            answer(handler, 503, b"{}", Content_Type="application/problem+json", Retry_After="1")
            return True
        return False

    with front(server.url, busy_once) as (url, seen):
        async with AsyncClient(url, TOKEN_A, retry=FAST_RETRY) as fleet:
            started = time.monotonic()
            await fleet.upload(b"later\n", job_id, file_name="l.log")
            assert time.monotonic() - started >= 1.0
    assert len(seen) == 2


def test_other_4xx_are_not_retried_and_errors_are_typed_without_the_token(server: ThreadedServer) -> None:
    with (
        front(server.url, lambda _h, _b: False) as (url, seen),
        Client(url, TOKEN_A, retry=FAST_RETRY) as fleet,
    ):
        with pytest.raises(FleetError) as missing:
            fleet.get("0" * 32)
        assert len(seen) == 1
    problem = missing.value
    assert (problem.status, problem.title) == (404, "Not Found") and problem.detail and problem.type
    assert TOKEN_A not in str(problem) and TOKEN_A not in repr(fleet)
    with Client(server.url, "wrong-token-" + "x" * 20) as stranger, pytest.raises(FleetError) as refused:
        stranger.list("any-job")
    assert refused.value.status == 401 and "wrong-token" not in str(refused.value)


def test_connection_refused_is_a_fleet_error_after_the_retries() -> None:
    port = free_port()
    with (
        Client(f"http://127.0.0.1:{port}", TOKEN_A, retry=FAST_RETRY) as fleet,
        pytest.raises(FleetConnectionError) as failed,
    ):
        fleet.get("a" * 32)
    assert failed.value.status == 0 and f"127.0.0.1:{port}" in str(failed.value)
    assert "refused" in str(failed.value).lower()


def test_a_tampered_download_raises_and_leaves_no_file(tmp_path: Path) -> None:
    good, evil = b"the real bytes\n", b"the evil bytes\n"
    now = datetime.now(UTC)
    pointer: dict[str, object] = {
        "id": "a" * 32, "productId": "p", "jobId": "j", "kind": "log", "fileName": "real.log",
        "blobKey": "k", "contentType": "text/plain", "sizeBytes": len(good),
        "sha256": hashlib.sha256(good).hexdigest(), "createdAt": now.isoformat(),
        "downloadUrlExpiresAt": (now + timedelta(minutes=15)).isoformat(), "etag": '"1"',
    }  # fmt: skip

    def fake(handler: BaseHTTPRequestHandler, _body: bytes) -> bool:
        if handler.path.startswith("/blob"):
            answer(handler, 200, evil, Content_Type="text/plain")
        else:
            host = handler.headers["Host"]
            body = json.dumps({**pointer, "downloadUrl": f"http://{host}/blob?sig=x"}).encode()
            answer(handler, 200, body, Content_Type="application/json")
        return True

    target = tmp_path / "downloads"
    target.mkdir()
    with front("http://unused", fake) as (url, seen), Client(url, TOKEN_A) as fleet:
        with pytest.raises(DigestMismatch) as mismatch:
            fleet.download("a" * 32, target)
        assert "sha256" in mismatch.value.detail
        with pytest.raises(DigestMismatch):
            fleet.read("a" * 32)
    assert list(target.iterdir()) == []  # neither the file nor a temp file
    blob_requests = [r for r in seen if r["path"].startswith("/blob")]
    assert blob_requests and all("Authorization" not in r for r in blob_requests)  # no token to signed URLs
