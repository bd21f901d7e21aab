"""Azure SAS URLs are byte for byte what ``BlobClient.url`` + ``generate_blob_sas`` gave.

``reference_url`` is the previous implementation (a ``BlobClient`` per URL, then the SDK's public
``generate_blob_sas``), kept as the oracle. No request is made: signing is local, so the
configurations below need no server. ``test_blob_contract`` downloads through a signed URL
from Azurite.

The SAS query is built by ``azure_sas_query``, not by the SDK: the property tests at the end
compare it with ``generate_blob_sas`` byte for byte over awkward names, header overrides, times,
protocols, permissions and keys, and check the guard that sends an unknown service version back
to the SDK.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import importlib.util
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from functools import cache
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from azure.storage.blob import UserDelegationKey, generate_blob_sas
from azure.storage.blob._shared import constants as sdk_constants
from azure.storage.blob.aio import BlobServiceClient, ContainerClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleet_artifacts.core.clock import utcnow
from fleet_artifacts.core.keys import content_disposition
from fleet_artifacts.stores import azure_sas_query
from fleet_artifacts.stores.azure_blob import AzureBlobStore
from fleet_artifacts.stores.azure_sas import (
    CREATE_WRITE,
    READ,
    SAS_BACKDATE,
    BlobSasSigner,
    sas_time,
    sas_times,
)
from fleet_artifacts.stores.azure_sas_query import DIRECT, SERVICE_VERSION, SasQuery, _Hmac, url_quote
from fleet_artifacts.stores.delegation import DelegationKeyCache
from tests.fakes.credentials import StaticToken

# Azurite's published development key (the Azurite docs); it opens nothing anywhere else.
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
AZURITE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    f"AccountKey={DEV_KEY};BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
)
AZURE = (
    "DefaultEndpointsProtocol=https;"
    f"AccountName=fleetacct;AccountKey={DEV_KEY};EndpointSuffix=core.windows.net"
)
NOW = datetime(2026, 11, 22, 12, 0, 0, 123_456, tzinfo=UTC)
KEYS = [
    "fleet/p/j/01JDZ5V8Q3-log",
    "fleet/p q/j/a b-log",
    "fleet/ünï/日本/😀-log",
    "fleet/100%/a+b/c%2Fd-log",
    "fleet/p/j#frag/x?y=z&w-log",
    "fleet/~user/j/~-log",
    "fleet/p/j/;,:@!$'()*[]-log",
    "fleet//double/slash/-log",
    "staging/p/j/1-data",
]


def delegation_key(value: str = "a2V5LW1hdGVyaWFsLWZvci10ZXN0cy1vbmx5LTAwMDA=") -> UserDelegationKey:
    key = UserDelegationKey()  # type: ignore[no-untyped-call]  # the SDK leaves __init__ untyped
    key.signed_oid = "00000000-0000-0000-0000-00000000000a"
    key.signed_tid = "00000000-0000-0000-0000-00000000000b"
    key.signed_start = "2026-11-22T11:45:00Z"
    key.signed_expiry = "2026-11-23T12:00:00Z"
    key.signed_service = "b"
    key.signed_version = "2025-01-05"
    key.value = value
    return key


def delegation_cache(
    key: UserDelegationKey, clock: Callable[[], datetime] = lambda: NOW
) -> DelegationKeyCache[UserDelegationKey]:
    async def fetch(start: datetime, expiry: datetime) -> UserDelegationKey:
        return key

    return DelegationKeyCache(fetch, clock=clock)


def reference_url(
    container: ContainerClient,
    key: str,
    permission: str,
    expires_at: datetime,
    start: datetime,
    *,
    account_key: str | None = None,
    user_delegation_key: UserDelegationKey | None = None,
    account_name: str | None = None,
    overrides: Mapping[str, str | None] | None = None,
) -> str:
    blob = container.get_blob_client(key)
    common: dict[str, Any] = {
        "account_name": account_name or blob.account_name,
        "container_name": blob.container_name,
        "blob_name": blob.blob_name,
        "permission": permission,
        "expiry": expires_at,
        "start": start,
        **(overrides or {}),
    }
    if blob.scheme == "https":
        common["protocol"] = "https"
    if user_delegation_key is not None:
        sas = generate_blob_sas(user_delegation_key=user_delegation_key, **common)
    else:
        sas = generate_blob_sas(account_key=account_key, **common)
    return f"{blob.url}?{sas}"


@pytest.fixture
async def containers() -> AsyncIterator[dict[str, ContainerClient]]:
    services = {
        "azurite": BlobServiceClient.from_connection_string(AZURITE),
        "azure": BlobServiceClient.from_connection_string(AZURE),
        "entra": BlobServiceClient("https://fleetacct.blob.core.windows.net", credential=StaticToken()),
    }
    yield {name: service.get_container_client("fleet-artifacts") for name, service in services.items()}
    for service in services.values():
        await service.close()


async def test_blob_url_is_the_blob_clients_for_awkward_keys(containers: dict[str, ContainerClient]) -> None:
    for container in containers.values():
        signer = BlobSasSigner(container, DEV_KEY, clock=lambda: NOW)
        for key in KEYS:
            url = await signer.signed_url(key, READ, NOW + timedelta(minutes=15), None)
            assert url.partition("?")[0] == container.get_blob_client(key).url


async def test_account_key_sas_matches_generate_blob_sas(containers: dict[str, ContainerClient]) -> None:
    expiries = [
        NOW + timedelta(minutes=15),
        NOW.replace(microsecond=999_999) + timedelta(hours=1),
        datetime(2027, 3, 1, 0, 0, 0, tzinfo=timezone(timedelta(hours=-5))),  # converted to UTC
        datetime(2027, 3, 1, 4, 5, 6, 7),  # naive: the SDK takes it as UTC
    ]
    for name in ("azurite", "azure"):
        container = containers[name]
        signer = BlobSasSigner(container, DEV_KEY, clock=lambda: NOW)
        for key in KEYS:
            for expires_at in expiries:
                for overrides in (
                    {},
                    {"content_disposition": content_disposition("a b ü%+.log"), "content_type": "text/plain"},
                    {"content_disposition": content_disposition('x"y.svg', "inline")},
                    {"content_type": "application/json; charset=utf-8"},
                ):
                    for permission in (READ, CREATE_WRITE):
                        got = await signer.signed_url(key, permission, expires_at, None, **overrides)
                        want = reference_url(
                            container,
                            key,
                            permission,
                            expires_at,
                            NOW - SAS_BACKDATE,
                            account_key=DEV_KEY,
                            overrides=overrides,
                        )
                        assert got == want


async def test_user_delegation_sas_matches_generate_blob_sas(containers: dict[str, ContainerClient]) -> None:
    container = containers["entra"]
    signer = BlobSasSigner(container, None, clock=lambda: NOW)
    udk = delegation_key()
    keys = delegation_cache(udk)
    for key in KEYS:
        for permission in (READ, CREATE_WRITE):
            overrides = {
                "content_disposition": content_disposition(key.rsplit("/", 1)[-1]),
                "content_type": "a/b",
            }
            expires_at = NOW + timedelta(minutes=15)
            got = await signer.signed_url(key, permission, expires_at, keys, **overrides)
            want = reference_url(
                container,
                key,
                permission,
                expires_at,
                NOW - SAS_BACKDATE,
                user_delegation_key=udk,
                overrides=overrides,
            )
            assert got == want
            query = parse_qs(urlsplit(got).query)
            assert query["spr"] == ["https"] and query["sr"] == ["b"] and query["sp"] == [permission]


async def test_a_new_delegation_key_gets_a_new_factory(containers: dict[str, ContainerClient]) -> None:
    container = containers["entra"]
    signer = BlobSasSigner(container, None, clock=lambda: NOW)
    expires_at = NOW + timedelta(minutes=15)
    first, second = delegation_key(), delegation_key("b3RoZXIta2V5LW1hdGVyaWFsLWZvci10ZXN0cy0wMDA=")
    for udk in (first, second, first):
        got = await signer.signed_url("fleet/p/j/1-log", READ, expires_at, delegation_cache(udk))
        want = reference_url(
            container, "fleet/p/j/1-log", READ, expires_at, NOW - SAS_BACKDATE, user_delegation_key=udk
        )
        assert got == want


async def test_localhost_token_credential_signs_for_the_account_not_account_slash_container() -> None:
    # For a token credential on 127.0.0.1 the SDK names a BlobClient's account
    # "devstoreaccount1/fleet-artifacts"; the canonical resource must name the account alone.
    service = BlobServiceClient("https://127.0.0.1:10000/devstoreaccount1", credential=StaticToken())
    container = service.get_container_client("fleet-artifacts")
    signer = BlobSasSigner(container, None, clock=lambda: NOW)
    udk, expires_at = delegation_key(), NOW + timedelta(minutes=15)
    got = await signer.signed_url("fleet/p/j/1-log", READ, expires_at, delegation_cache(udk))
    want = reference_url(
        container,
        "fleet/p/j/1-log",
        READ,
        expires_at,
        NOW - SAS_BACKDATE,
        user_delegation_key=udk,
        account_name="devstoreaccount1",
    )
    assert got == want
    await service.close()


async def test_no_key_at_all_is_refused(containers: dict[str, ContainerClient]) -> None:
    signer = BlobSasSigner(containers["entra"], None)
    with pytest.raises(ValueError, match="account_key"):
        await signer.signed_url("fleet/p/j/1-log", READ, NOW, None)


@given(
    key=st.text(st.characters(codec="utf-8", exclude_characters="\\"), min_size=1, max_size=40),
    disposition=st.text(max_size=40),
    content_type=st.text(max_size=20),
    seconds=st.integers(min_value=0, max_value=10**9),
    micros=st.integers(min_value=0, max_value=999_999),
)
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
def test_any_input_matches_generate_blob_sas(
    key: str, disposition: str, content_type: str, seconds: int, micros: int
) -> None:
    async def check() -> None:
        service = BlobServiceClient.from_connection_string(AZURE)
        container = service.get_container_client("fleet-artifacts")
        signer = BlobSasSigner(container, DEV_KEY, clock=lambda: NOW)
        expires_at = NOW + timedelta(seconds=seconds, microseconds=micros)
        overrides = {"content_disposition": disposition, "content_type": content_type}
        got = await signer.signed_url(key, READ, expires_at, None, **overrides)
        want = reference_url(
            container, key, READ, expires_at, NOW - SAS_BACKDATE, account_key=DEV_KEY, overrides=overrides
        )
        await service.close()
        assert got == want

    asyncio.run(check())


def test_sas_time_is_the_sdks_format() -> None:
    for instant in (
        NOW,
        NOW.replace(microsecond=999_999),
        datetime(1969, 12, 31, 23, 59, 59, 500_000, tzinfo=UTC),
        datetime(2027, 3, 1, 0, 0, 0, 1, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        datetime(2027, 3, 1, 4, 5, 6, 7),
    ):
        sas = generate_blob_sas("a", "c", "b", account_key=DEV_KEY, permission="r", expiry=instant)
        assert f"se={sas_time(instant).replace(':', '%3A')}&" in sas


async def test_store_urls_match_the_previous_construction(containers: dict[str, ContainerClient]) -> None:
    """Through ``AzureBlobStore``: read and write URLs, account key and user delegation key."""
    expires_at = datetime.now(UTC) + timedelta(minutes=15)
    rscd = content_disposition("build output.log")
    stores = {
        "azure": AzureBlobStore(BlobServiceClient.from_connection_string(AZURE), "fleet-artifacts"),
        "entra": AzureBlobStore(
            BlobServiceClient("https://fleetacct.blob.core.windows.net", credential=StaticToken()),
            "fleet-artifacts",
        ),
    }
    udk = delegation_key()
    stores["entra"].delegation_keys = delegation_cache(udk, utcnow)
    for name, store in stores.items():
        signer: dict[str, Any] = {"account_key": DEV_KEY} if name == "azure" else {"user_delegation_key": udk}
        for key in KEYS:
            read = await store.sign_read_url(
                key, expires_at=expires_at, content_disposition=rscd, content_type="a/b"
            )
            write = await store.sign_write_url(key, expires_at=expires_at)
            for url, permission, overrides in (
                (read, READ, {"content_disposition": rscd, "content_type": "a/b"}),
                (write, CREATE_WRITE, {}),
            ):
                # The start is the store's clock less the backdate: read it back (to the second).
                start = datetime.strptime(parse_qs(urlsplit(url).query)["st"][0], "%Y-%m-%dT%H:%M:%SZ")
                start = start.replace(tzinfo=UTC)
                assert abs(start + SAS_BACKDATE - datetime.now(UTC)) < timedelta(seconds=5)
                container = containers[name]
                assert url == reference_url(
                    container, key, permission, expires_at, start, **signer, overrides=overrides
                )
        await store.close()


# --- The direct SAS query against generate_blob_sas, property by property ---------------------------

AWKWARD = [*" %+#?~;,:@!$'()*[]/&=\"\\\n\r\tüñé日本😀", "//", "%2F", "%20", "../"]
# codec="utf-8": no lone surrogates, which no URL or HMAC can carry (both paths raise on them).
pieces = st.one_of(st.sampled_from(AWKWARD), st.characters(codec="utf-8"))
awkward_text = st.lists(pieces, max_size=30).map("".join)
blob_names = st.lists(pieces, min_size=1, max_size=30).map("".join)
dispositions = st.one_of(
    st.none(),
    st.just(""),
    awkward_text,
    st.builds(content_disposition, awkward_text, st.sampled_from(["attachment", "inline"])),
)
content_types = st.one_of(
    st.none(),
    st.sampled_from(["", "text/plain", "application/json; charset=utf-8", "image/svg+xml", "a/b"]),
    awkward_text,
)
permissions = st.sampled_from([READ, CREATE_WRITE])
offsets = st.one_of(st.none(), st.just(0), st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59))


def instant(seconds: int, micros: int, offset_minutes: int | None) -> datetime:
    """NOW moved by ``seconds`` and ``micros``: naive (as if UTC) for no offset, else in that zone."""
    moved = NOW + timedelta(seconds=seconds, microseconds=micros)
    if offset_minutes is None:
        return moved.replace(tzinfo=None)
    return moved.astimezone(timezone(timedelta(minutes=offset_minutes)))


clocks = st.builds(
    instant, st.integers(min_value=-(10**6), max_value=10**6), st.integers(0, 999_999), offsets
)
expiries = st.builds(instant, st.integers(min_value=0, max_value=10**9), st.integers(0, 999_999), offsets)
# Base64 of 0-200 bytes: longer than SHA-256's 64-byte block too, which HMAC hashes first.
key_bytes = st.one_of(
    st.binary(min_size=32, max_size=32),  # a user delegation key's size
    st.binary(min_size=64, max_size=64),  # an account key's size
    st.binary(max_size=63),
    st.binary(min_size=65, max_size=200),
)
key_values = key_bytes.map(lambda raw: base64.b64encode(raw).decode())
key_fields = st.one_of(st.just(""), awkward_text)  # an empty field is left out of the query


@st.composite
def delegation_keys(draw: st.DrawFn) -> UserDelegationKey:
    key = UserDelegationKey()  # type: ignore[no-untyped-call]  # the SDK leaves __init__ untyped
    key.signed_oid = draw(st.one_of(st.just("00000000-0000-0000-0000-00000000000a"), key_fields))
    key.signed_tid = draw(st.one_of(st.just("00000000-0000-0000-0000-00000000000b"), key_fields))
    key.signed_start = draw(st.one_of(st.just("2026-11-22T11:45:00Z"), key_fields))
    key.signed_expiry = draw(st.one_of(st.just("2026-11-23T12:00:00Z"), key_fields))
    key.signed_service = draw(st.sampled_from(["b", ""]))
    key.signed_version = draw(st.sampled_from(["2025-01-05", SERVICE_VERSION, ""]))
    key.signed_delegated_user_tid = draw(st.one_of(st.none(), key_fields))
    key.value = draw(key_values)
    return key


credentials = st.one_of(
    st.just({"account_key": DEV_KEY}),
    st.builds(lambda key: {"account_key": key}, key_values.filter(bool)),
    st.builds(lambda key: {"user_delegation_key": key}, delegation_keys()),
)


class FixedKey(DelegationKeyCache[UserDelegationKey]):
    """A delegation key cache holding one key, whatever the expiry (refreshes are made by hand)."""

    def __init__(self, key: UserDelegationKey) -> None:
        async def fetch(start: datetime, expiry: datetime) -> UserDelegationKey:
            return key

        super().__init__(fetch)
        self.key = key

    def cached(self, until: datetime) -> UserDelegationKey | None:
        return self.key


@cache
def sample_containers() -> dict[str, ContainerClient]:
    """Http + account key (Azurite), https + account key, https + token (Entra); never opened."""
    services = {
        "azurite": BlobServiceClient.from_connection_string(AZURITE),
        "azure": BlobServiceClient.from_connection_string(AZURE),
        "entra": BlobServiceClient("https://fleetacct.blob.core.windows.net", credential=StaticToken()),
    }
    return {name: service.get_container_client("fleet-artifacts") for name, service in services.items()}


@given(
    account=st.sampled_from(["fleetacct", "devstoreaccount1"]),
    name=blob_names,
    permission=permissions,
    start=clocks,
    expires_at=expiries,
    protocol=st.sampled_from([None, "https"]),
    disposition=dispositions,
    content_type=content_types,
    credential=credentials,
)
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
def test_the_direct_query_is_generate_blob_sas(
    account: str,
    name: str,
    permission: str,
    start: datetime,
    expires_at: datetime,
    protocol: str | None,
    disposition: str | None,
    content_type: str | None,
    credential: dict[str, Any],
) -> None:
    """Including http with a user delegation key, which no token-credential client makes."""
    sas = SasQuery(account, "fleet-artifacts", protocol, **credential)
    got = sas.query(name, permission, *sas_times(start), *sas_times(expires_at), disposition, content_type)
    want = generate_blob_sas(
        account,
        "fleet-artifacts",
        name,
        permission=permission,
        expiry=expires_at,
        start=start,
        protocol=protocol,
        content_disposition=disposition,
        content_type=content_type,
        **credential,
    )
    assert got == want


@given(
    where=st.sampled_from(["azurite", "azure", "entra"]),
    names=st.lists(blob_names, min_size=1, max_size=3),
    permission=permissions,
    now=clocks,
    expires_at=expiries,
    disposition=dispositions,
    content_type=content_types,
    udks=st.lists(delegation_keys(), min_size=2, max_size=3),
    direct=st.booleans(),
)
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
def test_signed_urls_are_the_sdks_across_key_refreshes(
    where: str,
    names: list[str],
    permission: str,
    now: datetime,
    expires_at: datetime,
    disposition: str | None,
    content_type: str | None,
    udks: list[UserDelegationKey],
    direct: bool,
) -> None:
    """One signer, several URLs; with Entra ID the key is refreshed between them (and back)."""
    container = sample_containers()[where]
    signer = BlobSasSigner(container, None if where == "entra" else DEV_KEY, clock=lambda: now, direct=direct)
    overrides = {"content_disposition": disposition, "content_type": content_type}

    async def check() -> None:
        for udk in [*udks, udks[0]] if where == "entra" else [None]:
            keys = FixedKey(udk) if udk is not None else None
            for name in names:
                got = await signer.signed_url(name, permission, expires_at, keys, **overrides)
                credential = {"user_delegation_key": udk} if udk is not None else {"account_key": DEV_KEY}
                want = reference_url(
                    container,
                    name,
                    permission,
                    expires_at,
                    now - SAS_BACKDATE,
                    **credential,
                    overrides=overrides,
                )
                assert got == want

    asyncio.run(check())


@given(st.one_of(awkward_text, st.text()))
@settings(max_examples=500, deadline=None)
def test_url_quote_is_urllib_quote(value: str) -> None:
    assert url_quote(value) == quote(value)


@given(key=key_bytes, message=st.binary(max_size=400))
@settings(max_examples=300, deadline=None)
def test_the_prehashed_hmac_is_hmac_sha256(key: bytes, message: bytes) -> None:
    assert _Hmac(key).digest(message) == hmac.new(key, message, hashlib.sha256).digest()


def test_the_service_version_is_the_one_generate_blob_sas_signs_for() -> None:
    sas = generate_blob_sas("a", "c", "b", account_key=DEV_KEY, permission="r", expiry=NOW)
    assert parse_qs(sas)["sv"] == [SERVICE_VERSION]
    assert DIRECT, (
        f"azure-storage-blob now signs SAS for sv={SERVICE_VERSION}: URLs are signed through the SDK "
        "(~5x slower) until SasQuery's string-to-sign is checked against it (this file) and the "
        "version added to azure_sas_query.LAYOUT_VERSIONS"
    )


def test_an_unknown_service_version_signs_through_the_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sdk_constants, "X_MS_VERSION", "2099-01-01")
    spec = importlib.util.spec_from_file_location("azure_sas_query_of_a_newer_sdk", azure_sas_query.__file__)
    assert spec is not None and spec.loader is not None
    newer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(newer)
    assert newer.SERVICE_VERSION == "2099-01-01"
    assert newer.DIRECT is False


async def test_the_signer_signs_directly_or_through_the_sdk(containers: dict[str, ContainerClient]) -> None:
    direct = BlobSasSigner(containers["azure"], DEV_KEY, clock=lambda: NOW)
    by_sdk = BlobSasSigner(containers["azure"], DEV_KEY, clock=lambda: NOW, direct=False)
    assert isinstance(direct._by_account_key, SasQuery)
    assert not isinstance(by_sdk._by_account_key, SasQuery)
    expires_at = NOW + timedelta(minutes=15)
    for key in KEYS:
        assert await direct.signed_url(key, READ, expires_at, None) == await by_sdk.signed_url(
            key, READ, expires_at, None
        )


def test_a_delegation_key_without_its_value_is_refused() -> None:
    udk = delegation_key()
    udk.value = None
    with pytest.raises(ValueError, match="value"):
        SasQuery("fleetacct", "fleet-artifacts", "https", user_delegation_key=udk)


async def test_a_lone_surrogate_is_refused_as_by_the_sdk(containers: dict[str, ContainerClient]) -> None:
    container = containers["azure"]
    signer = BlobSasSigner(container, DEV_KEY, clock=lambda: NOW)
    expires_at = NOW + timedelta(minutes=15)
    for key, overrides in (("fleet/\ud800-log", {}), ("fleet/p/j/1-log", {"content_type": "a/\udfff"})):
        with pytest.raises(UnicodeEncodeError):
            reference_url(container, key, READ, expires_at, NOW, account_key=DEV_KEY, overrides=overrides)
        with pytest.raises(UnicodeEncodeError):
            await signer.signed_url(key, READ, expires_at, None, **overrides)
