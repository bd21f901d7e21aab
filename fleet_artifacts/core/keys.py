"""Names derived from an artifact: its blob key, and how its downloads present themselves."""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import quote

from fleet_artifacts.core.models import ArtifactKind

BLOB_PREFIX = "fleet/"  # every artifact's blob is under it (lifecycle rules and the orphan sweep use it)
# Where a direct upload's client writes; finalize copies the verified bytes to the artifact's key,
# so the write URL (an Azure SAS cannot be revoked) can never change a finalized artifact.
STAGING_PREFIX = "staging/"


def blob_key(product_id: str, job_id: str, artifact_id: str, kind: ArtifactKind) -> str:
    """Return ``fleet/<productId>/<jobId>/<id>-<kind>``."""
    return f"{BLOB_PREFIX}{product_id}/{job_id}/{artifact_id}-{kind.value}"


def staging_key(key: str) -> str:
    """The staging key of an artifact's blob key: ``staging/<productId>/<jobId>/<id>-<kind>``."""
    return STAGING_PREFIX + key.removeprefix(BLOB_PREFIX)


def parse_blob_key(key: str) -> tuple[str, str] | None:
    """The (job id, artifact id) a key made by ``blob_key`` (or its staging key) names; None otherwise."""
    parts = key.split("/")
    if len(parts) != 4 or parts[0] + "/" not in (BLOB_PREFIX, STAGING_PREFIX):
        return None
    artifact_id = parts[3].rpartition("-")[0]
    return (parts[2], artifact_id) if artifact_id else None


# Every pointer fetch builds one (3.5 µs); file names repeat across jobs (build.log, coverage.xml),
# so a hit costs 0.1 µs. Bounded: names come from clients.
@lru_cache(maxsize=1024)
def content_disposition(file_name: str, disposition: str = "attachment") -> str:
    """Build a Content-Disposition value safe for quotes and non-ASCII (RFC 6266).

    The quoted ``filename`` is an ASCII fallback (quotes, backslashes, percent
    signs and non-ASCII become ``_``); ``filename*`` carries the exact name.
    """
    fallback = "".join(ch if " " <= ch <= "~" and ch not in '"\\%' else "_" for ch in file_name)
    return f"{disposition}; filename=\"{fallback}\"; filename*=UTF-8''{quote(file_name, safe='')}"


# Types a browser shows without running anything of the file's: raster images (an explicit list:
# image/svg+xml and any other image/*+xml are documents that run script), media, PDF,
# plain text and data. Everything else (HTML, XHTML, SVG, XML, JavaScript, unknown types) could
# run script on the origin that serves it, and a signed URL is served by the storage account,
# where no Content-Security-Policy can be added: those are only ever signed as attachments.
_PASSIVE_PREFIXES = ("video/", "audio/")
_PASSIVE_TYPES = frozenset(
    {
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "image/avif",
        "image/bmp",
        "image/x-icon",
        "image/vnd.microsoft.icon",
        "text/plain",
        "text/csv",
        "text/markdown",
        "application/json",
        "application/x-ndjson",
        "application/pdf",
    }
)


def inline_safe(content_type: str) -> bool:
    """Whether a download of this type may be viewed inline from a signed URL.

    >>> inline_safe("image/png"), inline_safe("text/plain; charset=utf-8"), inline_safe("image/svg+xml")
    (True, True, False)
    """
    essence = content_type.split(";", 1)[0].strip().lower()
    return essence in _PASSIVE_TYPES or essence.startswith(_PASSIVE_PREFIXES)


def signed_disposition(content_type: str, asked: str) -> str:
    """The disposition a signed URL gets: ``inline`` only for types safe to view inline."""
    return asked if asked == "attachment" or inline_safe(content_type) else "attachment"
