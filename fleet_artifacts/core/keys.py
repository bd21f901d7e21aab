"""Names derived from an artifact: its blob key, and the Content-Disposition its downloads carry."""

from __future__ import annotations

from urllib.parse import quote

from fleet_artifacts.core.models import ArtifactKind


def blob_key(product_id: str, job_id: str, artifact_id: str, kind: ArtifactKind) -> str:
    """Return ``fleet/<productId>/<jobId>/<id>-<kind>``."""
    return f"fleet/{product_id}/{job_id}/{artifact_id}-{kind.value}"


def parse_blob_key(key: str) -> tuple[str, str] | None:
    """The (job id, artifact id) a key made by ``blob_key`` names; None for any other key."""
    parts = key.split("/")
    if len(parts) != 4 or parts[0] != "fleet":
        return None
    artifact_id = parts[3].rpartition("-")[0]
    return (parts[2], artifact_id) if artifact_id else None


def content_disposition(file_name: str, disposition: str = "attachment") -> str:
    """Build a Content-Disposition value safe for quotes and non-ASCII (RFC 6266).

    The quoted ``filename`` is an ASCII fallback (quotes, backslashes, percent
    signs and non-ASCII become ``_``); ``filename*`` carries the exact name.
    """
    fallback = "".join(ch if " " <= ch <= "~" and ch not in '"\\%' else "_" for ch in file_name)
    return f"{disposition}; filename=\"{fallback}\"; filename*=UTF-8''{quote(file_name, safe='')}"
