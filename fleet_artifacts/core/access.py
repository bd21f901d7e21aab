"""Who may do what: bearer tokens, the product each serves, and its scopes.

A token entry is ``token:productId[:scopes]``; ``token`` may be ``sha256:<64 hex>`` so only
the hash is configured, and ``scopes`` is a ``+``-joined subset of ``read``, ``write``,
``delete``, ``admin``, ``share`` (none given: the first four, as before scopes existed).
``admin`` includes ``share``. Entries come from ``FLEET_ARTIFACTS_TOKENS`` (comma-separated)
or a tokens file (one per line, ``#`` comments).

Example:
    >>> [e.product for e in parse_entries(["tok-aaaaaaaaaaaaaaaa:acme:read"], source="x")]
    ['acme']
"""

from __future__ import annotations

import enum
import hashlib
import re
import secrets
from collections.abc import Iterable

import msgspec

from fleet_artifacts.core.errors import InvalidInput
from fleet_artifacts.core.validation import check_id

_HASHED = re.compile(r"sha256:([0-9a-f]{64})")
MIN_TOKEN_LENGTH = 16


class Scope(enum.StrEnum):
    """What a token may do; each operation of the API needs one."""

    READ = "read"  # list, fetch, content, read a job's retention
    WRITE = "write"  # every create path: upload, direct start/finalize, sessions
    DELETE = "delete"  # deletes (and undelete)
    ADMIN = "admin"  # retention, tiers, tags, share links: whatever changes policy
    SHARE = "share"  # create, list and revoke share links (admin includes it)


DEFAULT_SCOPES = frozenset({Scope.READ, Scope.WRITE, Scope.DELETE, Scope.ADMIN})


class TokenEntry(msgspec.Struct, frozen=True):
    """One configured token: the sha256 of its secret, its product, its scopes."""

    digest: str  # hex sha256 of the token (the token itself is never kept)
    product: str
    scopes: frozenset[Scope] = DEFAULT_SCOPES

    @property
    def token_id(self) -> str:
        """A name for logs and audit lines: the first 12 hex of the hash, never the token."""
        return "sha256:" + self.digest[:12]

    def allows(self, scope: Scope) -> bool:
        """Whether the token may do what needs ``scope`` (admin includes share)."""
        return scope in self.scopes or (scope is Scope.SHARE and Scope.ADMIN in self.scopes)


def digest_of(token: str) -> str:
    """The hex sha256 a token is known by."""
    return hashlib.sha256(token.encode()).hexdigest()


def parse_entry(entry: str, *, source: str) -> TokenEntry:
    """One ``token:productId[:scopes]`` entry; InvalidInput naming ``source`` otherwise (never the token)."""
    secret, product, scopes = _split(entry)
    if not secret or not product:
        raise InvalidInput(f"{source}: entry {entry[:8]!r}... must be token:productId[:scopes]")
    hashed = _HASHED.fullmatch(secret)
    if hashed is None and secret.startswith("sha256:"):
        raise InvalidInput(f"{source}: a sha256: token must be 64 lowercase hex digits")
    if hashed is None and len(secret) < MIN_TOKEN_LENGTH:
        raise InvalidInput(f"{source}: tokens must be at least {MIN_TOKEN_LENGTH} characters")
    try:
        check_id(product, "productId")
    except InvalidInput as exc:
        raise InvalidInput(f"{source}: productId {product!r}: {exc.detail}") from None
    return TokenEntry(
        digest=hashed[1] if hashed else digest_of(secret),
        product=product,
        scopes=parse_scopes(scopes, source),
    )


def _split(entry: str) -> tuple[str, str, str | None]:
    # A hashed token has a colon of its own (sha256:<hex>).
    if entry.startswith("sha256:"):
        head, _, rest = entry[len("sha256:") :].partition(":")
        head = "sha256:" + head
    else:
        head, _, rest = entry.partition(":")
    product, sep, scopes = rest.partition(":")
    return head, product, scopes if sep else None


def parse_scopes(raw: str | None, source: str) -> frozenset[Scope]:
    """``read+write`` -> the scopes; None (not given) -> the default four."""
    if raw is None:
        return DEFAULT_SCOPES
    names = [name.strip() for name in raw.split("+")]
    known = {scope.value for scope in Scope}
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise InvalidInput(
            f"{source}: unknown scope {unknown[0] if unknown else raw!r}; known: {', '.join(known)}"
        )
    return frozenset(Scope(name) for name in names)


def parse_entries(entries: Iterable[str], *, source: str) -> tuple[TokenEntry, ...]:
    """Every entry, checked; a token (hash) listed twice is refused."""
    parsed: list[TokenEntry] = []
    for entry in entries:
        made = parse_entry(entry, source=source)
        if any(other.digest == made.digest for other in parsed):
            raise InvalidInput(f"{source}: a token is listed twice")
        parsed.append(made)
    return tuple(parsed)


def parse_token_file(text: str, *, source: str) -> tuple[TokenEntry, ...]:
    """A tokens file: one entry per line; blank lines and ``#`` comments are skipped."""
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return parse_entries((line for line in lines if line), source=source)


def new_token(product: str, scopes: frozenset[Scope]) -> tuple[str, str]:
    """A fresh token and the hashed entry that configures it (``fleet-artifacts token new``)."""
    token = "fa_" + secrets.token_urlsafe(32)
    listed = "+".join(sorted(scope.value for scope in scopes))
    return token, f"sha256:{digest_of(token)}:{product}:{listed}"
