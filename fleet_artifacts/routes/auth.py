"""Bearer-token authentication: the token decides the caller's product."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from fleet_artifacts.core.errors import Unauthenticated


class TokenAuthority:
    """Maps bearer tokens to product ids without timing leaks.

    Every configured token is compared on every request, digest against digest,
    so neither the position of a match nor a token's length shows in timing.

    Example:
        >>> TokenAuthority({"s3cret-token-0001": "acme"}).product_for("Bearer s3cret-token-0001")
        'acme'
    """

    def __init__(self, tokens: Mapping[str, str]) -> None:
        """Keep only digests of the tokens."""
        self._entries = [
            (hashlib.sha256(token.encode()).digest(), product) for token, product in tokens.items()
        ]

    def product_for(self, authorization: str | None) -> str:
        """Return the product of a valid ``Bearer`` header; raise Unauthenticated otherwise."""
        if not authorization:
            raise Unauthenticated("an Authorization: Bearer <token> header is required")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("the Authorization header must use the Bearer scheme")
        digest = hashlib.sha256(token.strip().encode()).digest()
        product: str | None = None
        for known, owner in self._entries:
            if hmac.compare_digest(known, digest):
                product = owner
        if product is None:
            raise Unauthenticated("the bearer token is not valid")
        return product
