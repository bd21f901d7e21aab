"""Maps Cosmos REST paths and verbs onto store operations and the query engine."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .batch import execute_batch
from .changefeed import read_change_feed
from .errors import GatewayError, bad_request, not_found
from .http_types import Request, Response
from .patch import patch_function
from .query import Row, check_composite_index, execute, fingerprint, parameters_from_body
from .sql_parser import parse_query
from .stats import QueryRecord

if TYPE_CHECKING:
    from .gateway import CosmosGateway

_PARTITION_KEY = "x-ms-documentdb-partitionkey"
_CROSS_PARTITION = "x-ms-documentdb-query-enablecrosspartition"
_RANGE_ID = "x-ms-documentdb-partitionkeyrangeid"
_FEED_KEYS = {"dbs": "Databases", "colls": "DocumentCollections", "docs": "Documents"}
_SINGLE_RANGE = {"id": "0", "minInclusive": "", "maxExclusive": "FF", "status": "online", "parents": []}
_KIND_BY_DEPTH = {1: "database", 2: "database", 3: "container", 4: "container", 5: "item", 6: "item"}
_VERB_PREFIX = {"GET": "read", "PUT": "replace", "DELETE": "delete", "PATCH": "patch"}


def _method_not_allowed(request: Request) -> GatewayError:
    path = "/" + "/".join(request.segments)
    return GatewayError(405, "MethodNotAllowed", f"{request.verb} is not supported on {path} by the gateway.")


def _query_text(body: Any) -> tuple[str, list[Any] | None]:
    if isinstance(body, str):
        return body, None
    if not isinstance(body, dict) or not isinstance(body.get("query"), str):
        raise bad_request("A query body must be {'query': '...', 'parameters': [...]}.")
    return body["query"], body.get("parameters")


class Router:
    """Dispatches decoded requests for one gateway.

    Args:
        gateway: The owning gateway (its store, stats and settings).
    """

    def __init__(self, gateway: CosmosGateway) -> None:
        self.gw = gateway
        self.store = gateway.store

    def operation(self, request: Request) -> str:
        """Names the operation a request performs (used by stats and fault injection).

        Args:
            request: The request.

        Returns:
            A short name such as ``query``, ``read_item`` or ``create_database``.
        """
        seg, verb = request.segments, request.verb
        if not seg:
            return "account"
        if len(seg) == 6 and seg[4] == "operations":
            return "delete_partition"
        kind = _KIND_BY_DEPTH.get(len(seg), "?")
        if len(seg) % 2 == 1:
            if request.flag("x-ms-cosmos-is-query-plan-request"):
                return "query_plan"
            if seg[-1] == "pkranges":
                return "pkranges"
            if request.flag("x-ms-cosmos-is-batch-request"):
                return "batch"
            if verb == "GET" and request.header("a-im"):
                return "change_feed"
            if verb == "POST" and request.flag("x-ms-documentdb-isquery"):
                return "query"
            if verb == "POST" and kind == "item" and request.flag("x-ms-documentdb-is-upsert"):
                return "upsert_item"
            return {"POST": f"create_{kind}", "GET": "read_feed"}.get(verb, "?")
        return f"{_VERB_PREFIX.get(verb, '?')}_{kind}"

    def route(self, request: Request) -> Response:
        """Handles one request.

        Args:
            request: The decoded, authenticated request.

        Returns:
            The response to send.

        Raises:
            GatewayError: For every Cosmos-style error.
        """
        seg, verb = request.segments, request.verb
        if not seg:
            if verb != "GET":
                raise _method_not_allowed(request)
            return Response(200, self.gw.account_document(request.host))
        known = (
            seg[0] == "dbs"
            and len(seg) <= 6
            and (len(seg) < 3 or seg[2] == "colls")
            and (len(seg) < 5 or seg[4] in ("docs", "pkranges", "operations"))
        )
        if not known:
            raise not_found(f"The gateway does not serve /{'/'.join(seg)} (only dbs, colls, docs, pkranges).")
        if len(seg) % 2 == 1:
            return self._feed(request)
        handlers: dict[int, Callable[[Request], Response]] = {
            2: self._database,
            4: self._container,
            6: self._item,
        }
        return handlers[len(seg)](request)

    # -- resource handlers ---------------------------------------------------
    def _database(self, request: Request) -> Response:
        db_id = request.segments[1]
        if request.verb == "GET":
            return Response(200, self.store.read_database(db_id))
        if request.verb == "DELETE":
            self.store.delete_database(db_id)
            return Response(204)
        raise _method_not_allowed(request)

    def _container(self, request: Request) -> Response:
        db_id, coll_id = request.segments[1], request.segments[3]
        if request.verb == "GET":
            return Response(200, self.store.read_container(db_id, coll_id))
        if request.verb == "PUT":
            return Response(200, self.store.replace_container(db_id, coll_id, request.json()))
        if request.verb == "DELETE":
            self.store.delete_container(db_id, coll_id)
            return Response(204)
        raise _method_not_allowed(request)

    def _item(self, request: Request) -> Response:
        _, db_id, _, coll_id, kind, item_id = request.segments
        pk, if_match = request.header(_PARTITION_KEY), request.header("if-match")
        if kind == "operations" and item_id == "partitionkeydelete" and request.verb == "POST":
            self.gw.stats.bump("writes")
            self.store.delete_partition(db_id, coll_id, pk)
            return Response(200)
        if kind != "docs":
            raise not_found(f"The gateway does not serve /{'/'.join(request.segments)}.")
        if request.verb == "GET":
            self.gw.stats.bump("point_reads")
            doc = self.store.read_item(db_id, coll_id, item_id, pk)
            if request.header("if-none-match") == doc["_etag"]:
                return Response(304, headers={"etag": doc["_etag"]})
            return Response(200, doc)
        self.gw.stats.bump("writes")
        if request.verb == "PUT":
            body = request.json()
            if not isinstance(body, dict):
                raise bad_request("An item must be a JSON object.")
            return Response(200, self.store.replace_item(db_id, coll_id, item_id, pk, body, if_match))
        if request.verb == "DELETE":
            self.store.delete_item(db_id, coll_id, item_id, pk, if_match)
            return Response(204)
        if request.verb == "PATCH":
            apply = patch_function(request.json())
            return Response(200, self.store.patch_item(db_id, coll_id, item_id, pk, apply, if_match))
        raise _method_not_allowed(request)

    def _feed(self, request: Request) -> Response:
        seg, verb = request.segments, request.verb
        if seg[-1] == "pkranges":
            return self._pkranges(request)
        if request.flag("x-ms-cosmos-is-query-plan-request"):
            return self._query_plan(request)
        if request.flag("x-ms-cosmos-is-batch-request") and verb == "POST" and len(seg) == 5:
            self.gw.stats.bump("batches")
            if not request.flag("x-ms-cosmos-batch-atomic"):
                # The SDK's execute_item_batch always asks for atomic; bulk mode is not modelled.
                raise bad_request("The gateway only models atomic batches (x-ms-cosmos-batch-atomic: True).")
            status, results = execute_batch(
                self.store, seg[1], seg[3], request.header(_PARTITION_KEY), request.json()
            )
            return Response(status, results)
        if request.flag("x-ms-cosmos-is-batch-request"):
            raise bad_request("A transactional batch is a POST to a container's docs feed.")
        if verb == "POST" and request.flag("x-ms-documentdb-isquery"):
            return self._query(request, *_query_text(request.json()))
        if verb == "GET":
            if request.header("a-im") and len(seg) == 5:
                self.gw.stats.bump("change_feed_reads")
                return read_change_feed(self.store, request, self._page_size(request))
            if request.header("a-im"):
                raise bad_request("The gateway serves the change feed of documents only.")
            return self._query(request, "SELECT * FROM root", None, feed=True)
        if verb != "POST":
            raise _method_not_allowed(request)
        body = request.json()
        if not isinstance(body, dict):
            raise bad_request("A resource body must be a JSON object.")
        if len(seg) == 1:
            return Response(201, self.store.create_database(body))
        if len(seg) == 3:
            return Response(201, self.store.create_container(seg[1], body))
        self.gw.stats.bump("writes")
        status, doc = self.store.create_item(
            seg[1],
            seg[3],
            request.header(_PARTITION_KEY),
            body,
            upsert=request.flag("x-ms-documentdb-is-upsert"),
            if_match=request.header("if-match"),
        )
        return Response(status, doc)

    def _pkranges(self, request: Request) -> Response:
        coll = self.store.container(request.segments[1], request.segments[3])
        etag = f'"{coll.props["_rid"]}-ranges"'
        if request.header("if-none-match") == etag:
            return Response(304, headers={"etag": etag})
        body = {"_rid": coll.props["_rid"], "PartitionKeyRanges": [_SINGLE_RANGE], "_count": 1}
        return Response(200, body, {"etag": etag})

    def _query_plan(self, request: Request) -> Response:
        # The gateway only sends 1004 for queries it cannot evaluate, so a plan
        # request always means the test used an unsupported query: say so.
        self.gw.stats.bump("query_plan_requests")
        text, _ = _query_text(request.json())
        try:
            parse_query(text)
            reason = "the gateway evaluates every query itself and serves no query plans"
        except GatewayError as exc:
            reason = exc.message
        raise GatewayError(
            400,
            "BadRequest",
            f"Cosmos test gateway: query plan requested for {text!r}; {reason}",
            1004,
        )

    def _query(
        self, request: Request, text: str, raw_params: list[Any] | None, *, feed: bool = False
    ) -> Response:
        seg = request.segments
        pk = request.header(_PARTITION_KEY)
        cross = pk is None
        allowed = request.flag(_CROSS_PARTITION) or request.header(_RANGE_ID) is not None
        if cross and not feed and len(seg) == 5 and not allowed:
            raise bad_request(
                "Cross partition query is required but disabled. Please set "
                "x-ms-documentdb-query-enablecrosspartition to true, specify x-ms-documentdb-partitionkey, "
                "or revise your query to avoid this exception."
            )
        params = parameters_from_body(raw_params)
        try:
            parsed = parse_query(text)
        except GatewayError:
            self.gw.stats.bump("unsupported_queries")
            raise
        if len(seg) == 5:
            coll, rows = self.store.scan(seg[1], seg[3], pk)
            if self.gw.enforce_composite_indexes:
                check_composite_index(parsed.order_by, coll.props.get("indexingPolicy") or {})
            resumed = request.header("x-ms-continuation") is not None
            self.gw.stats.record_query(QueryRecord(text, params, pk, cross, resumed, feed))
        else:
            rows = self._resource_rows(seg)
        page_size = self._page_size(request)
        scope = [pk, request.header(_RANGE_ID), "/".join(seg)]
        page = execute(
            parsed,
            rows,
            params,
            page_size=page_size,
            continuation=request.header("x-ms-continuation"),
            query_fingerprint=fingerprint(text, raw_params, scope),
        )
        body = {"_rid": "", _FEED_KEYS[seg[-1]]: page.documents, "_count": len(page.documents)}
        headers = {"x-ms-item-count": str(len(page.documents))}
        if page.continuation:
            headers["x-ms-continuation"] = page.continuation
        return Response(200, body, headers)

    def _resource_rows(self, seg: list[str]) -> list[Row]:
        with self.store.lock:
            if len(seg) == 1:
                props = [db.props for db in self.store.databases.values()]
            else:
                props = [c.props for c in self.store.database(seg[1]).containers.values()]
            return [Row(i, copy.deepcopy(p)) for i, p in enumerate(props)]

    def _page_size(self, request: Request) -> int | None:
        raw = request.header("x-ms-max-item-count")
        if raw is None:
            return self.gw.default_page_size
        try:
            size = int(raw)
        except ValueError:
            raise bad_request(f"x-ms-max-item-count must be an integer, got {raw!r}.") from None
        if size == -1:
            return None
        if size <= 0:
            raise bad_request(f"x-ms-max-item-count must be positive or -1, got {size}.")
        return size
