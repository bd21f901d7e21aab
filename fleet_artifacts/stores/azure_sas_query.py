"""The SAS query of one blob (``sr=b``), built here rather than by the SDK's ``generate_blob_sas``.

Why by hand: signed through the SDK, a read URL cost ~30 µs with the account key and ~43 µs with
a user delegation key (``bench/signing.py``, a busy 2-core box), nearly all of it inside
``BlobSharedAccessSignature.generate_blob``: it fills a dict of ~10-16 values, url-quotes each
with ``urllib.parse.quote``, concatenates the string-to-sign from a dozen lookups and decodes the
base64 key again for every HMAC. A list page signs one URL per item: ~3-4 ms of CPU per page of
100. Here everything a signer's URLs share (``sv``, ``sr=b``, ``spr``, the permissions, the
decoded key and its HMAC pads, the delegation key's fields and their string-to-sign lines) is
worked out once per signer or key, and per URL only the blob name, start, expiry, ``rscd``/``rsct``
and the HMAC vary: a URL costs ~5 µs (~6 µs with user delegation) for a blob signed before, and
~8-9 µs for a blob and file name never signed before (their quoting is not cached yet).

What guards it:

- ``tests/test_azure_sas.py`` checks the URLs byte for byte against ``generate_blob_sas``
  (account key and user delegation, hypothesis over names, headers, expiries, protocols,
  permissions and keys);
- the string-to-sign is that of one service version, ``sv``; ``SERVICE_VERSION`` is read from the
  SDK (the version its ``generate_blob_sas`` signs for), and when an upgraded SDK signs for a
  version not in ``LAYOUT_VERSIONS`` ``DIRECT`` is false and ``azure_sas`` signs through the SDK
  again, correct but slow, until the layout below is checked against it and the version added.
"""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache
from typing import Any
from urllib.parse import quote_from_bytes

from azure.storage.blob import UserDelegationKey

# The version the SDK's SAS factory passes as ``sv`` (BlobSharedAccessSignature's x_ms_version).
from azure.storage.blob._shared.constants import X_MS_VERSION

SERVICE_VERSION: str = X_MS_VERSION
# Service versions whose string-to-sign is the layout of ``SasQuery`` (that of azure-storage-blob
# 12.31: user delegation lines through ``sduoid``, then the empty ``srh`` and ``srq`` lines).
LAYOUT_VERSIONS = frozenset({"2026-10-06"})
DIRECT = SERVICE_VERSION in LAYOUT_VERSIONS

# The SDK quotes every query value with urllib.parse.quote (safe="/"): the same table, per byte.
_QUOTED = [quote_from_bytes(bytes([byte])) for byte in range(256)]
_SAFE = bytes(byte for byte in range(256) if _QUOTED[byte] == chr(byte))


def url_quote(value: str) -> str:
    """``urllib.parse.quote(value)``, the SDK's quoting of a query value, in half the time."""
    encoded = value.encode()
    if not encoded.rstrip(_SAFE):  # nothing to quote (rstrip strips every safe byte)
        return value
    return "".join(map(_QUOTED.__getitem__, encoded))


@lru_cache(maxsize=4096)
def header_value(value: str) -> str:
    """``url_quote`` of a response-header override; cached: types and names recur across fetches."""
    return url_quote(value)


def _sig_quote(digest: bytes) -> str:
    # Base64 uses letters, digits, "+", "/" and "=": of those quote leaves "/" alone.
    return base64.b64encode(digest).decode().replace("+", "%2B").replace("=", "%3D")


class _Hmac:
    """HMAC-SHA256 (RFC 2104) under one key, its padded key blocks hashed once.

    ``hmac.new(key, ...)`` pads and hashes the key on every call: 2.2 µs a message, here 1.0 µs.
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > 64:  # SHA-256's block size
            key = hashlib.sha256(key).digest()
        key = key.ljust(64, b"\0")
        self._inner = hashlib.sha256(bytes(byte ^ 0x36 for byte in key))
        self._outer = hashlib.sha256(bytes(byte ^ 0x5C for byte in key))

    def digest(self, message: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


def _optional(value: Any) -> str:
    # The SDK adds a value to the query only if it is truthy, as str(value); absent, its line is "".
    return str(value) if value else ""


class SasQuery:
    """Builds the SAS queries of one container's blobs, signed with one key.

    ``account_key`` (base64) signs a service SAS; ``user_delegation_key`` a user delegation SAS.
    ``query`` returns what ``generate_blob_sas`` returns for the same arguments, byte for byte.

    Example:
        >>> sas = SasQuery("acct", "c", "https", account_key=key)  # doctest: +SKIP
        >>> sas.query("a/b", "r", start, start_q, expiry, expiry_q, None, None)  # doctest: +SKIP
    """

    __slots__ = ("_hmac", "_key_query", "_lines", "_permissions", "_resource", "_shared_query")

    def __init__(
        self,
        account_name: str,
        container_name: str,
        protocol: str | None,
        *,
        account_key: str | None = None,
        user_delegation_key: UserDelegationKey | None = None,
    ) -> None:
        self._resource = f"/blob/{account_name}/{container_name}/"
        self._permissions: dict[str, str] = {}
        # Query order: st se sp [spr] sv sr [rscd] [rsct] [delegation key fields] sig.
        spr = f"&spr={url_quote(protocol)}" if protocol else ""
        self._shared_query = f"{spr}&sv={url_quote(SERVICE_VERSION)}&sr=b"
        # String-to-sign, after the canonicalized resource and up to rscd's line: si (a service
        # SAS) or the delegation key lines, then sip spr sv sr snapshot ses [srh srq] rscc.
        tail = [_optional(protocol), SERVICE_VERSION, "b", "", ""]
        udk = user_delegation_key
        if udk is not None:
            fields = {
                "skoid": udk.signed_oid,
                "sktid": udk.signed_tid,
                "skt": udk.signed_start,
                "ske": udk.signed_expiry,
                "sks": udk.signed_service,
                "skv": udk.signed_version,
                "skdutid": udk.signed_delegated_user_tid,
            }
            self._key_query = "".join(f"&{name}={url_quote(str(v))}" for name, v in fields.items() if v)
            *signed_key, dutid = map(_optional, fields.values())
            # saoid, suoid, scid (none), skdutid, sduoid (none); sip (none)
            lines = [*signed_key, "", "", "", dutid, "", "", *tail, "", ""]
            if udk.value is None:
                raise ValueError("a user delegation key without its value signs nothing")
            key = base64.b64decode(udk.value)
        elif account_key:
            self._key_query = ""
            lines = ["", "", *tail]  # si, sip (none)
            key = base64.b64decode(account_key)
        else:
            raise ValueError("Either user_delegation_key or account_key must be provided.")
        self._lines = "\n" + "\n".join([*lines, ""]) + "\n"  # framed by the resource and rscd
        self._hmac = _Hmac(key)

    def query(
        self,
        blob_name: str,
        permission: str,
        start: str,
        start_quoted: str,
        expiry: str,
        expiry_quoted: str,
        content_disposition: str | None,
        content_type: str | None,
    ) -> str:
        """The SAS query (no "?") for ``blob_name``: times as ``sas_time`` writes them, and quoted."""
        rscd, rsct = content_disposition or "", content_type or ""
        # sp, st, se, resource, the constant lines, then rscd, rsce, rscl, rsct (the SDK drops
        # one trailing newline, which joining leaves out).
        string_to_sign = (
            f"{permission}\n{start}\n{expiry}\n{self._resource}{blob_name}{self._lines}{rscd}\n\n\n{rsct}"
        )
        sig = _sig_quote(self._hmac.digest(string_to_sign.encode()))
        sp = self._permissions.get(permission)
        if sp is None:
            sp = self._permissions[permission] = f"&sp={url_quote(permission)}" if permission else ""
        query = f"st={start_quoted}&se={expiry_quoted}{sp}{self._shared_query}"
        if rscd:
            query = f"{query}&rscd={header_value(rscd)}"
        if rsct:
            query = f"{query}&rsct={header_value(rsct)}"
        return f"{query}{self._key_query}&sig={sig}"
