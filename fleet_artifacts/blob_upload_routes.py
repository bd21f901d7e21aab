"""Azure's block-blob write protocol on the local backend's signed URLs: ``PUT /blobs/{key}``.

A direct-to-blob upload URL of the local backend (``LocalBlobStore.sign_write_url``,
``sp=cw``) points at this route, which answers the requests the Azure Storage SDK
sends to Azure for a block blob, so one client works on both backends::

    PUT /blobs/{key}?<sig>                           Put Blob: the body is the whole blob
    PUT /blobs/{key}?<sig>&comp=block&blockid=<b64>  Put Block: stage one block
    PUT /blobs/{key}?<sig>&comp=blocklist            Put Block List: commit staged blocks in order

Every commit goes through ``LocalBlobStore.write`` (temp file, fsync, rename, sidecar
digest). Blocks wait in ``LocalBlobStore.staging_dir(key)`` under names derived from
their ids (hex), never the ids themselves. The route is write-only: it never returns
stored bytes. What the local store cannot keep (metadata, tags, leases, customer keys,
CRC64 checks, other blob types or ``comp`` operations, references to committed blocks)
is refused with a 400 rather than half-done in silence.

Example:
    >>> url = base_url + await store.sign_write_url(key, expires_at=soon)  # doctest: +SKIP
    >>> BlobClient.from_blob_url(url).upload_blob(data, overwrite=True)  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import os
import re
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from email.utils import formatdate
from pathlib import Path
from typing import Any

from litestar import Request, Response, put
from litestar.datastructures import State
from litestar.params import FromPath

from fleet_artifacts.adapters.local_blob import MAX_BLOCK_BYTES, LocalBlobStore, concatenate, stage_file
from fleet_artifacts.downloads import etag_matches
from fleet_artifacts.errors import (
    Conflict,
    InvalidInput,
    PayloadTooLarge,
    PreconditionFailed,
    SignatureRejected,
)
from fleet_artifacts.validation import check_content_type

MAX_BLOCK_LIST_BYTES = 4 * 1024 * 1024  # 50,000 ids of 64 bytes fit with room to spare
MAX_BLOCKS = 50_000  # Azure's limit on the blocks of one committed blob
MAX_STAGED_BLOCKS = 100_000  # Azure's limit on the uncommitted blocks of one blob
MAX_BLOCK_ID_BYTES = 64
API_VERSION = "2026-02-06"  # answered when the client names none
_FLUSH_BYTES = 1024 * 1024
_BLOCK_SUFFIX = ".block"
_BLOCK_KINDS = frozenset({"Committed", "Uncommitted", "Latest"})
_XML_FEED_CHARS = 64 * 1024
_API_VERSION_FORMAT = re.compile(r"\d{4}-\d{2}-\d{2}")
AnyRequest = Request[Any, Any, Any]

# Headers asking for semantics the local store cannot keep. Accepting them would
# report success for something that did not happen (an unchecked CRC64, a lost
# lease or metadata), so they are refused by name.
_REFUSED_HEADERS = (
    "content-encoding",
    "content-language",
    "if-modified-since",
    "if-unmodified-since",
    "x-ms-blob-cache-control",
    "x-ms-blob-content-disposition",
    "x-ms-blob-content-encoding",
    "x-ms-blob-content-language",
    "x-ms-blob-content-md5",
    "x-ms-content-crc64",
    "x-ms-copy-source",  # Put Blob From URL: the empty body would be stored
    "x-ms-if-tags",
    "x-ms-immutability-policy-mode",
    "x-ms-immutability-policy-until-date",
    "x-ms-lease-id",
    "x-ms-legal-hold",
    "x-ms-structured-body",
    "x-ms-tags",
)


@put(
    "/blobs/{key:path}",
    operation_id="putSignedBlob",
    tags=["signed URLs"],
    request_max_body_size=None,  # Put Blob and Put Block enforce their own limits while streaming
)
async def signed_blob_put(request: AnyRequest, state: State, key: FromPath[str]) -> Response[bytes]:
    """Put Blob, Put Block or Put Block List for the holder of a valid write URL."""
    store: LocalBlobStore = state.local_blobs
    limit: int = state.service.max_upload_bytes
    key = key.lstrip("/")
    query = dict(request.query_params)
    store.signer.verify(key, "w", query, now=time.time())
    store.path_of(key)
    # Unlike an Azure SAS, a local write URL dies with its upload: once the artifact is
    # finalized, discarded or deleted, the service refuses further writes to its blob.
    upload_open: Callable[[str], Awaitable[bool]] | None = getattr(state, "upload_open", None)
    if upload_open is not None and not await upload_open(key):
        raise SignatureRejected("the upload this URL was issued for is finished or gone")
    refuse_unsupported(request.headers, query)
    comp = query.get("comp")
    if comp is None:
        return await _put_blob(request, store, key, limit)
    if comp == "block":
        return await _put_block(request, store, key, limit, query.get("blockid"))
    if comp == "blocklist":
        return await _put_block_list(request, store, key, limit)
    raise InvalidInput(
        f"comp={comp[:40]!r} is not supported by the local blob backend "
        "(supported: none (Put Blob), 'block', 'blocklist')",
        field="comp",
    )


def refuse_unsupported(headers: Mapping[str, str], query: Mapping[str, str]) -> None:
    """Raise InvalidInput for a request asking for what the local store cannot keep."""
    if "restype" in query:
        raise InvalidInput("container operations are not available on a blob URL", field="restype")
    for name in headers:
        lower = name.lower()
        if lower in _REFUSED_HEADERS or lower.startswith(("x-ms-meta-", "x-ms-encryption-")):
            raise InvalidInput(f"header {lower!r} is not supported by the local blob backend", field=lower)


def parse_block_id(raw: str | None) -> bytes:
    """Decode a block id: standard padded base64 of 1 to 64 bytes, as Azure requires.

    >>> parse_block_id("YmxvY2stMQ==")
    b'block-1'
    """
    if not raw:
        raise InvalidInput("blockid is required with comp=block", field="blockid")
    # A '+' sent unescaped in a query string arrives as a space, which base64 never holds.
    try:
        block_id = base64.b64decode(raw.replace(" ", "+"), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("blockid must be base64", field="blockid") from None
    if not 0 < len(block_id) <= MAX_BLOCK_ID_BYTES:
        raise InvalidInput(f"blockid must decode to 1 to {MAX_BLOCK_ID_BYTES} bytes", field="blockid")
    return block_id


def id_width(block_id_bytes: int) -> int:
    """Length of the base64 form of an id of this many bytes (Azure compares that length)."""
    return 4 * -(-block_id_bytes // 3)


def parse_block_list(body: bytes) -> list[tuple[str, bytes]]:
    """Parse a ``<BlockList>`` body into (``Committed``/``Uncommitted``/``Latest``, id) in order.

    >>> parse_block_list(b"<BlockList><Latest>YQ==</Latest><Uncommitted>Yg==</Uncommitted></BlockList>")
    [('Latest', b'a'), ('Uncommitted', b'b')]
    """
    try:
        text = body.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError:
        raise InvalidInput("the block list must be UTF-8 XML") from None
    # No DTD means no entity can expand; comments and CDATA go too since no block list needs them.
    if "<!" in text:
        raise InvalidInput("the block list may not contain a DTD, comments or CDATA")
    # Parsed incrementally so that a body of many tiny elements is refused before it is all in memory.
    parser: ET.XMLPullParser[ET.Element] = ET.XMLPullParser(
        events=("start", "end")
    )  # no DTD gets here, hence no entity expansion
    entries: list[tuple[str, bytes]] = []
    depth = 0
    try:
        for offset in range(0, len(text), _XML_FEED_CHARS):
            parser.feed(text[offset : offset + _XML_FEED_CHARS])  # a str: its declared encoding is moot
            for item in parser.read_events():
                assert len(item) == 2  # only "start"/"end" were asked for: (event, element)
                event, element = item
                assert isinstance(element, ET.Element)
                if event == "start":
                    depth += 1
                    if (depth == 1 and element.tag != "BlockList") or (
                        depth > 1 and (depth > 2 or element.tag not in _BLOCK_KINDS)
                    ):
                        raise InvalidInput(f"unexpected <{element.tag[:40]}> in the block list")
                    continue
                depth -= 1
                if depth == 1:
                    if len(entries) == MAX_BLOCKS:
                        raise InvalidInput(f"a block list names at most {MAX_BLOCKS} blocks")
                    entries.append((element.tag, parse_block_id((element.text or "").strip())))
                    element.clear()
        parser.close()
    except ET.ParseError as exc:
        raise InvalidInput(f"the block list is not well-formed XML: {exc}") from None
    if len({id_width(len(block_id)) for _, block_id in entries}) > 1:
        raise InvalidInput("the block ids of a blob must all have the same length")
    return entries


async def _put_blob(request: AnyRequest, store: LocalBlobStore, key: str, limit: int) -> Response[bytes]:
    blob_type = request.headers.get("x-ms-blob-type")
    if blob_type != "BlockBlob":
        raise InvalidInput("x-ms-blob-type must be 'BlockBlob' (the only kind kept)", field="x-ms-blob-type")
    declared = _declared_length(request)
    if declared is not None and declared > limit:
        raise PayloadTooLarge(limit)  # before a byte is read: the client learns early
    await _check_preconditions(request, store, key)
    # As on Azure, Put Blob falls back to Content-Type when x-ms-blob-content-type is absent.
    content_type = check_content_type(
        request.headers.get("x-ms-blob-content-type")
        or request.headers.get("content-type")
        or "application/octet-stream"
    )
    md5 = _ExpectedMd5(request)
    written = await store.write(
        key, md5.checked(request.stream()), content_type=content_type, max_bytes=limit
    )
    await store.discard_uncommitted(key)  # Azure drops uncommitted blocks when a Put Blob lands
    return _created(request, etag=f'"{written.sha256}"', md5=md5.header)


async def _put_block(
    request: AnyRequest, store: LocalBlobStore, key: str, limit: int, raw_id: str | None
) -> Response[bytes]:
    block_id = parse_block_id(raw_id)
    declared = _declared_length(request)
    if declared is not None and declared > MAX_BLOCK_BYTES:
        raise PayloadTooLarge(MAX_BLOCK_BYTES)
    staging = store.staging_dir(key)
    name = block_id.hex() + _BLOCK_SUFFIX
    staged = await asyncio.to_thread(_staged_sizes, staging)
    stems = _block_stems(staged)
    if any(id_width(len(other) // 2) != id_width(len(block_id)) for other in stems):
        raise InvalidInput("the block ids of a blob must all have the same length", field="blockid")
    if name not in staged and len(stems) >= MAX_STAGED_BLOCKS:
        raise Conflict(f"a blob holds at most {MAX_STAGED_BLOCKS} uncommitted blocks")
    # A guard against filling the disk, not the size rule itself (Put Block List checks that):
    # blocks staged in parallel may each see the others' temp files before they grow.
    budget = limit - sum(size for other, size in staged.items() if other != name)
    if declared is not None and declared > budget:
        raise PayloadTooLarge(limit)
    md5 = _ExpectedMd5(request)
    await stage_file(md5.checked(request.stream()), staging, name, budget=budget, limit=limit)
    return _created(request, md5=md5.header)


async def _put_block_list(
    request: AnyRequest, store: LocalBlobStore, key: str, limit: int
) -> Response[bytes]:
    declared = _declared_length(request)
    if declared is not None and declared > MAX_BLOCK_LIST_BYTES:
        raise PayloadTooLarge(MAX_BLOCK_LIST_BYTES)
    md5 = _ExpectedMd5(request)
    parts: list[bytes] = []
    size = 0
    async for chunk in md5.checked(request.stream()):
        size += len(chunk)
        if size > MAX_BLOCK_LIST_BYTES:
            raise PayloadTooLarge(MAX_BLOCK_LIST_BYTES)
        parts.append(chunk)
    entries = parse_block_list(b"".join(parts))
    await _check_preconditions(request, store, key)
    content_type = check_content_type(
        request.headers.get("x-ms-blob-content-type") or "application/octet-stream"
    )
    staging = store.staging_dir(key)
    paths, total = await asyncio.to_thread(_resolve_blocks, staging, entries)
    if total > limit:
        raise PayloadTooLarge(limit)
    written = await store.write(key, concatenate(paths), content_type=content_type, max_bytes=limit)
    await store.discard_uncommitted(key)  # committed or not listed: Azure drops them all
    return _created(request, etag=f'"{written.sha256}"', md5=md5.header)


class _ExpectedMd5:
    """Checks a transactional ``Content-MD5`` (``validate_content=True``) over the body."""

    def __init__(self, request: AnyRequest) -> None:
        self.header = request.headers.get("content-md5")
        self._expected: bytes | None = None
        if self.header is not None:
            try:
                self._expected = base64.b64decode(self.header, validate=True)
            except (binascii.Error, ValueError):
                raise InvalidInput("Content-MD5 must be base64", field="Content-MD5") from None

    async def checked(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """Pass the chunks on; raise after the last one if they do not match the header.

        Raising before the stream ends keeps a commit from completing on a mismatch.
        """
        digest = hashlib.md5(usedforsecurity=False) if self._expected is not None else None
        async for chunk in chunks:
            if digest is not None:
                digest.update(chunk)
            yield chunk
        if digest is not None and digest.digest() != self._expected:
            raise InvalidInput("the body does not match its Content-MD5 (Md5Mismatch)", field="Content-MD5")


async def _check_preconditions(request: AnyRequest, store: LocalBlobStore, key: str) -> None:
    """Honour If-Match / If-None-Match against the committed blob's ETag.

    Checked before the write, not atomically with it: two racing creates with
    ``If-None-Match: *`` may both succeed (the later rename wins), unlike on Azure.
    """
    if_match = request.headers.get("if-match")
    if_none_match = request.headers.get("if-none-match")
    if not if_match and not if_none_match:
        return
    info = await store.info(key)
    etag = f'"{info.sha256}"' if info is not None and info.sha256 else ""
    if if_none_match and info is not None:
        if if_none_match.strip() == "*":
            raise Conflict("the specified blob already exists (BlobAlreadyExists)")
        if etag_matches(if_none_match, etag):
            raise PreconditionFailed("the blob's ETag matches If-None-Match (ConditionNotMet)")
    if if_match and (info is None or not etag_matches(if_match, etag)):
        raise PreconditionFailed("the blob's ETag does not match If-Match (ConditionNotMet)")


def _declared_length(request: AnyRequest) -> int | None:
    value = request.headers.get("content-length")
    return int(value) if value is not None and value.isdigit() else None


def _created(request: AnyRequest, *, etag: str | None = None, md5: str | None = None) -> Response[bytes]:
    """201 with the headers the SDK's deserializers read (absent ones come back as None)."""
    version = request.headers.get("x-ms-version", "")
    headers = {
        "x-ms-request-id": str(uuid.uuid4()),
        "x-ms-version": version if _API_VERSION_FORMAT.fullmatch(version) else API_VERSION,
        "x-ms-request-server-encrypted": "false",
    }
    client_request_id = request.headers.get("x-ms-client-request-id")
    if client_request_id and len(client_request_id) <= 1024:
        headers["x-ms-client-request-id"] = client_request_id
    if etag is not None:
        headers["ETag"] = etag
        headers["Last-Modified"] = formatdate(usegmt=True)
    if md5 is not None:
        headers["Content-MD5"] = md5  # only once verified: the checked stream raises otherwise
    return Response(b"", status_code=201, headers=headers, media_type="application/octet-stream")


def _staged_sizes(staging: Path) -> dict[str, int]:
    """Size of every file in the staging dir (blocks and in-flight temps); created if missing."""
    staging.mkdir(parents=True, exist_ok=True)
    sizes: dict[str, int] = {}
    with os.scandir(staging) as entries:
        for entry in entries:
            with contextlib.suppress(FileNotFoundError):  # a temp renamed meanwhile
                sizes[entry.name] = entry.stat().st_size
    return sizes


def _block_stems(staged: Mapping[str, int]) -> list[str]:
    return [name.removesuffix(_BLOCK_SUFFIX) for name in staged if name.endswith(_BLOCK_SUFFIX)]


def _resolve_blocks(staging: Path, entries: list[tuple[str, bytes]]) -> tuple[list[Path], int]:
    """Map the listed ids to staged files in order; return them and their total size."""
    paths: list[Path] = []
    total = 0
    sizes: dict[bytes, int] = {}
    for kind, block_id in entries:
        if kind == "Committed":
            raise InvalidInput(
                "the local blob backend keeps no committed blocks: list staged blocks "
                "as <Latest> or <Uncommitted>, or upload the whole blob again (InvalidBlockList)"
            )
        path = staging / (block_id.hex() + _BLOCK_SUFFIX)
        if block_id not in sizes:
            try:
                sizes[block_id] = path.stat().st_size
            except FileNotFoundError:
                raise InvalidInput(
                    f"block {base64.b64encode(block_id).decode()} is not staged (InvalidBlockList)"
                ) from None
        paths.append(path)
        total += sizes[block_id]
    return paths, total
