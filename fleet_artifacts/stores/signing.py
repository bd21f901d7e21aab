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
from pathlib import Path
from urllib.parse import urlencode

from fleet_artifacts.core.errors import SignatureRejected

KEY_FILE = "signing.key"


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
        self._secret = secret

    def _mac(self, key: str, permissions: str, expires_at: int, rscd: str, rsct: str) -> str:
        message = "\n".join((key, permissions, str(expires_at), rscd, rsct)).encode()
        digest = hmac.new(self._secret, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def sign(self, key: str, permissions: str, *, expires_at: int, rscd: str = "", rsct: str = "") -> str:
        """Return the query string granting ``permissions`` on ``key`` until ``expires_at`` (Unix s)."""
        params = {"sr": "b", "se": str(expires_at), "sp": permissions}  # sr=b: one blob, as in Azure
        if rscd:
            params["rscd"] = rscd
        if rsct:
            params["rsct"] = rsct
        params["sig"] = self._mac(key, permissions, expires_at, rscd, rsct)
        return urlencode(params)

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
