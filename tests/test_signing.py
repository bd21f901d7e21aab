"""The local backend's signed URLs are byte for byte what the urlencode-based signer wrote.

``reference_sign`` is the previous implementation, kept here verbatim as the oracle: URLs
already handed out must keep verifying, and clients comparing URLs must see no change.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode

from hypothesis import given
from hypothesis import strategies as st

from fleet_artifacts.core.keys import content_disposition
from fleet_artifacts.stores.local_blob import LocalBlobStore
from fleet_artifacts.stores.signing import UrlSigner, query_value, url_path

SECRET = b"s" * 32
AWKWARD = [
    "",
    "build.log",
    "build output.log",
    'quo"te\\back.txt',
    "100% done+more&x=y#frag?q;p~t",
    "ünïcödé 日本語 😀.txt",
    "tab\tnew\nline",
    "a/b/c",
    "text/plain; charset=utf-8",
    "~!*'()",
]


def reference_sign(secret: bytes, key: str, permissions: str, expires_at: int, rscd: str, rsct: str) -> str:
    message = "\n".join((key, permissions, str(expires_at), rscd, rsct)).encode()
    digest = hmac.new(secret, message, hashlib.sha256).digest()
    params = {"sr": "b", "se": str(expires_at), "sp": permissions}
    if rscd:
        params["rscd"] = rscd
    if rsct:
        params["rsct"] = rsct
    params["sig"] = base64.urlsafe_b64encode(digest).decode().rstrip("=")
    return urlencode(params)


def test_sign_matches_urlencode_for_awkward_values() -> None:
    signer = UrlSigner(SECRET)
    for value in AWKWARD:
        for disposition in ("attachment", "inline"):
            rscd = content_disposition(value, disposition) if value else ""
            for permissions in ("r", "cw", "rcw"):
                for expires_at in (0, 1_900_000_000, -5):
                    args = ("fleet/p/j/" + value, permissions, expires_at, rscd, value)
                    expected = reference_sign(SECRET, *args)
                    got = signer.sign(args[0], permissions, expires_at=expires_at, rscd=rscd, rsct=value)
                    assert got == expected
                    # twice: the second answer comes from the quoting caches
                    assert (
                        signer.sign(args[0], permissions, expires_at=expires_at, rscd=rscd, rsct=value) == got
                    )


@given(
    key=st.text(min_size=1),
    permissions=st.text(min_size=1, max_size=4),
    expires_at=st.integers(min_value=-(2**40), max_value=2**40),
    rscd=st.text(),
    rsct=st.text(),
)
def test_sign_matches_urlencode_for_any_input(
    key: str, permissions: str, expires_at: int, rscd: str, rsct: str
) -> None:
    signer = UrlSigner(SECRET)
    got = signer.sign(key, permissions, expires_at=expires_at, rscd=rscd, rsct=rsct)
    assert got == reference_sign(SECRET, key, permissions, expires_at, rscd, rsct)


@given(rscd=st.text(min_size=1), rsct=st.text(min_size=1))
def test_signed_query_verifies_after_decoding(rscd: str, rsct: str) -> None:
    signer = UrlSigner(SECRET)
    query = dict(parse_qsl(signer.sign("k", "r", expires_at=2000, rscd=rscd, rsct=rsct), strict_parsing=True))
    assert signer.verify("k", "r", query, now=1999) == {"rscd": rscd, "rsct": rsct, "sp": "r", "se": "2000"}


def test_each_url_copies_the_keyed_mac_and_leaves_it_untouched() -> None:
    signer = UrlSigner(SECRET)
    first = signer.sign("k", "r", expires_at=1)
    for _ in range(3):  # a shared keyed object fed by mistake would change every later signature
        assert signer.sign("k", "r", expires_at=1) == first
    assert UrlSigner(b"t" * 32).sign("k", "r", expires_at=1) != first


def test_caches_answer_as_the_functions_they_wrap() -> None:
    for value in AWKWARD:
        assert query_value(value) == query_value.__wrapped__(value)
        assert url_path(value) == quote(value)
        for disposition in ("attachment", "inline"):
            assert content_disposition(value, disposition) == content_disposition.__wrapped__(
                value, disposition
            )
    assert content_disposition("a b.txt") == content_disposition("a b.txt", "attachment")


async def test_store_urls_match_the_previous_construction(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs", UrlSigner(SECRET), url_prefix="/blobs/")
    expires = datetime(2027, 1, 2, 3, 4, 5, 999_999, tzinfo=UTC) + timedelta(minutes=15)
    for key in ("fleet/p/j/1-log", "fleet/p q/j~1/ü+%#?&-log", "staging/p/j/2-data"):
        rscd = content_disposition("rapport final (v2).pdf", "inline")
        url = await store.sign_read_url(key, expires_at=expires, content_disposition=rscd, content_type="a/b")
        query = reference_sign(SECRET, key, "r", int(expires.timestamp()), rscd, "a/b")
        assert url == f"/blobs/{quote(key)}?{query}"
        url = await store.sign_write_url(key, expires_at=expires)
        assert (
            url
            == f"/blobs/{quote(key)}?{reference_sign(SECRET, key, 'cw', int(expires.timestamp()), '', '')}"
        )
