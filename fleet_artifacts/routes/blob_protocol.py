"""Azure's block-blob write protocol, as the local backend's signed PUT route speaks it.

A direct-to-blob upload URL of the local backend (``sp=cw``) points at
``routes.local_blobs``, which answers the requests the Azure Storage SDK sends to
Azure for a block blob, so one client works on both backends::

    PUT /blobs/{key}?<sig>                           Put Blob: the body is the whole blob
    PUT /blobs/{key}?<sig>&comp=block&blockid=<b64>  Put Block: stage one block
    PUT /blobs/{key}?<sig>&comp=blocklist            Put Block List: commit staged blocks in order

This module reads and answers that protocol (block ids, the XML block list, Content-MD5,
conditional headers, the response headers the SDK reads); the store keeps the blocks
(``HostedBlobStore.stage_block`` / ``commit_block_list``). The route is write-only: it
never returns stored bytes. What the local store cannot keep (metadata, tags, leases,
customer keys, CRC64 checks, other blob types or ``comp`` operations, references to
committed blocks) is refused with a 400 rather than half-done in silence.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Mapping
from email.utils import formatdate

from litestar import Response

from fleet_artifacts.core.errors import Conflict, InvalidInput, PreconditionFailed
from fleet_artifacts.core.ports import MAX_BLOCKS, BlobStore, block_id_width
from fleet_artifacts.routes.deps import AnyRequest
from fleet_artifacts.routes.streaming import etag_matches

MAX_BLOCK_LIST_BYTES = 4 * 1024 * 1024  # 50,000 ids of 64 bytes fit with room to spare
MAX_BLOCK_ID_BYTES = 64
API_VERSION = "2026-02-06"  # answered when the client names none
_BLOCK_KINDS = frozenset({"Committed", "Uncommitted", "Latest"})
_XML_FEED_CHARS = 64 * 1024
_API_VERSION_FORMAT = re.compile(r"\d{4}-\d{2}-\d{2}")

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
    if len({block_id_width(len(block_id)) for _, block_id in entries}) > 1:
        raise InvalidInput("the block ids of a blob must all have the same length")
    return entries


class ExpectedMd5:
    """Checks a transactional ``Content-MD5`` (``validate_content=True``) over the body."""

    def __init__(self, request: AnyRequest) -> None:
        self.header = request.headers.get("content-md5")

    async def checked(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """Pass the chunks on; raise after the last one if they do not match the header.

        Raising before the stream ends keeps a commit from completing on a mismatch. The
        header is read when the body is, so the checks made before the body come first.
        """
        expected: bytes | None = None
        if self.header is not None:
            try:
                expected = base64.b64decode(self.header, validate=True)
            except (binascii.Error, ValueError):
                raise InvalidInput("Content-MD5 must be base64", field="Content-MD5") from None
        digest = hashlib.md5(usedforsecurity=False) if expected is not None else None
        async for chunk in chunks:
            if digest is not None:
                digest.update(chunk)
            yield chunk
        if digest is not None and digest.digest() != expected:
            raise InvalidInput("the body does not match its Content-MD5 (Md5Mismatch)", field="Content-MD5")


async def check_preconditions(request: AnyRequest, store: BlobStore, key: str) -> None:
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


def declared_length(request: AnyRequest) -> int | None:
    """The Content-Length the client declared, if any."""
    value = request.headers.get("content-length")
    return int(value) if value is not None and value.isdigit() else None


def created(request: AnyRequest, *, etag: str | None = None, md5: str | None = None) -> Response[bytes]:
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
