"""Partition key values: parsing the request header and extracting from documents."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .errors import bad_request

# The SDK serialises an undefined (absent) partition key value as an empty object.
_UNDEFINED_WIRE: dict[str, Any] = {}


@dataclass(frozen=True)
class PartitionKey:
    """A full partition key value in canonical JSON, comparable with ``==``."""

    canonical: str


def _canonical(values: list[Any]) -> PartitionKey:
    normalised = [int(v) if isinstance(v, float) and v.is_integer() else v for v in values]
    return PartitionKey(json.dumps(normalised, separators=(",", ":"), ensure_ascii=False))


def _check_component(value: Any, *, from_header: bool = False) -> None:
    # Only the header may carry {} (the SDK's spelling of "undefined").
    if isinstance(value, (list, dict)) and not (from_header and value == _UNDEFINED_WIRE):
        raise bad_request(f"Partition key values must be strings, numbers, booleans or null, got {value!r}.")


def partition_key_from_header(header: str | None, components: int) -> PartitionKey:
    """Parses ``x-ms-documentdb-partitionkey``.

    Args:
        header: The raw header, a JSON list such as ``["job-1"]``.
        components: How many values the container's partition key has.

    Returns:
        The canonical key.

    Raises:
        GatewayError: 400 when the header is missing or malformed.
    """
    if header is None:
        raise bad_request(
            "PartitionKey value must be supplied for this operation (x-ms-documentdb-partitionkey)."
        )
    try:
        values = json.loads(header)
    except ValueError:
        raise bad_request(f"Partition key header {header!r} is not JSON.") from None
    if not isinstance(values, list) or len(values) != components:
        raise bad_request(
            f"Partition key header {header!r} must be a JSON list with {components} value(s), "
            "as many as the container's partition key paths."
        )
    for value in values:
        _check_component(value, from_header=True)
    return _canonical(values)


def _split_path(path: str) -> list[str]:
    return [part.strip('"') for part in path.strip("/").split("/")]


def partition_key_of(doc: dict[str, Any], paths: list[str]) -> PartitionKey:
    """Extracts a document's partition key value.

    Args:
        doc: The document.
        paths: The container's partition key paths, e.g. ``["/jobId"]``.

    Returns:
        The canonical key; an absent value counts as undefined, like in Cosmos.
    """
    missing = object()
    values: list[Any] = []
    for path in paths:
        current: Any = doc
        for part in _split_path(path):
            current = current.get(part, missing) if isinstance(current, dict) else missing
        if current is missing:
            values.append(_UNDEFINED_WIRE)
            continue
        _check_component(current)
        values.append(current)
    return _canonical(values)
