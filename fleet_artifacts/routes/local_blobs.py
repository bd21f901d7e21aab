"""The signed URLs of a store this service hosts (the local backend): ``/blobs/{key}?<sig>``.

Anyone holding a URL signed by the store may use it until it expires, as with an
Azure SAS; no bearer token is involved. GET and HEAD read (``sp=r``: Range and
ETag supported); PUT writes (``sp=cw``) with Azure's block-blob protocol
(``routes.blob_protocol``). Registered only when the blob store is a
``HostedBlobStore``. As on Azure, a GET of an archived blob answers 409 with
``x-ms-error-code: BlobArchived`` while a HEAD (Get Blob Properties) still answers,
with the tier in ``x-ms-access-tier``.

Example:
    >>> url = base_url + await store.sign_write_url(key, expires_at=soon)  # doctest: +SKIP
    >>> BlobClient.from_blob_url(url).upload_blob(data, overwrite=True)  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import time
from typing import Any

from litestar import HttpMethod, Request, Response, put, route
from litestar.datastructures import State
from litestar.params import FromPath

from fleet_artifacts.core.errors import Archived, InvalidInput, NotFound, PayloadTooLarge, SignatureRejected
from fleet_artifacts.core.hosted import HostedBlobStore, MayCommit
from fleet_artifacts.core.models import BlobTier
from fleet_artifacts.core.ports import MAX_BLOCK_BYTES
from fleet_artifacts.core.validation import check_content_type
from fleet_artifacts.routes.blob_protocol import (
    API_VERSION,
    MAX_BLOCK_LIST_BYTES,
    ExpectedMd5,
    check_preconditions,
    created,
    declared_length,
    parse_block_id,
    parse_block_list,
    refuse_unsupported,
)
from fleet_artifacts.routes.deps import BLOB_PATH, AnyRequest, Services, per_method, services_of
from fleet_artifacts.routes.forms import read_bounded
from fleet_artifacts.routes.openapi import ANY_MEDIA_TYPE, DOWNLOAD_ANSWERS, BlobPutOperation, problems
from fleet_artifacts.routes.problems import artifact_error_handler
from fleet_artifacts.routes.streaming import Served, stream_blob

# What Get Blob answers on Azure and the Azure SDK reads back (the version is one it knows).
AZURE_BLOB_HEADERS = (("x-ms-blob-type", "BlockBlob"), ("x-ms-version", API_VERSION))


def _hosted(services: Services) -> HostedBlobStore:
    # These routes are registered only when the blob store is hosted (create_app checks it).
    assert services.hosted is not None
    return services.hosted


def _blob_archived(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """The service's problem document, with the error code Azure's Get Blob gives (the SDK reads it)."""
    answer = artifact_error_handler(request, exc)
    answer.headers.update({"x-ms-error-code": "BlobArchived", "x-ms-version": API_VERSION})
    return answer


@route(
    BLOB_PATH + "/{key:path}",
    http_method=[HttpMethod.GET, HttpMethod.HEAD],
    media_type=ANY_MEDIA_TYPE,  # the artifact's own type
    operation_id=per_method("getSignedBlob"),
    responses={**problems(400, 403, 404, 409, 412, 416, 503), **DOWNLOAD_ANSWERS},
    tags=["signed URLs"],
    # Also when the blob is archived between info() and the first read of its bytes.
    exception_handlers={Archived: _blob_archived},
)
async def signed_blob(request: AnyRequest, state: State, key: FromPath[str]) -> Response[Any]:
    """Serve one blob to the holder of a valid signed URL (Range and ETag supported)."""
    store = _hosted(services_of(state))
    key = key.lstrip("/")
    granted = store.verify_url(key, "r", dict(request.query_params), now=time.time())
    info = await store.info(key)
    if info is None:
        raise NotFound("blob not found")
    head = request.method == "HEAD"
    if not head and (info.tier is BlobTier.ARCHIVE or info.rehydrating):
        raise Archived("the blob is in the Archive tier: it must be rehydrated to an online tier first")
    served = Served(
        key=key,
        size=info.size_bytes,
        content_type=granted["rsct"] or info.content_type,
        content_disposition=granted["rscd"] or "attachment",
        etag=f'"{info.sha256}"' if info.sha256 else None,
        # HEAD is Get Blob Properties on Azure: it tells the tier, and answers in every tier.
        extra=(*AZURE_BLOB_HEADERS, ("x-ms-access-tier", info.tier.value)) if head else AZURE_BLOB_HEADERS,
    )
    return await stream_blob(store, served, request.headers, head=head)


@put(
    BLOB_PATH + "/{key:path}",
    operation_id="putSignedBlob",
    status_code=201,
    responses=problems(400, 403, 409, 412, 413, 503),
    operation_class=BlobPutOperation,
    tags=["signed URLs"],
    request_max_body_size=None,  # Put Blob and Put Block enforce their own limits while streaming
)
async def signed_blob_put(request: AnyRequest, state: State, key: FromPath[str]) -> Response[bytes]:
    """Put Blob, Put Block or Put Block List for the holder of a valid write URL."""
    services = services_of(state)
    store = _hosted(services)
    limit = services.kernel.limits.max_upload_bytes
    key = key.lstrip("/")
    query = dict(request.query_params)
    store.verify_url(key, "w", query, now=time.time())
    # Unlike an Azure SAS, a local write URL dies with its upload: once the artifact is
    # finalized, discarded or deleted, the service refuses further writes to its blob.
    # Asked again, under the store's lock, at the moment the bytes would become the blob.
    may_commit = functools.partial(services.write_allowed, key)
    if not await may_commit():
        raise SignatureRejected("the upload this URL was issued for is finished or gone")
    refuse_unsupported(request.headers, query)
    comp = query.get("comp")
    if comp is None:
        return await _put_blob(request, store, key, limit, may_commit)
    if comp == "block":
        return await _put_block(request, store, key, limit, query.get("blockid"))
    if comp == "blocklist":
        return await _put_block_list(request, store, key, limit, may_commit)
    raise InvalidInput(
        f"comp={comp[:40]!r} is not supported by the local blob backend "
        "(supported: none (Put Blob), 'block', 'blocklist')",
        field="comp",
    )


async def _put_blob(
    request: AnyRequest, store: HostedBlobStore, key: str, limit: int, may_commit: MayCommit
) -> Response[bytes]:
    blob_type = request.headers.get("x-ms-blob-type")
    if blob_type != "BlockBlob":
        raise InvalidInput("x-ms-blob-type must be 'BlockBlob' (the only kind kept)", field="x-ms-blob-type")
    declared = declared_length(request)
    if declared is not None and declared > limit:
        raise PayloadTooLarge(limit)  # before a byte is read: the client learns early
    await check_preconditions(request, store, key)
    # As on Azure, Put Blob falls back to Content-Type when x-ms-blob-content-type is absent.
    content_type = check_content_type(
        request.headers.get("x-ms-blob-content-type")
        or request.headers.get("content-type")
        or "application/octet-stream"
    )
    md5 = ExpectedMd5(request)
    written = await store.put_blob(
        key, md5.checked(request.stream()), content_type=content_type, limit=limit, may_commit=may_commit
    )
    return created(request, etag=f'"{written.sha256}"', md5=md5.header)


async def _put_block(
    request: AnyRequest, store: HostedBlobStore, key: str, limit: int, raw_id: str | None
) -> Response[bytes]:
    block_id = parse_block_id(raw_id)
    declared = declared_length(request)
    if declared is not None and declared > MAX_BLOCK_BYTES:
        raise PayloadTooLarge(MAX_BLOCK_BYTES)
    md5 = ExpectedMd5(request)
    await store.stage_block(key, block_id, md5.checked(request.stream()), limit=limit, declared=declared)
    return created(request, md5=md5.header)


async def _put_block_list(
    request: AnyRequest, store: HostedBlobStore, key: str, limit: int, may_commit: MayCommit
) -> Response[bytes]:
    declared = declared_length(request)
    if declared is not None and declared > MAX_BLOCK_LIST_BYTES:
        raise PayloadTooLarge(MAX_BLOCK_LIST_BYTES)
    md5 = ExpectedMd5(request)
    entries = parse_block_list(await read_bounded(md5.checked(request.stream()), MAX_BLOCK_LIST_BYTES))
    await check_preconditions(request, store, key)
    content_type = check_content_type(
        request.headers.get("x-ms-blob-content-type") or "application/octet-stream"
    )
    written = await store.commit_block_list(
        key, entries, content_type=content_type, limit=limit, may_commit=may_commit
    )
    return created(request, etag=f'"{written.sha256}"', md5=md5.header)
