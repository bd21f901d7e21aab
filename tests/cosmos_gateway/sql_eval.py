"""Evaluates parsed queries against JSON documents with Cosmos-like semantics.

Cosmos has a third truth value, *undefined*: a missing property, a comparison
between values of different types, or a function applied to the wrong type.
A WHERE clause keeps a row only when it evaluates to exactly ``true``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from typing import Any, Final

from .errors import bad_request, unsupported_query
from .sql_ast import (
    ArrayLit,
    Between,
    Binary,
    Call,
    Expr,
    InList,
    Literal,
    OrderItem,
    Param,
    Path,
    SelectList,
    SelectStar,
    SelectValue,
    Unary,
)
from .sql_ast import Query as ParsedQuery


class _Undefined:
    """Marker for Cosmos's *undefined* value (distinct from JSON null)."""

    _instance: _Undefined | None = None

    def __new__(cls) -> _Undefined:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "undefined"


UNDEFINED: Final = _Undefined()

# Cross-type order used by ORDER BY, lowest first, as Cosmos sorts mixed types.
_TYPE_RANK = {"undefined": 0, "null": 1, "boolean": 2, "number": 3, "string": 4, "array": 5, "object": 6}


def kind_of(value: Any) -> str:
    """Names the JSON type of a value.

    Args:
        value: A JSON value or ``UNDEFINED``.

    Returns:
        One of the keys of the cross-type ordering table.
    """
    if value is UNDEFINED:
        return "undefined"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def json_equal(a: Any, b: Any) -> bool:
    """Deep equality that never equates ``true`` with ``1``.

    Args:
        a: First value.
        b: Second value.

    Returns:
        Whether both have the same JSON type and content.
    """
    kind = kind_of(a)
    if kind != kind_of(b):
        return False
    if kind == "array":
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if kind == "object":
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return bool(a == b)


def order_compare(a: Any, b: Any) -> int:
    """Total order over all values (undefined < null < bools < numbers < strings...).

    Args:
        a: First value.
        b: Second value.

    Returns:
        Negative, zero or positive like a classic ``cmp``.
    """
    ka, kb = kind_of(a), kind_of(b)
    if ka != kb:
        return _TYPE_RANK[ka] - _TYPE_RANK[kb]
    if ka in ("undefined", "null"):
        return 0
    if ka in ("array", "object"):
        a, b = json.dumps(a, sort_keys=True), json.dumps(b, sort_keys=True)
    return int(a > b) - int(a < b)


def _compare(op: str, a: Any, b: Any) -> Any:
    ka, kb = kind_of(a), kind_of(b)
    if ka == "undefined" or ka != kb:
        return UNDEFINED
    if op == "=":
        return json_equal(a, b)
    if op == "!=":
        return not json_equal(a, b)
    if ka in ("array", "object"):
        return UNDEFINED
    sign = order_compare(a, b)
    return {"<": sign < 0, ">": sign > 0, "<=": sign <= 0, ">=": sign >= 0}[op]


def _is_str(*values: Any) -> bool:
    return all(isinstance(v, str) for v in values)


def _string_fn(fn: Callable[[str, str], bool]) -> Callable[[list[Any]], Any]:
    def apply(args: list[Any]) -> Any:
        if not _is_str(args[0], args[1]):
            return UNDEFINED
        if len(args) > 2 and args[2] is True:
            return fn(args[0].lower(), args[1].lower())
        return fn(args[0], args[1])

    return apply


def _array_contains(args: list[Any]) -> Any:
    haystack, needle = args[0], args[1]
    if not isinstance(haystack, list):
        return UNDEFINED
    partial = len(args) > 2 and args[2] is True
    for item in haystack:
        if json_equal(item, needle):
            return True
        if (
            partial
            and isinstance(item, dict)
            and isinstance(needle, dict)
            and all(k in item and json_equal(item[k], v) for k, v in needle.items())
        ):
            return True
    return False


_SCALARS: dict[str, Callable[[list[Any]], Any]] = {
    "IS_DEFINED": lambda a: a[0] is not UNDEFINED,
    "IS_NULL": lambda a: a[0] is None,
    "IS_BOOL": lambda a: kind_of(a[0]) == "boolean",
    "IS_NUMBER": lambda a: kind_of(a[0]) == "number",
    "IS_STRING": lambda a: kind_of(a[0]) == "string",
    "IS_ARRAY": lambda a: kind_of(a[0]) == "array",
    "IS_OBJECT": lambda a: kind_of(a[0]) == "object",
    "IS_PRIMITIVE": lambda a: kind_of(a[0]) in ("null", "boolean", "number", "string"),
    "ARRAY_CONTAINS": _array_contains,
    "ARRAY_LENGTH": lambda a: len(a[0]) if isinstance(a[0], list) else UNDEFINED,
    "STARTSWITH": _string_fn(str.startswith),
    "ENDSWITH": _string_fn(str.endswith),
    "CONTAINS": _string_fn(lambda s, sub: sub in s),
    "LOWER": lambda a: a[0].lower() if _is_str(a[0]) else UNDEFINED,
    "UPPER": lambda a: a[0].upper() if _is_str(a[0]) else UNDEFINED,
    "LENGTH": lambda a: len(a[0]) if _is_str(a[0]) else UNDEFINED,
}


class Evaluator:
    """Evaluates expressions of one query against documents.

    Args:
        params: Parameter values keyed by ``@name``.
    """

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.params = params

    def param(self, name: str) -> Any:
        """Looks up a parameter value.

        Args:
            name: The ``@name`` of the parameter.

        Returns:
            Its value.

        Raises:
            GatewayError: 400 when the query references a parameter that was not sent.
        """
        if name not in self.params:
            raise bad_request(f"Query parameter {name} is referenced but was not supplied.")
        return self.params[name]

    def eval(self, expr: Expr, doc: Any) -> Any:
        """Evaluates an expression for one document.

        Args:
            expr: The expression.
            doc: The document bound to the FROM alias.

        Returns:
            A JSON value or ``UNDEFINED``.
        """
        if isinstance(expr, Literal):
            return expr.value
        if isinstance(expr, Param):
            return self.param(expr.name)
        if isinstance(expr, Path):
            return self.resolve(expr, doc)
        if isinstance(expr, Binary):
            return self._binary(expr, doc)
        if isinstance(expr, Unary):
            value = self.eval(expr.operand, doc)
            return (not value) if isinstance(value, bool) else UNDEFINED
        if isinstance(expr, InList):
            value = self.eval(expr.value, doc)
            if value is UNDEFINED:
                return UNDEFINED
            found = any(json_equal(value, self.eval(item, doc)) for item in expr.items)
            return found != expr.negated
        if isinstance(expr, Between):
            low = _compare(">=", self.eval(expr.value, doc), self.eval(expr.low, doc))
            high = _compare("<=", self.eval(expr.value, doc), self.eval(expr.high, doc))
            both = _and(low, high)
            return (not both) if expr.negated and isinstance(both, bool) else both
        if isinstance(expr, ArrayLit):
            return [v for v in (self.eval(item, doc) for item in expr.items) if v is not UNDEFINED]
        if isinstance(expr, Call) and expr.name in _SCALARS:
            return _SCALARS[expr.name]([self.eval(arg, doc) for arg in expr.args])
        raise unsupported_query(f"cannot evaluate {type(expr).__name__} here")

    def resolve(self, path: Path, doc: Any) -> Any:
        """Follows a property path through a document.

        Args:
            path: The path (its root is the FROM alias).
            doc: The document.

        Returns:
            The value found or ``UNDEFINED``.
        """
        current = doc
        for step in path.steps:
            key = self.eval(step, doc)
            if isinstance(current, dict) and isinstance(key, str):
                current = current.get(key, UNDEFINED)
            elif isinstance(current, list) and kind_of(key) == "number" and float(key).is_integer():
                index = int(key)
                current = current[index] if 0 <= index < len(current) else UNDEFINED
            else:
                return UNDEFINED
        return current

    def _binary(self, expr: Binary, doc: Any) -> Any:
        left = self.eval(expr.left, doc)
        if expr.op == "AND":
            return _and(left, self.eval(expr.right, doc))
        if expr.op == "OR":
            right = self.eval(expr.right, doc)
            if left is True or right is True:
                return True
            if left is False and right is False:
                return False
            return UNDEFINED
        return _compare(expr.op, left, self.eval(expr.right, doc))

    def matches(self, where: Expr | None, doc: Any) -> bool:
        """Applies a WHERE clause.

        Args:
            where: The condition, or None for no filter.
            doc: The document.

        Returns:
            True only when the condition is exactly ``true``.
        """
        return where is None or self.eval(where, doc) is True

    def sort_key(self, order_by: tuple[OrderItem, ...], doc: Any) -> list[Any]:
        """Extracts the ORDER BY values of a document.

        Args:
            order_by: The ORDER BY terms.
            doc: The document.

        Returns:
            One value (possibly ``UNDEFINED``) per term.
        """
        return [self.resolve(item.path, doc) for item in order_by]

    def project(self, query: ParsedQuery, doc: Any) -> Any:
        """Applies the SELECT clause to one document.

        Args:
            query: The parsed query.
            doc: The document.

        Returns:
            The output row, or ``UNDEFINED`` when a ``SELECT VALUE`` yields nothing.
        """
        select = query.select
        if isinstance(select, SelectStar):
            return doc
        if isinstance(select, SelectValue):
            return self.eval(select.expr, doc)
        assert isinstance(select, SelectList)
        row: dict[str, Any] = {}
        for expr, name in select.items:
            value = self.eval(expr, doc)
            if value is not UNDEFINED:
                row[name] = value
        return row

    def aggregate(self, query: ParsedQuery, docs: list[Any]) -> list[Any]:
        """Runs an aggregate SELECT over all matching documents.

        Args:
            query: The parsed query (``query.is_aggregate`` is true).
            docs: The documents that passed the WHERE clause.

        Returns:
            The single result row, or no row when the aggregate is undefined.
        """
        if isinstance(query.select, SelectValue):
            assert isinstance(query.select.expr, Call)
            value = self._fold(query.select.expr, docs)
            return [] if value is UNDEFINED else [value]
        assert isinstance(query.select, SelectList)
        row = {name: self._fold(expr, docs) for expr, name in query.select.items if isinstance(expr, Call)}
        return [{k: v for k, v in row.items() if v is not UNDEFINED}]

    def _fold(self, call: Call, docs: list[Any]) -> Any:
        values = [v for v in (self.eval(call.args[0], doc) for doc in docs) if v is not UNDEFINED]
        if call.name == "COUNT":
            return len(values)
        if call.name in ("SUM", "AVG"):
            if any(kind_of(v) != "number" for v in values):
                return UNDEFINED
            if call.name == "SUM":
                return sum(values)
            return sum(values) / len(values) if values else UNDEFINED
        primitives = [v for v in values if kind_of(v) in ("null", "boolean", "number", "string")]
        if len(primitives) != len(values) or not values:
            return UNDEFINED
        pick = min if call.name == "MIN" else max
        return pick(values, key=functools.cmp_to_key(order_compare))


def _and(left: Any, right: Any) -> Any:
    if left is False or right is False:
        return False
    if left is True and right is True:
        return True
    return UNDEFINED
