"""Azure Blob SDK failures, translated into the project's errors in one place.

Every call of ``AzureBlobStore`` into the SDK runs inside ``translate``; nothing above the
adapter sees an Azure exception.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)

from fleet_artifacts.core.errors import (
    Archived,
    ArtifactError,
    Conflict,
    InvalidInput,
    NotFound,
    Unavailable,
)

_RETRYABLE = {408, 429, 500, 502, 503, 504}
# A backstop (check_tags refuses a bad set before it is sent): what Azurite answers to one, and
# what Azure answers to a malformed x-ms-tags header.
_TAG_ERRORS = {"TagsTooLarge", "DuplicateTagNames", "TagsHeaderInvalidFormat"}


@contextlib.contextmanager
def translate(what: str) -> Iterator[None]:
    """Turn an Azure SDK failure during ``what`` into the project's error."""
    try:
        yield
    except AzureError as exc:
        mapped = _project_error(what, exc)
        if mapped is None:
            raise
        raise mapped from exc


def _project_error(what: str, exc: AzureError) -> ArtifactError | None:
    """The project's error for an SDK failure, or None to let it through (a bug of ours)."""
    code = getattr(exc, "error_code", None)
    # The SDK gives a StorageErrorCode (a str enum hashed by its name) or a plain string.
    code = getattr(code, "value", code)
    # Codes first: the SDK raises BlobArchived and BlobBeingRehydrated (409) as ResourceExistsError.
    if code == "BlobArchived":
        return Archived(f"{what}: the blob is in the Archive tier (or still rehydrating)")
    if code == "BlobBeingRehydrated":
        return Conflict(f"{what}: the blob is being rehydrated from the Archive tier")
    if code in _TAG_ERRORS:
        return InvalidInput(f"{what}: Blob Storage refused the index tags ({code})", field="tags")
    if isinstance(exc, ResourceNotFoundError):
        return NotFound(f"{what}: not found")
    if isinstance(exc, ResourceExistsError):
        return Conflict(f"{what}: already exists")
    if isinstance(exc, ClientAuthenticationError):
        return Unavailable(f"{what}: Blob Storage refused the service's credentials")
    if isinstance(exc, HttpResponseError):
        if code == "InvalidBlockList":  # staged blocks expired or discarded
            return Conflict(f"{what}: some staged blocks are gone")
        if exc.status_code == 412:  # a read pinned to one ETag (If-Match) met a newer version
            return Conflict(f"{what}: the blob changed while it was being read")
        if exc.status_code is None or exc.status_code in _RETRYABLE:
            return Unavailable(f"{what}: Blob Storage answered {exc.status_code}")
        return None
    # Connection refused, DNS, timeouts (after SDK retries).
    return Unavailable(f"{what}: Blob Storage is unreachable")
