"""Self-signed URLs with SAS semantics, for the local blob backend.

A URL names one blob key, one permission set, an expiry, and the response
headers the download must carry; an HMAC-SHA256 over all of them, keyed with the
server's secret, makes any change (another key, wider permissions, a later
expiry) fail verification. The query parameter names follow Azure's SAS
(``se``, ``sp``, ``rscd``, ``rsct``, ``sig``) so clients treat both alike.

Example:
    >>> from urllib.parse import parse_qsl
    >>> signer = UrlSigner(b"k" * 32)
    >>> query = signer.sign("fleet/p/j/1-log", "r", expires_at=1_900_000_000, rsct="text/plain")
    >>> signer.verify("fleet/p/j/1-log", "r", dict(parse_qsl(query)), now=1_800_000_000)["rsct"]
    'text/plain'
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from urllib.parse import quote, quote_plus

from fleet_artifacts.core.errors import SignatureRejected

KEY_FILE = "signing.key"


# A read URL is signed on every pointer fetch, so its parts are cached where they repeat: a
# Content-Disposition per file name, a content type, the key of an artifact fetched again.
# quote_plus of a header value costs 2-8 µs; a cache hit 0.1 µs. The bounds keep memory small.
@lru_cache(maxsize=1024)
def query_value(value: str) -> str:
    """``quote_plus(value)``: a query value as ``urlencode`` writes it, cached."""
    return quote_plus(value)


@lru_cache(maxsize=4096)
def url_path(key: str) -> str:
    """``quote(key)``: a blob key as a URL path (``/`` kept), cached."""
    return quote(key)


def load_or_create_secret(path: Path, *, prefix: str = "") -> str:
    """Return the secret kept in ``path``, creating it (mode 0600) on first use.

    Creation is exclusive, so replicas sharing a data dir agree on one secret.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as out:
        out.write(prefix + secrets.token_urlsafe(32) + "\n")
    return path.read_text().strip()


def load_or_create_key(configured: str | None, data_dir: Path) -> bytes:
    """Return the configured signing key, else the one kept in the data dir (made once)."""
    return (configured or load_or_create_secret(data_dir / KEY_FILE)).encode()


class UrlSigner:
    """Signs and verifies blob URLs with one secret."""

    def __init__(self, secret: bytes) -> None:
        """Keep the secret; at least 32 bytes."""
        if len(secret) < 32:
            raise ValueError("the signing key must be at least 32 bytes")
        # Keyed once; each URL copies it. A one-shot hmac.digest per URL was seen to convoy
        # the GIL under load, and re-keying costs twice a copy.
        self._keyed = hmac.new(secret, digestmod=hashlib.sha256)

    def _mac(self, key: str, permissions: str, expires_at: int, rscd: str, rsct: str) -> str:
        mac = self._keyed.copy()
        mac.update("\n".join((key, permissions, str(expires_at), rscd, rsct)).encode())
        return base64.urlsafe_b64encode(mac.digest()).decode().rstrip("=")

    def sign(self, key: str, permissions: str, *, expires_at: int, rscd: str = "", rsct: str = "") -> str:
        """Return the query string granting ``permissions`` on ``key`` until ``expires_at`` (Unix s).

        Byte for byte what ``urlencode`` gives for ``sr, se, sp[, rscd][, rsct], sig`` in that
        order: only values that can hold reserved characters are quoted (an int's digits and
        the URL-safe base64 of ``sig`` never need it).
        """
        query = f"sr=b&se={expires_at}&sp={query_value(permissions)}"  # sr=b: one blob, as in Azure
        if rscd:
            query += f"&rscd={query_value(rscd)}"
        if rsct:
            query += f"&rsct={query_value(rsct)}"
        return f"{query}&sig={self._mac(key, permissions, expires_at, rscd, rsct)}"

    def verify(self, key: str, needed: str, query: Mapping[str, str], *, now: float) -> dict[str, str]:
        """Check a signed query for ``key`` grants ``needed`` now; return its parameters."""
        try:
            expires_at = int(query["se"])
            permissions, sig = query["sp"], query["sig"]
        except (KeyError, ValueError):
            raise SignatureRejected("the URL is not signed") from None
        rscd, rsct = query.get("rscd", ""), query.get("rsct", "")
        expected = self._mac(key, permissions, expires_at, rscd, rsct)
        if not hmac.compare_digest(expected.encode(), sig.encode()):
            raise SignatureRejected("the signature does not match")
        if now >= expires_at:
            raise SignatureRejected("the URL has expired")
        if not set(needed) <= set(permissions):
            raise SignatureRejected(f"the URL does not grant {needed!r}")
        return {"rscd": rscd, "rsct": rsct, "sp": permissions, "se": str(expires_at)}
