"""Change feed in latest-version mode (``A-IM: Incremental Feed``).

What the SDK (azure-cosmos 4.17.1) sends, as ``GET .../docs/`` with ``A-IM``:

* whole container: ``x-ms-documentdb-partitionkeyrangeid: 0`` after reading pkranges;
* ``partition_key=``: the same range id plus ``x-ms-read-key-type:
  EffectivePartitionKeyRange`` and ``x-ms-start-epk``/``x-ms-end-epk`` around the
  key's hash (no partition key header);
* a v1 state (digit-only continuation): optionally the partition key header instead;
* start: nothing for "Beginning", ``If-None-Match: *`` for "Now",
  ``If-Modified-Since`` for a datetime, ``If-None-Match: "<lsn>"`` to resume.

Answers as the service does: documents at their latest version whose LSN is
after the request's position, in LSN order, each with ``_lsn``; the ``etag``
header is the position to resume from. No changes: 304 with the position unchanged.
Deleted and TTL-expired items never appear (latest-version mode has no tombstones).
"""

from __future__ import annotations

import copy
import json
from email.utils import parsedate_to_datetime
from typing import Any

from .epk import effective_partition_key
from .errors import GatewayError, bad_request
from .http_types import Request, Response
from .partition import partition_key_from_header, partition_key_of
from .store import Container, Store, StoredItem

_RANGE_ID = "x-ms-documentdb-partitionkeyrangeid"
_INCREMENTAL = "incremental feed"
# The only range the gateway serves (see the pkranges route).
_ONLY_RANGE = "0"
_SUBSTATUS_RANGE_GONE = 1002


def _etag(lsn: int) -> str:
    return f'"{lsn}"'


class _Scope:
    """Which items of the container one change-feed request covers."""

    def __init__(self, request: Request, coll: Container) -> None:
        self.definition: dict[str, Any] = coll.props["partitionKey"]
        self.paths = coll.partition_paths
        range_id = request.header(_RANGE_ID)
        if range_id is not None and range_id != _ONLY_RANGE:
            raise GatewayError(
                410,
                "Gone",
                f"Partition key range {range_id!r} is gone (the gateway serves only '0').",
                _SUBSTATUS_RANGE_GONE,
            )
        header = request.header("x-ms-documentdb-partitionkey")
        self.partition = (
            None if header is None else partition_key_from_header(header, len(self.paths)).canonical
        )
        self.epk_range: tuple[str, str] | None = None
        key_type = request.header("x-ms-read-key-type")
        if key_type is not None:
            start, end = request.header("x-ms-start-epk"), request.header("x-ms-end-epk")
            if key_type != "EffectivePartitionKeyRange" or start is None or end is None:
                raise bad_request(
                    f"Unsupported change feed scope: x-ms-read-key-type={key_type!r}, "
                    "needs EffectivePartitionKeyRange with x-ms-start-epk and x-ms-end-epk."
                )
            self.epk_range = (start.upper(), end.upper())

    def covers(self, item: StoredItem) -> bool:
        key = partition_key_of(item.doc, self.paths).canonical
        if self.partition is not None and key != self.partition:
            return False
        if self.epk_range is None:
            return True
        epk = effective_partition_key(json.loads(key), self.definition)
        # EPK bounds are min-inclusive, max-exclusive, compared as hex strings like the service.
        return self.epk_range[0] <= epk < self.epk_range[1]


def _position(request: Request) -> tuple[int | None, float | None]:
    """Reads where to start: ``(after_lsn, since_time)``; ``after_lsn`` None means "Now"."""
    if_none_match = request.header("if-none-match")
    if if_none_match == "*":
        return None, None
    if if_none_match is not None:
        raw = if_none_match.strip().strip('"')
        if not raw.isdigit():
            raise bad_request(
                f"Change feed continuation (If-None-Match) {if_none_match!r} is not an LSN etag."
            )
        return int(raw), None
    since = request.header("if-modified-since")
    if since is not None:
        try:
            return 0, parsedate_to_datetime(since).timestamp()
        except (TypeError, ValueError):
            raise bad_request(f"If-Modified-Since {since!r} is not an HTTP date.") from None
    return 0, None


def read_change_feed(store: Store, request: Request, page_size: int | None) -> Response:
    """Serves one change-feed page.

    Args:
        store: The gateway's store.
        request: A ``GET .../docs/`` with an ``A-IM`` header.
        page_size: Most documents to return (None: no limit).

    Returns:
        200 with ``Documents`` and a new ``etag``, or 304 with the position unchanged.

    Raises:
        GatewayError: 400 for the all-versions-and-deletes mode or malformed
            headers, 410/1002 for a partition key range the gateway does not serve.
    """
    a_im = (request.header("a-im") or "").strip().lower()
    if a_im != _INCREMENTAL:
        raise bad_request(
            f"The Cosmos test gateway only serves the latest-version change feed (A-IM: Incremental Feed), "
            f"not {request.header('a-im')!r}."
        )
    db_id, coll_id = request.segments[1], request.segments[3]
    coll, current_lsn, items = store.feed_snapshot(db_id, coll_id)
    scope = _Scope(request, coll)
    after, since = _position(request)
    if after is None:
        # "Now": nothing yet, but hand out the current position to resume from.
        return Response(304, headers={"etag": _etag(current_lsn)})
    changed = sorted(
        (item for item in items if item.lsn > after and (since is None or item.written_at >= since)),
        key=lambda item: item.lsn,
    )
    changed = [item for item in changed if scope.covers(item)]
    if not changed:
        resume = after if request.header("if-none-match") is not None else current_lsn
        return Response(304, headers={"etag": _etag(resume)})
    page = changed if page_size is None else changed[:page_size]
    # A full read has seen every LSN up to the snapshot's; a cut-short page only up to its last item.
    resume = page[-1].lsn if len(page) < len(changed) else current_lsn
    documents = []
    for item in page:
        doc = copy.deepcopy(item.doc)
        doc["_lsn"] = item.lsn
        documents.append(doc)
    body = {"_rid": coll.props["_rid"], "Documents": documents, "_count": len(documents)}
    return Response(200, body, {"etag": _etag(resume), "x-ms-item-count": str(len(documents))})
