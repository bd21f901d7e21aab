"""Partial document update (``PATCH``) as the SDK's ``patch_item`` sends it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .errors import bad_request, precondition_failed
from .sql_eval import Evaluator
from .sql_parser import parse_condition


def _segments(path: Any) -> list[str]:
    if not isinstance(path, str) or not path.startswith("/") or path == "/":
        raise bad_request(f"Patch path must look like '/a/b', got {path!r}.")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _parent(doc: dict[str, Any], parts: list[str]) -> Any:
    current: Any = doc
    for part in parts[:-1]:
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            raise bad_request(f"Patch path parent '/{'/'.join(parts[:-1])}' does not exist.")
    return current


def _index(container: list[Any], part: str, *, allow_end: bool) -> int:
    if part == "-" and allow_end:
        return len(container)
    if not part.isdigit() or int(part) > len(container) or (int(part) == len(container) and not allow_end):
        raise bad_request(f"Array index {part!r} is out of range.")
    return int(part)


def _apply_one(doc: dict[str, Any], op: dict[str, Any]) -> None:
    kind = op.get("op")
    parts = _segments(op.get("path"))
    parent, last = _parent(doc, parts), parts[-1]
    if kind == "move":
        source = _segments(op.get("from"))
        holder = _parent(doc, source)
        value = _remove(holder, source[-1])
        _apply_one(doc, {"op": "add", "path": op["path"], "value": value})
        return
    if (kind in ("add", "set") and "value" not in op) or (kind in ("replace", "incr") and "value" not in op):
        raise bad_request(f"Patch operation {kind!r} needs a 'value'.")
    if isinstance(parent, dict):
        exists = last in parent
        if kind in ("add", "set"):
            parent[last] = op["value"]
        elif kind == "replace":
            if not exists:
                raise bad_request(f"Cannot replace missing property {op['path']!r}.")
            parent[last] = op["value"]
        elif kind == "remove":
            _remove(parent, last)
        elif kind == "incr":
            parent[last] = _increment(parent.get(last, 0), op["value"], op["path"])
        else:
            raise bad_request(f"Unknown patch operation {kind!r}.")
    elif isinstance(parent, list):
        if kind == "add":
            parent.insert(_index(parent, last, allow_end=True), op["value"])
        elif kind in ("set", "replace"):
            parent[_index(parent, last, allow_end=False)] = op["value"]
        elif kind == "remove":
            _remove(parent, last)
        elif kind == "incr":
            i = _index(parent, last, allow_end=False)
            parent[i] = _increment(parent[i], op["value"], op["path"])
        else:
            raise bad_request(f"Unknown patch operation {kind!r}.")
    else:
        raise bad_request(f"Patch path {op['path']!r} does not point into an object or array.")


def _remove(holder: Any, part: str) -> Any:
    if isinstance(holder, dict):
        if part not in holder:
            raise bad_request(f"Cannot remove missing property {part!r}.")
        return holder.pop(part)
    if isinstance(holder, list):
        return holder.pop(_index(holder, part, allow_end=False))
    raise bad_request(f"Cannot remove {part!r} from a non-container value.")


def _increment(current: Any, delta: Any, path: str) -> Any:
    numbers = (int, float)
    if (
        isinstance(current, bool)
        or isinstance(delta, bool)
        or not isinstance(current, numbers)
        or not isinstance(delta, numbers)
    ):
        raise bad_request(f"incr needs numbers at {path!r}.")
    return current + delta


def patch_function(body: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Builds the update to apply from a PATCH request body.

    Args:
        body: ``{"operations": [...], "condition": "FROM c WHERE ..."}``.

    Returns:
        A function turning the current document into the patched one; it raises
        412 when the condition does not hold.
    """
    if not isinstance(body, dict) or not isinstance(body.get("operations"), list) or not body["operations"]:
        raise bad_request("A patch body needs a non-empty 'operations' list.")
    if len(body["operations"]) > 10:
        raise bad_request("Cosmos allows at most 10 patch operations per request.")
    condition = body.get("condition")
    parsed = parse_condition(condition) if isinstance(condition, str) and condition.strip() else None

    def apply(doc: dict[str, Any]) -> dict[str, Any]:
        if parsed is not None and not Evaluator({}).matches(parsed[1], doc):
            raise precondition_failed(f"The patch condition {condition!r} is not met.")
        for op in body["operations"]:
            if not isinstance(op, dict):
                raise bad_request(f"Malformed patch operation {op!r}.")
            _apply_one(doc, op)
        return doc

    return apply
