"""In-memory databases, containers and items with Cosmos's write rules.

All public methods take the store lock, so the threaded HTTP server can call
them concurrently. Returned documents are deep copies: callers may mutate them.
"""

from __future__ import annotations

import copy
import itertools
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import (
    SUBSTATUS_PARTITION_KEY_MISMATCH,
    GatewayError,
    bad_request,
    conflict,
    not_found,
    precondition_failed,
)
from .partition import PartitionKey, partition_key_from_header, partition_key_of
from .query import Row
from .validation import DEFAULT_INDEXING_POLICY, SYSTEM_FIELDS, new_etag, validate_id, validate_ttl

_STALE = "One of the specified pre-condition is not met (the if-match etag is stale)."


@dataclass
class StoredItem:
    """One document plus bookkeeping the client never sees."""

    doc: dict[str, Any]
    seq: int
    written_at: float
    # Log sequence number of this version: the change feed's position marker.
    lsn: int = 0


@dataclass
class Container:
    """A container: its properties and its items keyed by (partition key, id)."""

    props: dict[str, Any]
    items: dict[tuple[str, str], StoredItem] = field(default_factory=dict)
    # Last LSN handed out. Cosmos counts per physical partition; the gateway
    # serves one partition key range, so one counter per container is exact.
    lsn: int = 0

    @property
    def partition_paths(self) -> list[str]:
        """The partition key paths, e.g. ``["/jobId"]``."""
        return list(self.props["partitionKey"]["paths"])


@dataclass
class Database:
    """A database and its containers keyed by id."""

    props: dict[str, Any]
    containers: dict[str, Container] = field(default_factory=dict)


class Store:
    """The whole account's data.

    Args:
        clock: Returns the current time in seconds; injectable so TTL can be tested
            without sleeping.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.lock = threading.RLock()
        self.databases: dict[str, Database] = {}
        self._rids = itertools.count(1)
        self._seqs = itertools.count(1)

    def _system_fields(self, body: dict[str, Any], self_link: str, rid: str) -> dict[str, Any]:
        for name in SYSTEM_FIELDS:
            body.pop(name, None)
        body.update({"_rid": rid, "_self": self_link, "_etag": new_etag(), "_ts": int(self.clock())})
        return body

    def _new_rid(self) -> str:
        return uuid.UUID(int=next(self._rids)).hex[-12:]

    # -- databases ---------------------------------------------------------
    def create_database(self, body: dict[str, Any]) -> dict[str, Any]:
        """Creates a database (409 if it exists)."""
        with self.lock:
            db_id = validate_id(body.get("id"), "database")
            if db_id in self.databases:
                raise conflict(f"Database '{db_id}' already exists.")
            rid = self._new_rid()
            props = self._system_fields(copy.deepcopy(body), f"dbs/{rid}/", rid)
            props.update({"_colls": "colls/", "_users": "users/"})
            self.databases[db_id] = Database(props)
            return copy.deepcopy(props)

    def database(self, db_id: str) -> Database:
        """Looks up a database (404 if missing)."""
        with self.lock:
            found = self.databases.get(db_id)
            if found is None:
                raise not_found(f"Database '{db_id}' does not exist.")
            return found

    def read_database(self, db_id: str) -> dict[str, Any]:
        """Returns a copy of a database's properties (404 if missing)."""
        with self.lock:
            return copy.deepcopy(self.database(db_id).props)

    def delete_database(self, db_id: str) -> None:
        """Deletes a database and everything in it."""
        with self.lock:
            self.database(db_id)
            del self.databases[db_id]

    # -- containers --------------------------------------------------------
    def create_container(self, db_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """Creates a container from its posted definition (409 if it exists)."""
        with self.lock:
            db = self.database(db_id)
            coll_id = validate_id(body.get("id"), "container")
            if coll_id in db.containers:
                raise conflict(f"Container '{coll_id}' already exists in database '{db_id}'.")
            props = self._container_props(body)
            rid = self._new_rid()
            self._system_fields(props, f"dbs/{db.props['_rid']}/colls/{rid}/", rid)
            props.update({"_docs": "docs/", "_sprocs": "sprocs/", "_triggers": "triggers/", "_udfs": "udfs/"})
            db.containers[coll_id] = Container(props)
            return copy.deepcopy(props)

    def _container_props(self, body: dict[str, Any]) -> dict[str, Any]:
        props = copy.deepcopy(body)
        pk = props.get("partitionKey")
        paths = pk.get("paths") if isinstance(pk, dict) else None
        if (
            not isinstance(pk, dict)
            or not isinstance(paths, list)
            or not paths
            or not all(isinstance(p, str) and p.startswith("/") for p in paths)
        ):
            raise bad_request("A container needs partitionKey.paths, e.g. {'paths': ['/jobId']}.")
        pk.setdefault("kind", "Hash" if len(paths) == 1 else "MultiHash")
        if "defaultTtl" in props and props["defaultTtl"] is not None:
            validate_ttl(props["defaultTtl"], "defaultTtl")
        props.setdefault("indexingPolicy", copy.deepcopy(DEFAULT_INDEXING_POLICY))
        return props

    def container(self, db_id: str, coll_id: str) -> Container:
        """Looks up a container (404 if it or its database is missing)."""
        with self.lock:
            found = self.database(db_id).containers.get(coll_id)
            if found is None:
                raise not_found(f"Container '{coll_id}' does not exist in database '{db_id}'.")
            return found

    def read_container(self, db_id: str, coll_id: str) -> dict[str, Any]:
        """Returns a copy of a container's properties (404 if missing)."""
        with self.lock:
            return copy.deepcopy(self.container(db_id, coll_id).props)

    def replace_container(self, db_id: str, coll_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """Replaces a container's settings; the partition key cannot change."""
        with self.lock:
            current = self.container(db_id, coll_id)
            if body.get("id") != coll_id:
                raise bad_request("The container id in the body must match the URL.")
            props = self._container_props(body)
            if props["partitionKey"]["paths"] != current.partition_paths:
                raise bad_request("The partition key of a container cannot be changed.")
            old = current.props
            current.props = self._system_fields(props, old["_self"], old["_rid"])
            for name in ("_docs", "_sprocs", "_triggers", "_udfs"):
                current.props[name] = old[name]
            return copy.deepcopy(current.props)

    def delete_container(self, db_id: str, coll_id: str) -> None:
        """Deletes a container and its items."""
        with self.lock:
            self.container(db_id, coll_id)
            del self.databases[db_id].containers[coll_id]

    # -- items -------------------------------------------------------------
    def _expired(self, coll: Container, item: StoredItem) -> bool:
        default_ttl = coll.props.get("defaultTtl")
        if default_ttl is None:
            return False
        ttl = item.doc.get("ttl", default_ttl)
        return bool(ttl != -1 and self.clock() >= item.written_at + ttl)

    def _live(self, coll: Container, key: tuple[str, str]) -> StoredItem | None:
        item = coll.items.get(key)
        if item is not None and self._expired(coll, item):
            # Lazy expiry: the item vanishes the first time anyone looks at it.
            del coll.items[key]
            return None
        return item

    def _checked_pk(
        self, coll: Container, header: str | None, doc: dict[str, Any] | None = None
    ) -> PartitionKey:
        pk = partition_key_from_header(header, len(coll.partition_paths))
        if doc is not None:
            from_doc = partition_key_of(doc, coll.partition_paths)
            if from_doc.canonical != pk.canonical:
                raise GatewayError(
                    400,
                    "BadRequest",
                    f"PartitionKey extracted from document ({from_doc.canonical}) doesn't match the one "
                    f"specified in the header ({pk.canonical}).",
                    SUBSTATUS_PARTITION_KEY_MISMATCH,
                )
        return pk

    def _write(
        self, coll: Container, key: tuple[str, str], body: dict[str, Any], old: StoredItem | None
    ) -> dict[str, Any]:
        if "ttl" in body:
            validate_ttl(body["ttl"], "Item ttl")
        rid = old.doc["_rid"] if old else self._new_rid()
        doc = self._system_fields(copy.deepcopy(body), f"{coll.props['_self']}docs/{rid}/", rid)
        doc["_attachments"] = "attachments/"
        seq = old.seq if old else next(self._seqs)
        coll.lsn += 1
        coll.items[key] = StoredItem(doc, seq, self.clock(), coll.lsn)
        return copy.deepcopy(doc)

    def create_item(
        self,
        db_id: str,
        coll_id: str,
        pk_header: str | None,
        body: dict[str, Any],
        *,
        upsert: bool,
        if_match: str | None,
    ) -> tuple[int, dict[str, Any]]:
        """Creates (or, with ``upsert``, creates or replaces) an item.

        Returns:
            ``(status, document)``: 201 for a new item, 200 for an upserted one.
        """
        with self.lock:
            coll = self.container(db_id, coll_id)
            item_id = validate_id(body.get("id"), "item")
            pk = self._checked_pk(coll, pk_header, body)
            key = (pk.canonical, item_id)
            old = self._live(coll, key)
            if old is not None and not upsert:
                raise conflict(f"Entity with id '{item_id}' already exists in partition {pk.canonical}.")
            if old is not None and if_match not in (None, "*", old.doc["_etag"]):
                raise precondition_failed(_STALE)
            if old is None and upsert and if_match not in (None, "*"):
                raise precondition_failed("One of the specified pre-condition is not met (no such item).")
            return (200 if old else 201), self._write(coll, key, body, old)

    def read_item(self, db_id: str, coll_id: str, item_id: str, pk_header: str | None) -> dict[str, Any]:
        """Point-reads an item (404 if missing or expired)."""
        with self.lock:
            coll = self.container(db_id, coll_id)
            return copy.deepcopy(self._existing(coll, item_id, pk_header).doc)

    def _existing(self, coll: Container, item_id: str, pk_header: str | None) -> StoredItem:
        pk = self._checked_pk(coll, pk_header)
        item = self._live(coll, (pk.canonical, item_id))
        if item is None:
            raise not_found(f"Entity with id '{item_id}' does not exist in partition {pk.canonical}.")
        return item

    def replace_item(
        self,
        db_id: str,
        coll_id: str,
        item_id: str,
        pk_header: str | None,
        body: dict[str, Any],
        if_match: str | None,
    ) -> dict[str, Any]:
        """Replaces an existing item, honouring ``if-match``."""
        with self.lock:
            coll = self.container(db_id, coll_id)
            if body.get("id") != item_id:
                raise bad_request("The item id in the body must match the id in the URL.")
            self._checked_pk(coll, pk_header, body)
            old = self._existing(coll, item_id, pk_header)
            if if_match not in (None, "*", old.doc["_etag"]):
                raise precondition_failed(_STALE)
            pk = self._checked_pk(coll, pk_header)
            return self._write(coll, (pk.canonical, item_id), body, old)

    def delete_item(
        self, db_id: str, coll_id: str, item_id: str, pk_header: str | None, if_match: str | None
    ) -> None:
        """Deletes an item, honouring ``if-match``."""
        with self.lock:
            coll = self.container(db_id, coll_id)
            old = self._existing(coll, item_id, pk_header)
            if if_match not in (None, "*", old.doc["_etag"]):
                raise precondition_failed(_STALE)
            pk = self._checked_pk(coll, pk_header)
            del coll.items[(pk.canonical, item_id)]

    def delete_partition(self, db_id: str, coll_id: str, pk_header: str | None) -> int:
        """Deletes every item of one logical partition at once.

        Cosmos does this in the background; doing it synchronously is the
        simplest behaviour a caller can rely on.

        Returns:
            How many items were removed.
        """
        with self.lock:
            coll = self.container(db_id, coll_id)
            wanted = self._checked_pk(coll, pk_header).canonical
            doomed = [key for key in coll.items if key[0] == wanted]
            for key in doomed:
                del coll.items[key]
            return len(doomed)

    def patch_item(
        self,
        db_id: str,
        coll_id: str,
        item_id: str,
        pk_header: str | None,
        apply: Callable[[dict[str, Any]], dict[str, Any]],
        if_match: str | None,
    ) -> dict[str, Any]:
        """Applies ``apply`` to a copy of an item and stores the result atomically."""
        with self.lock:
            coll = self.container(db_id, coll_id)
            old = self._existing(coll, item_id, pk_header)
            if if_match not in (None, "*", old.doc["_etag"]):
                raise precondition_failed(_STALE)
            new_body = apply(copy.deepcopy(old.doc))
            if new_body.get("id") != item_id:
                raise bad_request("A patch cannot change the item id.")
            self._checked_pk(coll, pk_header, new_body)
            pk = self._checked_pk(coll, pk_header)
            return self._write(coll, (pk.canonical, item_id), new_body, old)

    def scan(self, db_id: str, coll_id: str, pk_header: str | None) -> tuple[Container, list[Row]]:
        """Lists the live items a query may see, in natural order.

        Args:
            db_id: Database id.
            coll_id: Container id.
            pk_header: The partition key header, or None for every partition.

        Returns:
            The container and deep copies of the rows in scope.
        """
        with self.lock:
            coll = self.container(db_id, coll_id)
            wanted = None if pk_header is None else self._checked_pk(coll, pk_header).canonical
            rows = []
            for key in list(coll.items):
                if wanted is not None and key[0] != wanted:
                    continue
                item = self._live(coll, key)
                if item is not None:
                    rows.append(Row(item.seq, copy.deepcopy(item.doc)))
            rows.sort(key=lambda row: row.seq)
            return coll, rows

    def feed_snapshot(self, db_id: str, coll_id: str) -> tuple[Container, int, list[StoredItem]]:
        """Takes a consistent picture of a container for one change-feed read.

        Args:
            db_id: Database id.
            coll_id: Container id.

        Returns:
            The container, its current LSN and copies of its live items; taken
            under the lock, so every item with an LSN up to that one is included.
        """
        with self.lock:
            coll = self.container(db_id, coll_id)
            live = [self._live(coll, key) for key in list(coll.items)]
            items = [
                StoredItem(copy.deepcopy(i.doc), i.seq, i.written_at, i.lsn) for i in live if i is not None
            ]
            return coll, coll.lsn, items
