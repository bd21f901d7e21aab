"""Transactional batch: ``container.execute_item_batch`` as the SDK sends it.

Wire shape (azure-cosmos 4.17.1): ``POST .../docs/`` with headers
``x-ms-cosmos-is-batch-request: True``, ``x-ms-cosmos-batch-atomic: True``,
``x-ms-cosmos-batch-continue-on-error: False`` and the partition key header; the
body is a JSON list of operations such as ``{"operationType": "Patch", "id": ...,
"resourceBody": {"operations": [...], "condition": "FROM c WHERE ..."},
"ifMatch": "<etag>"}``.

Answers, as the service does: 200 and one result per operation when all apply;
otherwise 207 Multi-Status where the failing operation carries its own status
and every other one 424 Failed Dependency, with nothing written. The SDK turns a
207 into ``CosmosBatchOperationError``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .errors import GatewayError, bad_request
from .partition import partition_key_from_header
from .patch import patch_function
from .store import Store

# Cosmos's limit on operations in one transactional batch.
MAX_OPERATIONS = 100
_FAILED_DEPENDENCY = 424
_MULTI_STATUS = 207
# What each operation type needs besides ``operationType``.
_REQUIRED = {
    "Create": ("resourceBody",),
    "Upsert": ("resourceBody",),
    "Replace": ("id", "resourceBody"),
    "Patch": ("id", "resourceBody"),
    "Read": ("id",),
    "Delete": ("id",),
}

Result = dict[str, Any]


def _validate(operations: Any) -> list[dict[str, Any]]:
    # Malformed requests fail as a whole (400), before anything runs, like the service.
    if not isinstance(operations, list) or not operations:
        raise bad_request("A batch request body must be a non-empty JSON list of operations.")
    if len(operations) > MAX_OPERATIONS:
        raise bad_request(
            "Batch request has more operations than what is supported "
            f"({len(operations)} > {MAX_OPERATIONS})."
        )
    for index, op in enumerate(operations):
        kind = op.get("operationType") if isinstance(op, dict) else None
        if kind not in _REQUIRED:
            raise bad_request(f"Batch operation {index} has an unknown operationType {kind!r}.")
        missing = [name for name in _REQUIRED[kind] if name not in op]
        if missing:
            raise bad_request(f"Batch operation {index} ({kind}) is missing {missing}.")
        if "ifNoneMatch" in op and kind != "Read":
            # Loud rather than approximated: the gateway does not model it on writes.
            raise bad_request(f"Batch operation {index}: ifNoneMatch is only modelled on Read.")
    return operations


def _ok(status: int, doc: dict[str, Any] | None) -> Result:
    result: Result = {"statusCode": status, "requestCharge": 1.0}
    if doc is not None:
        result["eTag"] = doc["_etag"]
        result["resourceBody"] = doc
    return result


class _Runner:
    """Runs single operations against one container and logical partition."""

    def __init__(self, store: Store, db_id: str, coll_id: str, pk_header: str | None) -> None:
        self.store, self.db_id, self.coll_id, self.pk = store, db_id, coll_id, pk_header

    def run(self, op: dict[str, Any]) -> Result:
        handlers: dict[str, Callable[[dict[str, Any]], Result]] = {
            "Create": self._create,
            "Upsert": self._create,
            "Replace": self._replace,
            "Patch": self._patch,
            "Read": self._read,
            "Delete": self._delete,
        }
        return handlers[op["operationType"]](op)

    def _body(self, op: dict[str, Any]) -> dict[str, Any]:
        body = op["resourceBody"]
        if not isinstance(body, dict):
            raise bad_request("A batch resourceBody must be a JSON object.")
        return body

    def _create(self, op: dict[str, Any]) -> Result:
        status, doc = self.store.create_item(
            self.db_id,
            self.coll_id,
            self.pk,
            self._body(op),
            upsert=op["operationType"] == "Upsert",
            if_match=op.get("ifMatch"),
        )
        return _ok(status, doc)

    def _replace(self, op: dict[str, Any]) -> Result:
        doc = self.store.replace_item(
            self.db_id, self.coll_id, op["id"], self.pk, self._body(op), op.get("ifMatch")
        )
        return _ok(200, doc)

    def _patch(self, op: dict[str, Any]) -> Result:
        # The same body as a PATCH request: {"operations": [...], "condition": "..."}.
        apply = patch_function(op["resourceBody"])
        doc = self.store.patch_item(self.db_id, self.coll_id, op["id"], self.pk, apply, op.get("ifMatch"))
        return _ok(200, doc)

    def _read(self, op: dict[str, Any]) -> Result:
        doc = self.store.read_item(self.db_id, self.coll_id, op["id"], self.pk)
        if op.get("ifMatch") not in (None, "*", doc["_etag"]):
            raise GatewayError(412, "PreconditionFailed", "The if-match etag of a batch read is stale.")
        if op.get("ifNoneMatch") in ("*", doc["_etag"]):
            return {"statusCode": 304, "requestCharge": 1.0, "eTag": doc["_etag"]}
        return _ok(200, doc)

    def _delete(self, op: dict[str, Any]) -> Result:
        self.store.delete_item(self.db_id, self.coll_id, op["id"], self.pk, op.get("ifMatch"))
        return _ok(204, None)


def execute_batch(
    store: Store, db_id: str, coll_id: str, pk_header: str | None, operations: Any
) -> tuple[int, list[Result]]:
    """Runs a transactional batch atomically within one logical partition.

    Args:
        store: The gateway's store.
        db_id: Database id.
        coll_id: Container id.
        pk_header: ``x-ms-documentdb-partitionkey``; every operation must fall in it.
        operations: The decoded request body.

    Returns:
        ``(http_status, results)``: 200 with every result, or 207 with the failing
        operation's result and 424 for all others (and nothing written).

    Raises:
        GatewayError: 400 for a malformed or oversized batch, 404 for a missing container.
    """
    ops = _validate(operations)
    runner = _Runner(store, db_id, coll_id, pk_header)
    with store.lock:
        coll = store.container(db_id, coll_id)
        if pk_header is None:
            raise bad_request("A transactional batch needs the x-ms-documentdb-partitionkey header.")
        partition_key_from_header(pk_header, len(coll.partition_paths))  # malformed -> whole batch 400
        # Items are replaced, never mutated in place, so a shallow copy is a full undo log.
        saved_items, saved_lsn = dict(coll.items), coll.lsn
        results: list[Result] = []
        for index, op in enumerate(ops):
            try:
                results.append(runner.run(op))
            except GatewayError as exc:
                coll.items, coll.lsn = saved_items, saved_lsn
                failed: Result = {"statusCode": exc.status, "requestCharge": 1.0}
                if exc.substatus is not None:
                    failed["subStatusCode"] = exc.substatus
                dependent: Result = {"statusCode": _FAILED_DEPENDENCY, "requestCharge": 0.0}
                return _MULTI_STATUS, [failed if i == index else dict(dependent) for i in range(len(ops))]
        return 200, results
