"""CORS rules for the Blob service, so browsers can upload and download straight from Storage.

A front end that writes a direct upload to its ``uploadUrl`` (an Azure SAS), or fetches a
``downloadUrl``, talks to the storage account, not to this service: the account needs CORS
rules of its own. ``fleet-artifacts storage-cors --origin URL`` prints them; ``--apply`` sets
them through the SDK (Set Blob Service Properties; other properties are left as they are).
"""

from __future__ import annotations

import json
from typing import Any

from azure.storage.blob import CorsRule
from azure.storage.blob.aio import BlobServiceClient

from fleet_artifacts.settings import Settings, SettingsError

METHODS = ["GET", "HEAD", "OPTIONS", "PUT"]
# What the SDK and curl send for Put Blob, Put Block and Put Block List, and for ranged reads.
ALLOWED_HEADERS = ["x-ms-*", "content-type", "content-length", "content-md5", "range", "if-match"]
EXPOSED_HEADERS = ["x-ms-*", "etag", "content-length", "content-range", "content-type", "content-disposition"]
MAX_AGE_SECONDS = 3600


def rules(origins: list[str]) -> list[dict[str, Any]]:
    """The Blob service CORS rules for ``origins``, as Azure's REST API names their fields."""
    return [
        {
            "allowedOrigins": origins,
            "allowedMethods": METHODS,
            "allowedHeaders": ALLOWED_HEADERS,
            "exposedHeaders": EXPOSED_HEADERS,
            "maxAgeInSeconds": MAX_AGE_SECONDS,
        }
    ]


def rules_json(origins: list[str]) -> str:
    """The rules as indented JSON (what ``storage-cors`` prints)."""
    return json.dumps({"cors": rules(origins)}, indent=2)


async def apply(settings: Settings, origins: list[str]) -> None:
    """Set the rules on the configured storage account (replacing its CORS rules, nothing else)."""
    if settings.blob_backend != "azure":
        raise SettingsError(
            "storage-cors --apply needs the azure blob backend; the local backend's URLs are this "
            "service's own: set FLEET_ARTIFACTS_CORS_ORIGINS instead"
        )
    rule = CorsRule(
        origins,
        METHODS,
        allowed_headers=ALLOWED_HEADERS,
        exposed_headers=EXPOSED_HEADERS,
        max_age_in_seconds=MAX_AGE_SECONDS,
    )
    if settings.azure_storage_connection_string:
        client = BlobServiceClient.from_connection_string(settings.azure_storage_connection_string)
        async with client:
            await client.set_service_properties(cors=[rule])
        return
    from azure.identity.aio import DefaultAzureCredential

    assert settings.azure_storage_account_url
    url = settings.azure_storage_account_url
    async with DefaultAzureCredential() as credential, BlobServiceClient(url, credential=credential) as svc:
        await svc.set_service_properties(cors=[rule])
