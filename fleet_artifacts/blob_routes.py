"""The local backend's signed blob URLs: ``GET /blobs/{key}?se=&sp=&rscd=&rsct=&sig=``.

Anyone holding a URL signed by this service may read that one blob until it
expires, as with an Azure SAS; no bearer token is involved. Registered only
when the blob backend is ``local``.
"""

from __future__ import annotations

import time
from typing import Any

from litestar import HttpMethod, Request, Response, route
from litestar.datastructures import State
from litestar.params import FromPath

from fleet_artifacts.adapters.local_blob import LocalBlobStore
from fleet_artifacts.downloads import stream_blob
from fleet_artifacts.errors import NotFound
from fleet_artifacts.routes import per_method


@route(
    "/blobs/{key:path}",
    http_method=[HttpMethod.GET, HttpMethod.HEAD],
    operation_id=per_method("getSignedBlob"),
    tags=["signed URLs"],
)
async def signed_blob(request: Request[Any, Any, Any], state: State, key: FromPath[str]) -> Response[Any]:
    """Serve one blob to the holder of a valid signed URL (Range and ETag supported)."""
    store: LocalBlobStore = state.local_blobs
    key = key.lstrip("/")
    granted = store.signer.verify(key, "r", dict(request.query_params), now=time.time())
    info = await store.info(key)
    if info is None:
        raise NotFound("blob not found")
    return await stream_blob(
        store,
        key,
        size=info.size_bytes,
        content_type=granted["rsct"] or info.content_type,
        content_disposition=granted["rscd"] or "attachment",
        etag=f'"{info.sha256}"' if info.sha256 else None,
        headers=dict(request.headers),
        head=request.method == "HEAD",
    )
