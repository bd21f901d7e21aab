"""Master-key signature checks, mirroring how the SDK signs requests."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import urllib.parse
from collections.abc import Mapping
from email.utils import parsedate_to_datetime

from .errors import GatewayError

# The public key the official emulator ships with; it grants nothing outside a test.
EMULATOR_KEY = "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=="

# Cosmos refuses requests whose x-ms-date is further than this from its clock.
MAX_CLOCK_SKEW_SECONDS = 15 * 60


def resource_type_and_link(segments: list[str]) -> tuple[str, str]:
    """Derives the signed resource type and resource link from a request path.

    Args:
        segments: URL-decoded, non-empty path segments (``["dbs", "d", "colls"]``).

    Returns:
        ``(resource_type, resource_link)`` as the SDK puts them in the string to sign.
    """
    if not segments:
        return "", ""
    if len(segments) == 6 and segments[4] == "operations":
        # delete_all_items_by_partition_key signs as its container.
        return "colls", "/".join(segments[:4])
    if len(segments) % 2 == 0:
        return segments[-2], "/".join(segments)
    return segments[-1], "/".join(segments[:-1])


def sign(
    key: bytes, verb: str, resource_type: str, resource_link: str, x_date: str, http_date: str = ""
) -> str:
    """Computes a master-key signature the way ``azure.cosmos.auth`` does.

    Args:
        key: The decoded account key.
        verb: HTTP verb.
        resource_type: Signed resource type (``docs``, ``colls``...).
        resource_link: Signed resource link.
        x_date: The ``x-ms-date`` header value.
        http_date: The ``date`` header value, usually empty.

    Returns:
        The base64 signature.
    """
    fields = (verb.lower(), resource_type.lower(), resource_link, x_date.lower(), http_date.lower())
    text = "".join(f"{field}\n" for field in fields)
    digest = hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def decode_key(key: str) -> bytes:
    """Decodes a base64 master key.

    Args:
        key: The base64 account key.

    Returns:
        The raw key bytes.

    Raises:
        ValueError: If the key is not valid base64.
    """
    try:
        return base64.b64decode(key, validate=True)
    except binascii.Error as exc:
        raise ValueError("master key must be base64") from exc


def _unauthorized(message: str) -> GatewayError:
    return GatewayError(401, "Unauthorized", message)


def verify(key: bytes, verb: str, segments: list[str], headers: Mapping[str, str], now: float) -> None:
    """Checks the ``authorization`` header of one request.

    Args:
        key: The decoded account key.
        verb: HTTP verb of the request.
        segments: URL-decoded path segments.
        headers: Request headers (case-insensitive mapping).
        now: Current time, seconds since the epoch.

    Raises:
        GatewayError: 401 when the header is missing, malformed, stale or wrong.
    """
    raw = headers.get("authorization")
    if not raw:
        raise _unauthorized("Required header 'authorization' is missing.")
    # Not parse_qs: it would turn the '+' of a base64 signature into a space.
    fields = dict(part.partition("=")[::2] for part in urllib.parse.unquote(raw).split("&"))
    token_type = fields.get("type", "")
    signature = fields.get("sig", "")
    if token_type != "master":
        raise _unauthorized(f"Only master-key authorization is supported, got type={token_type!r}.")
    x_date = headers.get("x-ms-date", "")
    if not x_date:
        raise _unauthorized("Required header 'x-ms-date' is missing.")
    try:
        sent_at = parsedate_to_datetime(x_date).timestamp()
    except (TypeError, ValueError):
        raise _unauthorized(f"Header 'x-ms-date' is not an RFC 1123 date: {x_date!r}.") from None
    if abs(now - sent_at) > MAX_CLOCK_SKEW_SECONDS:
        raise _unauthorized("The authorization token is not valid at the current time (x-ms-date skew).")
    resource_type, link = resource_type_and_link(segments)
    # The SDK lowercases links it believes are resource-id based (an 8-character
    # base64 database name looks like one), so accept that spelling too; every
    # candidate still needs the right key.
    candidates = {link, link.lower()}
    http_date = headers.get("date", "")
    for candidate in candidates:
        expected = sign(key, verb, resource_type, candidate, x_date, http_date)
        if hmac.compare_digest(expected, signature):
            return
    raise _unauthorized(
        "The input authorization token can't serve the request. The wrong key is being used or the "
        f"expected payload is not built as per the protocol. Signed: verb={verb.lower()!r}, "
        f"resourceType={resource_type.lower()!r}, resourceLink={link!r}."
    )
