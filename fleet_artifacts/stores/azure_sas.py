"""Shared access signatures of the Azure adapter, scoped to one blob (``sr=b``).

With a connection string the store holds the account key and signs a *service SAS* with it;
with Entra ID (an account URL and ``DefaultAzureCredential``) it signs a *user delegation SAS*
with a key from ``DelegationKeyCache``, which Microsoft recommends. Every SAS starts
``SAS_BACKDATE`` in the past, so a reader whose clock runs behind ours is not refused.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from azure.storage.blob import BlobSasPermissions, UserDelegationKey, generate_blob_sas
from azure.storage.blob.aio import BlobClient

from fleet_artifacts.core.clock import utcnow
from fleet_artifacts.stores.azure_blob_errors import translate
from fleet_artifacts.stores.delegation import DelegationKeyCache

SAS_BACKDATE = timedelta(minutes=15)  # tolerate clock skew between us and the reader


async def signed_blob_url(
    blob: BlobClient,
    permission: BlobSasPermissions,
    expires_at: datetime,
    *,
    account_key: str | None,
    delegation_keys: DelegationKeyCache[UserDelegationKey] | None,
    overrides: dict[str, str] | None = None,
) -> str:
    """``blob``'s URL with a SAS granting ``permission`` on it alone until ``expires_at``.

    Signed with the user delegation key when ``delegation_keys`` is given, else with
    ``account_key``; ``overrides`` set response headers (``content_disposition``, ``content_type``).
    """
    common: dict[str, Any] = {
        "account_name": blob.account_name,
        "container_name": blob.container_name,
        "blob_name": blob.blob_name,
        "permission": permission,
        "expiry": expires_at,
        "start": utcnow() - SAS_BACKDATE,
        **(overrides or {}),
    }
    if blob.scheme == "https":
        common["protocol"] = "https"
    if delegation_keys is not None:
        with translate("fetch user delegation key"):
            udk = await delegation_keys.key_valid_until(expires_at)
        sas = generate_blob_sas(user_delegation_key=udk, **common)
    else:
        sas = generate_blob_sas(account_key=account_key, **common)
    return f"{blob.url}?{sas}"
