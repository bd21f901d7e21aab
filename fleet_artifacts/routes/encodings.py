"""Canonical encodings for documents that are digested: RFC 8785 JSON and RFC 8949 deterministic CBOR.

Both come from maintained libraries (rfc8785, cbor2). A struct is first turned into JSON builtins
(datetimes as RFC 3339 strings), so the two encodings carry the same content.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

import cbor2
import msgspec
import rfc8785

from fleet_artifacts.routes.deps import AnyRequest

Encoding = Literal["application/json", "application/cbor"]
JSON: Encoding = "application/json"
CBOR: Encoding = "application/cbor"


def negotiated(request: AnyRequest) -> Encoding:
    """CBOR when the client's Accept prefers it to JSON, else JSON."""
    return CBOR if request.accept.best_match([JSON, CBOR], default=JSON) == CBOR else JSON


def canonical(value: Any, encoding: Encoding = JSON) -> bytes:
    """``value`` in canonical JSON (JCS) or deterministic CBOR (core deterministic encoding)."""
    builtins = msgspec.to_builtins(value)
    if encoding == CBOR:
        # cbor2's canonical mode: shortest forms, definite lengths, map keys sorted by their
        # encoded bytes (for text keys the RFC 8949 4.2.1 order).
        return cbor2.dumps(builtins, canonical=True)
    return rfc8785.dumps(builtins)


def strong_etag(body: bytes) -> str:
    """A strong entity tag naming exactly these bytes: their sha256."""
    return '"' + hashlib.sha256(body).hexdigest() + '"'
