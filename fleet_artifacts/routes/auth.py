"""Bearer tokens: which product a request acts for, and whether its token has the scope needed.

Tokens are known by their sha256 only. Every configured hash is compared on every request,
in constant time, so neither a match's position nor a token's length shows in timing. A
tokens file (``TOKENS_FILE``) is read again when it changes (checked at most once a second)
or on SIGHUP (``reload``), so a token is added or revoked without a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from pathlib import Path

import msgspec

from fleet_artifacts.core.access import Scope, TokenEntry, parse_token_file
from fleet_artifacts.core.audit import audit
from fleet_artifacts.core.errors import ArtifactError, Forbidden, Unauthenticated

log = logging.getLogger(__name__)
ANONYMOUS = "anonymous"


class Caller(msgspec.Struct, frozen=True):
    """Who a request acts as: the product, and the token's id for logs (never the token)."""

    product: str
    token_id: str


class TokenAuthority:
    """Maps bearer tokens to products and scopes, without timing leaks.

    Example:
        >>> from fleet_artifacts.core.access import parse_entries
        >>> auth = TokenAuthority(parse_entries(["s3cret-token-0001:acme:read"], source="doc"))
        >>> auth.authorize("Bearer s3cret-token-0001", Scope.READ).product
        'acme'
    """

    def __init__(
        self,
        entries: tuple[TokenEntry, ...],
        *,
        file: Path | None = None,
        anonymous_read: str | None = None,
    ) -> None:
        """Serve ``entries`` and those of ``file``; ``anonymous_read``: a product anyone may read."""
        self._fixed = entries
        self._file = file
        self._anonymous = anonymous_read
        self._stamp: tuple[int, int] | None = None
        self._checked = 0.0
        self._entries: list[tuple[bytes, TokenEntry]] = []
        self._index(entries)
        if file is not None:
            self.reload()

    def _index(self, entries: tuple[TokenEntry, ...]) -> None:
        self._entries = [(bytes.fromhex(entry.digest), entry) for entry in (*self._fixed, *entries)]

    def reload(self) -> None:
        """Read the tokens file again; a broken file keeps the tokens in force and is logged."""
        if self._file is None:
            return
        try:
            stat = self._file.stat()
            loaded = parse_token_file(self._file.read_text(), source=str(self._file))
        except (OSError, ArtifactError) as exc:
            log.error("tokens file not reloaded, the previous tokens stay in force: %s", exc)
            return
        self._stamp = (stat.st_mtime_ns, stat.st_size)
        self._index(loaded)
        log.info("tokens file %s loaded: %d token(s)", self._file, len(loaded))

    def _fresh(self) -> None:
        if self._file is None or time.monotonic() - self._checked < 1.0:
            return
        self._checked = time.monotonic()
        try:
            stat = self._file.stat()
        except OSError:
            return
        if (stat.st_mtime_ns, stat.st_size) != self._stamp:
            self.reload()

    def authorize(self, authorization: str | None, scope: Scope) -> Caller:
        """The caller of a request that needs ``scope``: Unauthenticated (401), Forbidden (403)."""
        if authorization is None and self._anonymous is not None and scope is Scope.READ:
            return Caller(self._anonymous, ANONYMOUS)
        try:
            entry = self.identify(authorization)
        except Unauthenticated as exc:
            audit("token.refused", status=401, reason=exc.detail)
            raise
        if not entry.allows(scope):
            audit("token.refused", status=403, token=entry.token_id, product=entry.product, scope=scope.value)
            raise Forbidden(
                f"this token lacks the {scope.value!r} scope this operation needs", scope=scope.value
            )
        return Caller(entry.product, entry.token_id)

    def identify(self, authorization: str | None) -> TokenEntry:
        """The entry of a valid ``Bearer`` header; Unauthenticated otherwise."""
        if not authorization:
            raise Unauthenticated("an Authorization: Bearer <token> header is required")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("the Authorization header must use the Bearer scheme")
        self._fresh()
        digest = hashlib.sha256(token.strip().encode()).digest()
        found: TokenEntry | None = None
        for known, entry in self._entries:
            if hmac.compare_digest(known, digest):
                found = entry
        if found is None:
            raise Unauthenticated("the bearer token is not valid")
        return found
