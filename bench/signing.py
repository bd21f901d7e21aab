"""What one signed Azure read URL costs: the SDK's SAS factory against the query built directly.

``BlobSasSigner`` signs through the SDK (``direct=False``: ``BlobSharedAccessSignature.generate_blob``,
which the store used before ``azure_sas_query``, and still uses for an unknown service version) or
builds the SAS query itself (``direct=True``, the default), with the account key and with a user
delegation key (a stand-in key from a ``DelegationKeyCache``: signing is local, no server is
needed). "one blob" signs the same blob again and again (a pointer fetched repeatedly: its path
and header quoting are cached); "new blobs" signs a blob and file name never signed before each
time (a list page seen for the first time). "store" is ``AzureBlobStore.sign_read_url``, the
direct path with the store's own call around it; the local store is printed for scale. Rounds
are interleaved and the best kept; µs per URL.

    .venv/bin/python bench/signing.py [--urls 5000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path

from azure.storage.blob import UserDelegationKey
from azure.storage.blob.aio import BlobServiceClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from fleet_artifacts.core.clock import utcnow
from fleet_artifacts.core.keys import content_disposition
from fleet_artifacts.stores.azure_blob import AzureBlobStore
from fleet_artifacts.stores.azure_sas import READ, BlobSasSigner
from fleet_artifacts.stores.azure_sas_query import DIRECT, SERVICE_VERSION
from fleet_artifacts.stores.delegation import DelegationKeyCache
from fleet_artifacts.stores.local_blob import LocalBlobStore
from fleet_artifacts.stores.signing import UrlSigner
from tests.fakes.credentials import StaticToken

DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
AZURE = (
    "DefaultEndpointsProtocol=https;"
    f"AccountName=fleetacct;AccountKey={DEV_KEY};EndpointSuffix=core.windows.net"
)
KEY = "fleet/default/nightly-42/01JDZ5V8Q3ABCDEFGHJKMNPQRS-log"
SECRET = b"k" * 32
# Sign(blob name, content disposition) -> URL
Sign = Callable[[str, str], Awaitable[str]]
Blobs = list[tuple[str, str]]


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


def by_signer(
    signer: BlobSasSigner, expires_at: datetime, keys: DelegationKeyCache[UserDelegationKey] | None
) -> Sign:
    def sign(name: str, rscd: str) -> Awaitable[str]:
        return signer.signed_url(
            name, READ, expires_at, keys, content_disposition=rscd, content_type="text/plain"
        )

    return sign


def by_store(store: LocalBlobStore | AzureBlobStore, expires_at: datetime) -> Sign:
    def sign(name: str, rscd: str) -> Awaitable[str]:
        return store.sign_read_url(
            name, expires_at=expires_at, content_disposition=rscd, content_type="text/plain"
        )

    return sign


async def per_url(sign: Sign, blobs: Blobs) -> float:
    began = time.perf_counter()
    for name, rscd in blobs:
        await sign(name, rscd)
    return (time.perf_counter() - began) / len(blobs) * 1e6


async def main(urls: int, rounds: int) -> None:
    expires_at = utcnow() + timedelta(minutes=15)
    serial = itertools.count()

    def blobs(case: str) -> Blobs:
        if case == "one blob":
            return [(KEY, content_disposition("build output.log"))] * urls
        numbers = [next(serial) for _ in range(urls)]  # never signed before: no cache helps
        return [
            (f"fleet/default/nightly-42/{n:026d}-log", content_disposition(f"out {n}.log")) for n in numbers
        ]

    scratch = tempfile.TemporaryDirectory()  # the store makes its root; signing touches no file
    local = LocalBlobStore(Path(scratch.name) / "blobs", UrlSigner(SECRET), url_prefix="/blobs/")
    key_service = BlobServiceClient.from_connection_string(AZURE)
    entra_service = BlobServiceClient("https://fleetacct.blob.core.windows.net", credential=StaticToken())
    by_key = AzureBlobStore(key_service, "fleet-artifacts")
    delegated = AzureBlobStore(entra_service, "fleet-artifacts")
    udk = stand_in_key()

    async def fetch(start: datetime, expiry: datetime) -> UserDelegationKey:
        return udk

    delegated.delegation_keys = keys = DelegationKeyCache(fetch)
    key_container = key_service.get_container_client("fleet-artifacts")
    entra_container = entra_service.get_container_client("fleet-artifacts")
    paths: dict[str, dict[str, Sign]] = {
        "azure, account key": {
            "sdk": by_signer(BlobSasSigner(key_container, DEV_KEY, direct=False), expires_at, None),
            "direct": by_signer(BlobSasSigner(key_container, DEV_KEY, direct=True), expires_at, None),
            "store": by_store(by_key, expires_at),
        },
        "azure, user delegation": {
            "sdk": by_signer(BlobSasSigner(entra_container, None, direct=False), expires_at, keys),
            "direct": by_signer(BlobSasSigner(entra_container, None, direct=True), expires_at, keys),
            "store": by_store(delegated, expires_at),
        },
        "local": {"store": by_store(local, expires_at)},
    }
    cases = ("one blob", "new blobs")
    best: dict[tuple[str, str, str], float] = {}
    for _ in range(rounds):
        for case in cases:
            for name, signs in paths.items():
                for which, sign in signs.items():
                    took = await per_url(sign, blobs(case))
                    slot = (name, case, which)
                    best[slot] = min(best.get(slot, took), took)
    print(f"sv={SERVICE_VERSION}, direct path {'on' if DIRECT else 'OFF (unknown sv): store = sdk'}")
    print(f"{'µs per signed read URL':34s} {'sdk':>6s} {'direct':>7s} {'ratio':>6s} {'store':>6s}")
    for name in ("azure, account key", "azure, user delegation"):
        for case in cases:
            sdk, direct, store = (best[name, case, which] for which in ("sdk", "direct", "store"))
            print(f"{name + ', ' + case:34s} {sdk:6.1f} {direct:7.1f} {sdk / direct:5.1f}x {store:6.1f}")
    for case in cases:
        local_store = best["local", case, "store"]
        print(f"{'local, ' + case + ' (for scale)':34s} {'':21s} {local_store:6.1f}")
    await by_key.close()
    await delegated.close()
    scratch.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--urls", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    asyncio.run(main(args.urls, args.rounds))
