"""Wire shapes of the client: the server's own structs, and the few it has none for.

The job-level answers (jobs list, manifest, seal, event feed) are the server's structs from
``fleet_artifacts.core.journal``, under the client's names; upload sessions and the problem
document are defined here. msgspec decodes leniently (unknown fields are ignored), so a newer
server adding fields never breaks an older client.
"""

from __future__ import annotations

from typing import Any

import msgspec

from fleet_artifacts.core.journal import EntryOut as ManifestArtifact
from fleet_artifacts.core.journal import EventOut as Event
from fleet_artifacts.core.journal import EventPageOut as EventPage
from fleet_artifacts.core.journal import JobOut as JobSummary
from fleet_artifacts.core.journal import JobPageOut as JobPage
from fleet_artifacts.core.journal import Manifest, SealOut
from fleet_artifacts.core.models import SessionOut as UploadSession

__all__ = [
    "Event",
    "EventPage",
    "JobPage",
    "JobSummary",
    "Manifest",
    "ManifestArtifact",
    "ManifestBody",
    "Problem",
    "SealOut",
    "UploadSession",
]


class Problem(msgspec.Struct, kw_only=True):
    """An RFC 9457 problem document, as every error answer of the service carries."""

    type: str = "about:blank"
    title: str = ""
    status: int = 0
    detail: str = ""
    instance: str | None = None
    field: str | None = None
    extra: dict[str, Any] = msgspec.field(default_factory=dict)  # members beyond the standard ones


class ManifestBody(msgspec.Struct, kw_only=True):
    """A manifest exactly as served (JSON or CBOR bytes) with its strong ETag."""

    body: bytes
    etag: str
    media_type: str
