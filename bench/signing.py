"""What one signed read URL costs: the previous construction against the stores' own signers.

Per backend, the previous way (local: ``urlencode`` and a one-shot HMAC; Azure: a
``BlobClient`` per URL, its ``url``, then ``generate_blob_sas``) against ``sign_read_url`` of
the store as it is now, account key and user delegation key (a stand-in key: signing is
local, no server is needed). Rounds are interleaved and the best kept; µs per URL.

    .venv/bin/python bench/signing.py [--urls 5000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from azure.core.credentials import AccessToken
from azure.storage.blob import UserDelegationKey, generate_blob_sas
from azure.storage.blob.aio import BlobServiceClient, ContainerClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from fleet_artifacts.core.clock import utcnow
from fleet_artifacts.core.keys import content_disposition
from fleet_artifacts.stores.azure_blob import AzureBlobStore
from fleet_artifacts.stores.azure_sas import SAS_BACKDATE
from fleet_artifacts.stores.delegation import DelegationKeyCache
from fleet_artifacts.stores.local_blob import LocalBlobStore
from fleet_artifacts.stores.signing import UrlSigner

DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
AZURE = (
    "DefaultEndpointsProtocol=https;"
    f"AccountName=fleetacct;AccountKey={DEV_KEY};EndpointSuffix=core.windows.net"
)
KEY = "fleet/default/nightly-42/01JDZ5V8Q3ABCDEFGHJKMNPQRS-log"
SECRET = b"k" * 32
Sign = Callable[[], Awaitable[str]]


class StaticToken:
    """An Entra ID credential stand-in: the delegation store never asks for a token here."""

    async def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        return AccessToken("unused", 2**31)

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> StaticToken:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


def stand_in_key() -> UserDelegationKey:
    key = UserDelegationKey()  # type: ignore[no-untyped-call]  # the SDK leaves __init__ untyped
    key.signed_oid, key.signed_tid = (
        "0" * 8 + "-0000-0000-0000-00000000000a",
        "0" * 8 + "-0000-0000-0000-00000000000b",
    )
    key.signed_start, key.signed_expiry = "2026-01-01T00:00:00Z", "2099-01-01T00:00:00Z"
    key.signed_service, key.signed_version = "b", "2025-01-05"
    key.value = base64.b64encode(b"bench-key-material-0123456789ab").decode()
    return key


def previous_local(expires_at: datetime, rscd: str) -> Sign:
    async def sign() -> str:
        se = int(expires_at.timestamp())
        message = "\n".join((KEY, "r", str(se), rscd, "text/plain")).encode()
        sig = (
            base64.urlsafe_b64encode(hmac.new(SECRET, message, hashlib.sha256).digest()).decode().rstrip("=")
        )
        query = urlencode(
            {"sr": "b", "se": str(se), "sp": "r", "rscd": rscd, "rsct": "text/plain", "sig": sig}
        )
        return f"/blobs/{quote(KEY)}?{query}"

    return sign


def previous_azure(container: ContainerClient, expires_at: datetime, rscd: str, **key: Any) -> Sign:
    async def sign() -> str:
        blob = container.get_blob_client(KEY)
        common: dict[str, Any] = {
            "account_name": blob.account_name,
            "container_name": blob.container_name,
            "blob_name": blob.blob_name,
            "permission": "r",
            "expiry": expires_at,
            "start": utcnow() - SAS_BACKDATE,
            "content_disposition": rscd,
            "content_type": "text/plain",
            "protocol": "https",
        }
        sas = generate_blob_sas(**common, **key)
        return f"{blob.url}?{sas}"

    return sign


async def per_url(sign: Sign, urls: int) -> float:
    began = time.perf_counter()
    for _ in range(urls):
        await sign()
    return (time.perf_counter() - began) / urls * 1e6


async def main(urls: int, rounds: int) -> None:
    expires_at = utcnow() + timedelta(minutes=15)
    rscd = content_disposition("build output.log")

    def current(store: LocalBlobStore | AzureBlobStore) -> Sign:
        return lambda: store.sign_read_url(
            KEY, expires_at=expires_at, content_disposition=rscd, content_type="text/plain"
        )

    scratch = tempfile.TemporaryDirectory()  # the store makes its root; signing touches no file
    local = LocalBlobStore(Path(scratch.name) / "blobs", UrlSigner(SECRET), url_prefix="/blobs/")
    key_service = BlobServiceClient.from_connection_string(AZURE)
    entra_service = BlobServiceClient("https://fleetacct.blob.core.windows.net", credential=StaticToken())
    by_key, delegated = (
        AzureBlobStore(key_service, "fleet-artifacts"),
        AzureBlobStore(entra_service, "fleet-artifacts"),
    )
    udk = stand_in_key()

    async def fetch(start: datetime, expiry: datetime) -> UserDelegationKey:
        return udk

    delegated.delegation_keys = DelegationKeyCache(fetch)
    pairs = {
        "local": (previous_local(expires_at, rscd), current(local)),
        "azure, account key": (
            previous_azure(
                key_service.get_container_client("fleet-artifacts"), expires_at, rscd, account_key=DEV_KEY
            ),
            current(by_key),
        ),
        "azure, user delegation": (
            previous_azure(
                entra_service.get_container_client("fleet-artifacts"),
                expires_at,
                rscd,
                user_delegation_key=udk,
            ),
            current(delegated),
        ),
    }
    best: dict[tuple[str, int], float] = {}
    for _ in range(rounds):
        for name, signs in pairs.items():
            for which, sign in enumerate(signs):
                took = await per_url(sign, urls)
                best[name, which] = min(best.get((name, which), took), took)
    print(f"{'µs per signed read URL':26s} {'previous':>9s} {'now':>7s} {'ratio':>6s}")
    for name in pairs:
        before, after = best[name, 0], best[name, 1]
        print(f"{name:26s} {before:9.1f} {after:7.1f} {before / after:5.1f}x")
    await by_key.close()
    await delegated.close()
    scratch.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--urls", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.urls, args.rounds))
