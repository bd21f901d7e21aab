"""Runs a parsed query over a container's documents, one page at a time.

Continuation tokens carry the sort key of the last row returned (not an offset),
so deleting already-returned rows between pages neither skips nor repeats rows,
the same guarantee Cosmos gives a paging reaper.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import bad_request
from .sql_ast import Expr, Literal, OrderItem, Param, Path
from .sql_ast import Query as ParsedQuery
from .sql_eval import UNDEFINED, Evaluator, order_compare


@dataclass(frozen=True)
class Row:
    """A document with its stable position in the container's natural order."""

    seq: int
    doc: dict[str, Any]


@dataclass(frozen=True)
class QueryPage:
    """One page of results plus the token for the next page, if any."""

    documents: list[Any]
    continuation: str | None


def fingerprint(*parts: Any) -> str:
    """Hashes whatever identifies a query so a token cannot be replayed elsewhere.

    Args:
        *parts: JSON-serialisable values (query text, parameters, scope...).

    Returns:
        A short hex digest.
    """
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def parameters_from_body(raw: Any) -> dict[str, Any]:
    """Converts the request's ``parameters`` list into a lookup table.

    Args:
        raw: The ``parameters`` member of the query body.

    Returns:
        Values keyed by ``@name``.
    """
    if raw is None:
        return {}
    if not isinstance(raw, list):
        raise bad_request("Query 'parameters' must be a list of {name, value} objects.")
    params: dict[str, Any] = {}
    for item in raw:
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str) or not name.startswith("@") or "value" not in item:
            raise bad_request(f"Malformed query parameter {item!r}; expected {{'name': '@x', 'value': ...}}.")
        params[name] = item["value"]
    return params


def _index_path(path: Path) -> str:
    parts = [str(step.value) for step in path.steps if isinstance(step, Literal)]
    if len(parts) != len(path.steps):
        raise bad_request("ORDER BY paths cannot contain parameters.")
    return "/" + "/".join(parts)


def _normalise_index_path(path: str) -> str:
    for suffix in ("/?", "/*"):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
    return "/".join(part.strip('"') for part in path.split("/"))


def check_composite_index(order_by: tuple[OrderItem, ...], indexing_policy: Mapping[str, Any]) -> None:
    """Rejects a multi-field ORDER BY that Cosmos could not serve from the indexes.

    Args:
        order_by: The ORDER BY terms.
        indexing_policy: The container's indexing policy.

    Raises:
        GatewayError: 400, like Cosmos, when no composite index matches.
    """
    if len(order_by) < 2:
        return
    wanted = [(_index_path(item.path), item.descending) for item in order_by]
    for composite in indexing_policy.get("compositeIndexes") or []:
        have = [
            (
                _normalise_index_path(str(entry.get("path", ""))),
                str(entry.get("order", "ascending")).lower() == "descending",
            )
            for entry in composite
        ]
        if len(have) != len(wanted) or [p for p, _ in have] != [p for p, _ in wanted]:
            continue
        same = all(h == w for (_, h), (_, w) in zip(have, wanted, strict=True))
        flipped = all(h != w for (_, h), (_, w) in zip(have, wanted, strict=True))
        if same or flipped:
            return
    spec = ", ".join(f"{p} {'DESC' if d else 'ASC'}" for p, d in wanted)
    raise bad_request(
        "The order by query does not have a corresponding composite index that it can be served from. "
        f"Add compositeIndexes [{spec}] to the container's indexingPolicy."
    )


def _count_value(expr: Expr | None, evaluator: Evaluator, clause: str) -> int | None:
    if expr is None:
        return None
    value = evaluator.param(expr.name) if isinstance(expr, Param) else getattr(expr, "value", None)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise bad_request(f"{clause} needs a non-negative integer, got {value!r}.")
    return value


def _encode_token(fp: str, returned: int, key: list[Any], seq: int) -> str:
    wire_key = [[0] if v is UNDEFINED else [1, v] for v in key]
    payload = json.dumps({"v": 1, "f": fp, "n": returned, "k": wire_key, "s": seq}, separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode("utf-8")).decode("ascii")


def _decode_token(token: str, fp: str) -> tuple[int, list[Any], int]:
    try:
        payload = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))
        if payload["v"] != 1:
            raise ValueError("version")
        key = [UNDEFINED if item == [0] else item[1] for item in payload["k"]]
        returned, seq, token_fp = int(payload["n"]), int(payload["s"]), payload["f"]
    except (ValueError, KeyError, TypeError, IndexError, binascii.Error, UnicodeError):
        raise bad_request(f"Invalid continuation token {token[:40]!r}.") from None
    if token_fp != fp:
        raise bad_request(
            "Invalid continuation token: it was issued for a different query, partition scope or container."
        )
    return returned, key, seq


def execute(
    query: ParsedQuery,
    rows: Sequence[Row],
    params: Mapping[str, Any],
    *,
    page_size: int | None,
    continuation: str | None,
    query_fingerprint: str,
) -> QueryPage:
    """Runs one page of a query.

    Args:
        query: The parsed query.
        rows: Candidate documents in natural (insertion) order, already scoped
            to the request's partition and stripped of expired items.
        params: Parameter values keyed by ``@name``.
        page_size: Maximum rows to return, or None for no limit.
        continuation: The token from the previous page, if any.
        query_fingerprint: Identity of the query, checked against the token.

    Returns:
        The page.
    """
    evaluator = Evaluator(params)
    matched = [row for row in rows if evaluator.matches(query.where, row.doc)]
    if query.is_aggregate:
        return QueryPage(evaluator.aggregate(query, [row.doc for row in matched]), None)

    keyed = [(evaluator.sort_key(query.order_by, row.doc), row) for row in matched]
    directions = [item.descending for item in query.order_by]

    def compare(a: tuple[list[Any], int], b: tuple[list[Any], int]) -> int:
        for x, y, descending in zip(a[0], b[0], directions, strict=True):
            sign = order_compare(x, y)
            if sign:
                return -sign if descending else sign
        return a[1] - b[1]

    ordering = functools.cmp_to_key(compare)
    keyed.sort(key=lambda item: ordering((item[0], item[1].seq)))

    top = _count_value(query.top, evaluator, "TOP")
    offset = _count_value(query.offset, evaluator, "OFFSET") or 0
    limit = _count_value(query.limit, evaluator, "LIMIT")
    caps = [c for c in (top, limit) if c is not None]
    total_cap = min(caps) if caps else None

    if continuation:
        returned, last_key, last_seq = _decode_token(continuation, query_fingerprint)
        start = len(keyed)
        for index, (key, row) in enumerate(keyed):
            if compare((key, row.seq), (last_key, last_seq)) > 0:
                start = index
                break
    else:
        returned, start = 0, offset

    remaining = len(keyed) - start
    if total_cap is not None:
        remaining = min(remaining, total_cap - returned)
    take = max(0, remaining if page_size is None else min(page_size, remaining))
    chunk = keyed[start : start + take]
    token = None
    if chunk and take < remaining:
        last_key, last_row = chunk[-1]
        token = _encode_token(query_fingerprint, returned + len(chunk), last_key, last_row.seq)
    projected = (evaluator.project(query, row.doc) for _, row in chunk)
    documents = [value for value in projected if value is not UNDEFINED]
    return QueryPage(documents, token)
