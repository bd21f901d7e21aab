"""Shared access signatures of the Azure adapter, scoped to one blob (``sr=b``).

With a connection string the store holds the account key and signs a *service SAS* with it;
with Entra ID (an account URL and ``DefaultAzureCredential``) it signs a *user delegation SAS*
with a key from ``DelegationKeyCache``, which Microsoft recommends. Every SAS starts
``SAS_BACKDATE`` in the past, so a reader whose clock runs behind ours is not refused.

A read URL is signed on every pointer fetch, and a list page signs one per item, so
``BlobSasSigner`` works out once what every URL of the container shares, and per URL does only
what differs; the SAS query itself is built by ``azure_sas_query`` rather than the SDK (a URL in
~5-9 µs instead of ~30-43 µs: why, and what guards it, is said there), or by the SDK's own factory
when the SDK signs for a service version that module does not know. Either way the output is byte for
byte that of ``container.get_blob_client(key).url`` + ``generate_blob_sas(...)``
(``tests/test_azure_sas.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from azure.storage.blob import BlobSasPermissions, UserDelegationKey

# The factory behind generate_blob_sas, which builds one per call; its docstring invites
# building one and calling generate_blob, which is what a store does here, once per key.
from azure.storage.blob._shared_access_signature import BlobSharedAccessSignature
from azure.storage.blob.aio import ContainerClient

from fleet_artifacts.core.clock import utcnow
from fleet_artifacts.stores.azure_blob_errors import translate
from fleet_artifacts.stores.azure_sas_query import DIRECT, SasQuery, url_quote
from fleet_artifacts.stores.delegation import DelegationKeyCache

SAS_BACKDATE = timedelta(minutes=15)  # tolerate clock skew between us and the reader
READ = str(BlobSasPermissions(read=True))  # "r"
CREATE_WRITE = str(BlobSasPermissions(create=True, write=True))  # "cw", in the SDK's letter order
_SAS_TIME = "%Y-%m-%dT%H:%M:%SZ"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)


@lru_cache(maxsize=4096)
def blob_path(blob_name: str) -> str:
    """A blob name as ``BlobClient.url`` writes it in the path; cached (keys are fetched again)."""
    return url_quote(blob_name)  # quote(blob_name, safe="~/"): "~" is always safe


def sas_time(instant: datetime) -> str:
    """``instant`` as the SDK writes it into a SAS: in UTC, to the second (a naive one as if UTC)."""
    return sas_times(instant)[0]


def sas_times(instant: datetime) -> tuple[str, str]:
    """``sas_time(instant)``, and that as the SAS query carries it (url-quoted)."""
    if instant.tzinfo is not UTC and instant.utcoffset() is None:  # (UTC: the clock's, the common case)
        text = instant.strftime(_SAS_TIME)
        return text, url_quote(text)
    return _utc_second((instant - _EPOCH) // _SECOND)


@lru_cache(maxsize=64)
def _utc_second(second: int) -> tuple[str, str]:
    # Formatting costs 2-4 µs, and every URL signed in one second shares its start and expiry.
    text = (_EPOCH + timedelta(seconds=second)).strftime(_SAS_TIME)
    return text, url_quote(text)


class BlobSasSigner:
    """Signs SAS URLs for the blobs of one container.

    Building a ``BlobClient`` per URL only to read its URL and names cost ~85 µs, and
    ``generate_blob_sas`` builds its signing factory and formats both times on every call:
    here the container URL, account name, protocol and signing key are made ready once (a
    delegation key once per key), so a URL costs its own query and HMAC alone. ``direct=False``
    signs through the SDK's factory, as when ``azure_sas_query`` does not know its service version.

    Example:
        >>> signer = BlobSasSigner(service.get_container_client("c"), account_key)  # doctest: +SKIP
        >>> url = await signer.signed_url("fleet/p/j/1-log", READ, expires_at, None)  # doctest: +SKIP
    """

    def __init__(
        self,
        container: ContainerClient,
        account_key: str | None,
        *,
        clock: Callable[[], datetime] = utcnow,
        direct: bool = DIRECT,
    ) -> None:
        # container.url is what every BlobClient.url of it starts with; anything after a "?"
        # (a SAS credential given with the URL) comes after the blob name there.
        self._container_url, mark, query = container.url.partition("?")
        self._url_suffix = mark + query
        self._container_name = container.container_name
        # The container's, not a BlobClient's: for a token credential on a localhost endpoint
        # the SDK gives a BlobClient "<account>/<container>", which no SAS verifies against.
        self._account_name = container.account_name
        self._protocol = "https" if container.scheme == "https" else None
        self._clock = clock
        self._direct = direct
        self._by_account_key = self._factory(account_key=account_key) if account_key else None
        self._by_delegation: tuple[UserDelegationKey, SasQuery | BlobSharedAccessSignature] | None = None

    def _factory(
        self, *, account_key: str | None = None, user_delegation_key: UserDelegationKey | None = None
    ) -> SasQuery | BlobSharedAccessSignature:
        if not self._account_name:  # an Entra ID store on a custom domain: the URL does not say
            raise ValueError(f"a SAS needs the account name, which {self._container_url} does not give")
        if self._direct:
            return SasQuery(
                self._account_name,
                self._container_name,
                self._protocol,
                account_key=account_key,
                user_delegation_key=user_delegation_key,
            )
        return BlobSharedAccessSignature(
            self._account_name, account_key=account_key, user_delegation_key=user_delegation_key
        )

    def _delegated(self, key: UserDelegationKey) -> SasQuery | BlobSharedAccessSignature:
        # A refreshed key is a new object: its value is decoded and its fields laid out once.
        if self._by_delegation is None or self._by_delegation[0] is not key:
            self._by_delegation = (key, self._factory(user_delegation_key=key))
        return self._by_delegation[1]

    async def signed_url(
        self,
        key: str,
        permission: str,
        expires_at: datetime,
        delegation_keys: DelegationKeyCache[UserDelegationKey] | None,
        *,
        content_disposition: str | None = None,
        content_type: str | None = None,
    ) -> str:
        """``key``'s URL with a SAS granting ``permission`` (``READ``, ``CREATE_WRITE``) until ``expires_at``.

        Signed with the user delegation key when ``delegation_keys`` is given, else with the
        account key; ``content_disposition`` and ``content_type`` set the download's headers.
        """
        start = self._clock() - SAS_BACKDATE
        if delegation_keys is not None:
            udk = delegation_keys.cached(expires_at)
            if udk is None:
                with translate("fetch user delegation key"):
                    udk = await delegation_keys.key_valid_until(expires_at)
            factory = self._delegated(udk)
        elif self._by_account_key is not None:
            factory = self._by_account_key
        else:
            raise ValueError("Either user_delegation_key or account_key must be provided.")
        if isinstance(factory, SasQuery):
            sas = factory.query(
                key, permission, *sas_times(start), *sas_times(expires_at), content_disposition, content_type
            )
        else:
            sas = factory.generate_blob(
                self._container_name,
                key,
                permission=permission,
                expiry=sas_time(expires_at),
                start=sas_time(start),
                protocol=self._protocol,
                content_disposition=content_disposition,
                content_type=content_type,
            )
        return f"{self._container_url}/{blob_path(key)}{self._url_suffix}?{sas}"
