"""The local backend's PUT /blobs/ route speaks Azure's block-blob protocol.

The real Azure Storage SDK (sync and aio) uploads through signed write URLs to a
real uvicorn server; raw HTTP covers what the SDK never sends on its own.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote, unquote

import httpx
import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError
from azure.storage.blob import BlobClient, ContentSettings
from azure.storage.blob.aio import BlobClient as AioBlobClient

from fleet_artifacts.stores.local_blob import LocalBlobStore
from fleet_artifacts.stores.signing import UrlSigner
from tests.helpers import BLOBS, hosted_blob_server
from tests.servers import ThreadedServer

LIMIT = 16 * 1024 * 1024
SMALL_LIMIT = 256 * 1024


def put_server(store: LocalBlobStore, *, max_upload_bytes: int) -> ThreadedServer:
    """Serve the signed GET and PUT /blobs/ routes of ``store`` over real HTTP."""
    return hosted_blob_server(store, max_upload_bytes=max_upload_bytes)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> LocalBlobStore:
    return LocalBlobStore(
        tmp_path_factory.mktemp("data") / "blobs", UrlSigner(secrets.token_bytes(32)), url_prefix=BLOBS
    )


@pytest.fixture(scope="module")
def server(store: LocalBlobStore) -> Iterator[ThreadedServer]:
    srv = put_server(store, max_upload_bytes=LIMIT)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def small_server(store: LocalBlobStore) -> Iterator[ThreadedServer]:
    srv = put_server(store, max_upload_bytes=SMALL_LIMIT)
    yield srv
    srv.stop()


@pytest.fixture
def web(server: ThreadedServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


@pytest.fixture
def key() -> str:
    return f"fleet/prod-a/job-{secrets.token_hex(4)}/{secrets.token_hex(4)}-log"


def sdk(url: str, *, single_put: int = 1024, block: int = 64 * 1024) -> BlobClient:
    """A sync SDK client that stages blocks for anything over ``single_put`` bytes; no retries."""
    return BlobClient.from_blob_url(url, retry_total=0, max_single_put_size=single_put, max_block_size=block)


def aio_sdk(url: str) -> AioBlobClient:
    """The aio twin of ``sdk``."""
    return AioBlobClient.from_blob_url(url, retry_total=0, max_single_put_size=1024, max_block_size=64 * 1024)


def soon() -> datetime:
    return datetime.now(UTC) + timedelta(minutes=5)


async def write_url(store: LocalBlobStore, server: ThreadedServer, key: str) -> str:
    return server.url + await store.sign_write_url(key, expires_at=soon())


def url_for(server: ThreadedServer, key: str, query: str) -> str:
    return f"{server.url}/blobs/{quote(key)}?{query}"


async def committed(store: LocalBlobStore, key: str) -> bytes:
    return b"".join([chunk async for chunk in store.read(key)])


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def block_list(*ids: str, kind: str = "Latest") -> bytes:
    return ("<BlockList>" + "".join(f"<{kind}>{i}</{kind}>" for i in ids) + "</BlockList>").encode()


# --- the real SDK -------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [100, 300 * 1024], ids=["put-blob", "staged-blocks"])
async def test_sync_sdk_uploads_byte_exact(
    store: LocalBlobStore, server: ThreadedServer, key: str, size: int
) -> None:
    data = os.urandom(size)
    client = sdk(await write_url(store, server, key))
    with client:
        result = client.upload_blob(data, overwrite=True, max_concurrency=4)
    assert await committed(store, key) == data
    info = await store.info(key)
    assert info is not None and info.sha256 == hashlib.sha256(data).hexdigest()
    assert info.content_type == "application/octet-stream"
    assert result["etag"] == f'"{info.sha256}"'
    assert result["last_modified"] is not None
    assert not store.staging_dir(key).exists()


@pytest.mark.parametrize("size", [100, 300 * 1024], ids=["put-blob", "staged-blocks"])
async def test_aio_sdk_uploads_byte_exact(
    store: LocalBlobStore, server: ThreadedServer, key: str, size: int
) -> None:
    data = os.urandom(size)
    async with aio_sdk(await write_url(store, server, key)) as c:
        await c.upload_blob(
            data,
            overwrite=True,
            max_concurrency=4,
            content_settings=ContentSettings(content_type="image/png"),
        )
    assert await committed(store, key) == data
    info = await store.info(key)
    assert info is not None and info.content_type == "image/png"
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert not store.staging_dir(key).exists()


async def test_sdk_large_blocks_and_md5_validation(
    store: LocalBlobStore, server: ThreadedServer, key: str
) -> None:
    # Blocks over 4 MiB take the SDK's substream path (short random ids); validate_content adds Content-MD5.
    data = os.urandom(9 * 1024 * 1024 + 17)
    url = await write_url(store, server, key)
    with sdk(url, block=4 * 1024 * 1024 + 1) as c:
        c.upload_blob(data, overwrite=True, max_concurrency=3)
    assert await committed(store, key) == data
    small = os.urandom(200 * 1024)
    with sdk(url) as c:
        c.upload_blob(small, overwrite=True, validate_content=True, max_concurrency=2)
    assert await committed(store, key) == small


async def test_sdk_overwrite_false_refuses_existing_blob(
    store: LocalBlobStore, server: ThreadedServer, key: str
) -> None:
    url = await write_url(store, server, key)
    with BlobClient.from_blob_url(url, retry_total=0) as c:
        c.upload_blob(b"first", overwrite=False)
        with pytest.raises(ResourceExistsError):
            c.upload_blob(b"second", overwrite=False)
    assert await committed(store, key) == b"first"


async def test_sdk_over_the_limit_is_413_and_nothing_committed(
    store: LocalBlobStore, small_server: ThreadedServer, key: str
) -> None:
    url = await write_url(store, small_server, key)
    for single_put in (1024, 1024 * 1024):  # staged blocks, then one Put Blob
        with (
            sdk(url, single_put=single_put) as c,
            pytest.raises(HttpResponseError) as err,
        ):
            c.upload_blob(os.urandom(SMALL_LIMIT + 1), overwrite=True, max_concurrency=1)
        assert err.value.status_code == 413
        assert await store.info(key) is None
    await store.discard_uncommitted(key)


# --- signatures ---------------------------------------------------------------------------------


async def test_write_url_rules(
    store: LocalBlobStore, server: ThreadedServer, web: httpx.Client, key: str
) -> None:
    put_blob = {"x-ms-blob-type": "BlockBlob"}
    read_query = store.signer.sign(key, "r", expires_at=int(time.time()) + 60)
    expired = store.signer.sign(key, "cw", expires_at=int(time.time()) - 1)
    good = (await store.sign_write_url(key, expires_at=soon())).partition("?")[2]
    tampered = good[:-2] + ("AA" if not good.endswith("AA") else "BB")
    for query in (read_query, expired, tampered, "sr=b&sp=cw"):
        response = web.put(url_for(server, key, query), content=b"x", headers=put_blob)
        assert response.status_code == 403, query
        assert response.headers["content-type"] == "application/problem+json"
    other = key + "-other"
    assert web.put(url_for(server, other, good), content=b"x", headers=put_blob).status_code == 403
    assert web.put(url_for(server, key, good), content=b"ok", headers=put_blob).status_code == 201
    assert web.get(url_for(server, key, good)).status_code == 403  # write URLs cannot read
    assert await store.info(other) is None
    assert await committed(store, key) == b"ok"


async def test_sdk_with_read_url_gets_403(store: LocalBlobStore, server: ThreadedServer, key: str) -> None:
    url = url_for(server, key, store.signer.sign(key, "r", expires_at=int(time.time()) + 60))
    with BlobClient.from_blob_url(url, retry_total=0) as c, pytest.raises(HttpResponseError) as err:
        c.upload_blob(b"data", overwrite=True)
    assert err.value.status_code == 403


@pytest.mark.parametrize(
    "raw_path", ["fleet/%2E%2E/%2E%2E/escape", "fleet/../../escape", "fleet/a%5Cb", "x/.tmp-1"]
)
async def test_traversal_keys_refused(store: LocalBlobStore, server: ThreadedServer, raw_path: str) -> None:
    key = unquote(raw_path)
    query = store.signer.sign(key, "cw", expires_at=int(time.time()) + 60)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:  # http.client sends the path as written (httpx would normalize the dot segments)
        conn.request(
            "PUT", f"/blobs/{raw_path}?{query}", body=b"evil", headers={"x-ms-blob-type": "BlockBlob"}
        )
        status = conn.getresponse().status
    finally:
        conn.close()
    assert status == 400  # the signature holds; the key itself is refused
    assert not [p for p in store.root.parent.rglob("*escape*")]


# --- the protocol over raw HTTP -----------------------------------------------------------------


async def test_block_list_with_unstaged_block_is_400(
    store: LocalBlobStore, server: ThreadedServer, web: httpx.Client, key: str
) -> None:
    query = (await store.sign_write_url(key, expires_at=soon())).partition("?")[2]
    staged, missing = b64(b"block-01"), b64(b"block-02")
    r = web.put(
        url_for(server, key, f"{query}&comp=block&blockid={quote(staged, safe='')}"), content=b"a" * 10
    )
    assert r.status_code == 201
    r = web.put(url_for(server, key, f"{query}&comp=blocklist"), content=block_list(staged, missing))
    assert r.status_code == 400 and "not staged" in r.json()["detail"]
    r = web.put(url_for(server, key, f"{query}&comp=blocklist"), content=block_list(staged, kind="Committed"))
    assert r.status_code == 400 and "committed" in r.json()["detail"]
    assert await store.info(key) is None
    r = web.put(
        url_for(server, key, f"{query}&comp=blocklist"),
        content=block_list(staged, staged, kind="Uncommitted"),
        headers={"x-ms-blob-content-type": "text/plain"},
    )
    assert r.status_code == 201 and r.headers["etag"] == f'"{hashlib.sha256(b"a" * 20).hexdigest()}"'
    assert await committed(store, key) == b"a" * 20
    assert not store.staging_dir(key).exists()


async def test_discard_uncommitted_drops_staged_blocks(
    store: LocalBlobStore, server: ThreadedServer, web: httpx.Client, key: str
) -> None:
    query = (await store.sign_write_url(key, expires_at=soon())).partition("?")[2]
    block = b64(b"\x00" * 8)
    assert (
        web.put(
            url_for(server, key, f"{query}&comp=block&blockid={quote(block, safe='')}"), content=b"zz"
        ).status_code
        == 201
    )
    assert [p.name for p in store.staging_dir(key).iterdir()] == [
        "00" * 8 + ".block"
    ]  # hex, never the raw id
    await store.discard_uncommitted(key)
    assert not store.staging_dir(key).exists()
    r = web.put(url_for(server, key, f"{query}&comp=blocklist"), content=block_list(block))
    assert r.status_code == 400
    assert await store.info(key) is None


@pytest.mark.parametrize(
    ("blockid", "detail"),
    [
        ("", "required"),
        ("not base64!", "base64"),
        ("YWJj", "length"),  # 3 bytes after the 8-byte block staged first
        (b64(b"x" * 65), "64"),
    ],
)
async def test_block_id_rules(
    store: LocalBlobStore, server: ThreadedServer, web: httpx.Client, key: str, blockid: str, detail: str
) -> None:
    query = (await store.sign_write_url(key, expires_at=soon())).partition("?")[2]
    first = quote(b64(b"12345678"), safe="")
    assert (
        web.put(url_for(server, key, f"{query}&comp=block&blockid={first}"), content=b"1").status_code == 201
    )
    r = web.put(url_for(server, key, f"{query}&comp=block&blockid={quote(blockid, safe='')}"), content=b"2")
    assert r.status_code == 400 and detail in r.json()["detail"]
    await store.discard_uncommitted(key)


@pytest.mark.parametrize(
    ("query_extra", "headers", "body"),
    [
        ("", {}, b"no blob type"),
        ("", {"x-ms-blob-type": "AppendBlob"}, b""),
        ("", {"x-ms-blob-type": "BlockBlob", "x-ms-meta-owner": "me"}, b"metadata is not kept"),
        ("", {"x-ms-blob-type": "BlockBlob", "x-ms-copy-source": "https://example.com/x"}, b""),
        ("", {"x-ms-blob-type": "BlockBlob", "Content-MD5": b64(b"0" * 16)}, b"md5 mismatch"),
        ("&comp=block&blockid=YWJj", {"Content-MD5": b64(b"0" * 16)}, b"md5 mismatch"),
        ("&comp=properties", {}, b""),
        ("&comp=metadata", {}, b""),
        ("&comp=tier", {"x-ms-access-tier": "Cool"}, b""),
        ("&comp=blocklist", {}, b"<!DOCTYPE b [<!ENTITY a 'x'>]><BlockList>&a;</BlockList>"),
        ("&comp=blocklist", {}, b"<BlockList><Latest>YQ==</Latest><Latest>YWJjZA==</Latest></BlockList>"),
        ("&comp=blocklist", {}, b"<BlockList><Other>YQ==</Other></BlockList>"),
        ("&comp=blocklist", {}, b"not xml"),
    ],
)
async def test_unsupported_or_malformed_requests_are_400(
    store: LocalBlobStore,
    server: ThreadedServer,
    web: httpx.Client,
    key: str,
    query_extra: str,
    headers: dict[str, str],
    body: bytes,
) -> None:
    query = (await store.sign_write_url(key, expires_at=soon())).partition("?")[2]
    r = web.put(url_for(server, key, query + query_extra), content=body, headers=headers)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert await store.info(key) is None


async def test_conditional_put_blob(
    store: LocalBlobStore, server: ThreadedServer, web: httpx.Client, key: str
) -> None:
    url = url_for(server, key, (await store.sign_write_url(key, expires_at=soon())).partition("?")[2])
    blob = {"x-ms-blob-type": "BlockBlob"}
    etag = web.put(url, content=b"v1", headers=blob | {"If-None-Match": "*"}).headers["etag"]
    assert web.put(url, content=b"v2", headers=blob | {"If-None-Match": "*"}).status_code == 409
    assert web.put(url, content=b"v2", headers=blob | {"If-Match": '"other"'}).status_code == 412
    r = web.put(url, content=b"v2", headers=blob | {"If-Match": etag, "Content-Type": "text/csv"})
    assert r.status_code == 201 and r.headers["x-ms-request-server-encrypted"] == "false"
    info = await store.info(key)
    assert info is not None and info.content_type == "text/csv"
    assert await committed(store, key) == b"v2"


async def test_block_list_body_is_capped(
    store: LocalBlobStore, server: ThreadedServer, web: httpx.Client, key: str
) -> None:
    query = (await store.sign_write_url(key, expires_at=soon())).partition("?")[2]
    ids = [b64(i.to_bytes(4, "big")) for i in range(50_001)]
    r = web.put(url_for(server, key, f"{query}&comp=blocklist"), content=block_list(*ids))
    assert r.status_code == 400 and "50000" in r.json()["detail"]
    huge = b"<BlockList>" + b" " * (4 * 1024 * 1024) + b"</BlockList>"
    assert web.put(url_for(server, key, f"{query}&comp=blocklist"), content=huge).status_code == 413
    assert await store.info(key) is None


def test_staging_paths_stay_outside_the_blob_root(store: LocalBlobStore, key: str) -> None:
    staging = store.staging_dir(key)
    assert not staging.resolve().is_relative_to(store.root)
    assert Path(staging).parent == store.staging_root
