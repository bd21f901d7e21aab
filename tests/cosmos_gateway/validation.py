"""Value rules shared by the store: ids, TTLs, etags and default container settings."""

from __future__ import annotations

import uuid
from typing import Any

from .errors import bad_request

DEFAULT_INDEXING_POLICY: dict[str, Any] = {
    "indexingMode": "consistent",
    "automatic": True,
    "includedPaths": [{"path": "/*"}],
    "excludedPaths": [{"path": '/"_etag"/?'}],
}
SYSTEM_FIELDS = ("_rid", "_self", "_etag", "_ts", "_attachments", "_lsn")
_FORBIDDEN_ID_CHARS = "/\\?#"


def new_etag() -> str:
    """Returns a fresh quoted etag, as Cosmos sends them."""
    return f'"{uuid.uuid4()}"'


def validate_id(value: Any, what: str) -> str:
    """Checks a resource id the way Cosmos does.

    Args:
        value: The posted ``id``.
        what: ``database``, ``container`` or ``item``, for the message.

    Returns:
        The id.

    Raises:
        GatewayError: 400 for a missing, empty or ill-formed id.
    """
    if not isinstance(value, str) or not value:
        raise bad_request(f"The {what} 'id' must be a non-empty string.")
    if any(ch in value for ch in _FORBIDDEN_ID_CHARS):
        raise bad_request(f"The {what} id {value!r} contains a character Cosmos does not allow.")
    return value


def validate_ttl(value: Any, what: str) -> None:
    """Checks a ``defaultTtl`` or item ``ttl``: -1 or a positive number of seconds.

    Args:
        value: The value to check.
        what: Names the field in the message.

    Raises:
        GatewayError: 400 for anything else.
    """
    if isinstance(value, bool) or not isinstance(value, int) or not (value == -1 or value > 0):
        raise bad_request(f"{what} must be -1 or a positive integer number of seconds, got {value!r}.")
