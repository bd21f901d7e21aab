"""Writing a direct upload's bytes with the Azure SDK, and the other blocking I/O helpers.

The SDK writes any URL of the service's direct uploads: an Azure SAS (or Azurite's) and
the local backend's signed ``PUT /blobs/...`` route alike. Its errors are turned into a
``FleetError`` whose message carries no signature.
"""

from __future__ import annotations

import re
from typing import IO, cast

from fleet_artifacts.client.errors import FleetError, safe_location
from fleet_artifacts.client.flows import BlobWrite
from fleet_artifacts.client.models import Problem

_SIGNATURE = re.compile(r"(sig=)[^&\s'\"]+", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with any URL signature blanked out."""
    return _SIGNATURE.sub(r"\1<redacted>", text)


def write_blob(step: BlobWrite) -> None:
    """Upload ``step.source`` to its write URL: blocks of ``block_size``, ``concurrency`` in flight."""
    from azure.core.exceptions import AzureError
    from azure.storage.blob import BlobClient, ContentSettings

    reader = step.source.reader()
    try:
        with BlobClient.from_blob_url(
            step.url, max_block_size=step.block_size, max_single_put_size=step.block_size
        ) as blob:
            blob.upload_blob(
                cast("IO[bytes]", reader),  # read() is all the SDK uses of a non-seekable stream
                length=step.source.size,
                overwrite=True,
                max_concurrency=step.concurrency,
                content_settings=ContentSettings(content_type=step.content_type),
            )
    except AzureError as exc:
        status = getattr(exc, "status_code", None) or 0
        first_line = (str(exc.message or exc).splitlines() or ["no detail"])[0]
        raise FleetError(
            Problem(
                status=int(status),
                title="direct upload failed",
                detail=f"writing to {safe_location(step.url)}: {redact(first_line)[:300]}",
            )
        ) from None
    finally:
        reader.close()
