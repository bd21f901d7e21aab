"""User delegation keys: cached, shared, refreshed early; SAS signed with them.

Azurite cannot issue a user delegation key over plain HTTP, and Azurite 3.x
refuses a delegation SAS signed by SDK 12.31 (see shared/notes/azure-facts.md),
so the key *fetch* is an honest fake here and the SAS is checked for its
fields, not verified by a server. On Azure the same code path runs unchanged.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from azure.storage.blob import UserDelegationKey
from azure.storage.blob.aio import BlobServiceClient

from fleet_artifacts.stores.azure_blob import AzureBlobStore
from fleet_artifacts.stores.delegation import DelegationKeyCache
from tests.fakes.credentials import StaticToken


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


class FakeKeyService:
    """Issues keys like the storage service would, counting the calls."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[tuple[datetime, datetime]] = []
        self.delay = delay

    async def __call__(self, start: datetime, expiry: datetime) -> UserDelegationKey:
        self.calls.append((start, expiry))
        await asyncio.sleep(self.delay)
        key = UserDelegationKey()  # type: ignore[no-untyped-call]  # the SDK leaves __init__ untyped
        key.signed_oid = "00000000-0000-0000-0000-00000000000a"
        key.signed_tid = "00000000-0000-0000-0000-00000000000b"
        key.signed_start = start.strftime("%Y-%m-%dT%H:%M:%SZ")
        key.signed_expiry = expiry.strftime("%Y-%m-%dT%H:%M:%SZ")
        key.signed_service = "b"
        key.signed_version = "2025-01-05"
        key.value = "a2V5LW1hdGVyaWFsLWZvci10ZXN0cy1vbmx5LTAwMDA="
        return key


async def test_key_is_fetched_once_and_reused() -> None:
    clock, fetch = Clock(), FakeKeyService()
    cache = DelegationKeyCache(fetch, clock=clock)
    first = await cache.key_valid_until(clock.now + timedelta(minutes=15))
    second = await cache.key_valid_until(clock.now + timedelta(minutes=15))
    assert first is second and len(fetch.calls) == 1
    start, expiry = fetch.calls[0]
    assert start == clock.now - timedelta(minutes=15)  # backdated for clock skew
    assert expiry == clock.now + timedelta(hours=24)


async def test_key_is_refreshed_at_half_life_before_it_lapses() -> None:
    clock, fetch = Clock(), FakeKeyService()
    cache = DelegationKeyCache(fetch, clock=clock, lifetime=timedelta(hours=24))
    await cache.key_valid_until(clock.now + timedelta(minutes=15))
    clock.now += timedelta(hours=11, minutes=59)
    await cache.key_valid_until(clock.now + timedelta(minutes=15))
    assert len(fetch.calls) == 1
    clock.now += timedelta(minutes=2)  # past half-life: refresh although 12 h remain
    await cache.key_valid_until(clock.now + timedelta(minutes=15))
    assert len(fetch.calls) == 2


async def test_a_sas_never_outlives_its_key() -> None:
    clock, fetch = Clock(), FakeKeyService()
    cache = DelegationKeyCache(fetch, clock=clock, lifetime=timedelta(hours=1))
    await cache.key_valid_until(clock.now + timedelta(minutes=15))
    await cache.key_valid_until(clock.now + timedelta(hours=2))  # beyond the cached key
    assert len(fetch.calls) == 2
    assert fetch.calls[1][1] >= clock.now + timedelta(hours=2)
    with pytest.raises(ValueError, match="seven-day"):
        await cache.key_valid_until(clock.now + timedelta(days=8))
    with pytest.raises(ValueError, match="seven days"):
        DelegationKeyCache(fetch, lifetime=timedelta(days=8))


async def test_concurrent_requests_share_one_fetch() -> None:
    clock, fetch = Clock(), FakeKeyService(delay=0.05)
    cache = DelegationKeyCache(fetch, clock=clock)
    keys = await asyncio.gather(*(cache.key_valid_until(clock.now) for _ in range(20)))
    assert len(fetch.calls) == 1 and all(k is keys[0] for k in keys)


async def test_entra_id_store_signs_a_user_delegation_sas() -> None:
    service = BlobServiceClient("https://fleetacct.blob.core.windows.net", credential=StaticToken())
    store = AzureBlobStore(service, "fleet-artifacts")
    assert store.delegation_keys is not None  # no account key: delegation mode
    fetch = FakeKeyService()
    store.delegation_keys = DelegationKeyCache(fetch)
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=15)
    url = await store.sign_read_url(
        "fleet/p/j/abc-log", expires_at=expires, content_disposition="attachment", content_type="text/plain"
    )
    await store.sign_read_url(
        "fleet/p/j/def-log", expires_at=expires, content_disposition="attachment", content_type="text/plain"
    )
    await store.close()
    parts = urlsplit(url)
    assert parts.scheme == "https" and parts.path == "/fleet-artifacts/fleet/p/j/abc-log"
    q = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert q["sr"] == "b" and q["sp"] == "r" and q["spr"] == "https"
    assert q["skoid"] == "00000000-0000-0000-0000-00000000000a"
    assert q["sktid"] == "00000000-0000-0000-0000-00000000000b"
    assert q["se"] == expires.strftime("%Y-%m-%dT%H:%M:%SZ") <= q["ske"]
    assert "sig" in q and q["rscd"] == "attachment" and q["rsct"] == "text/plain"
    assert len(fetch.calls) == 1  # one key served both signatures
