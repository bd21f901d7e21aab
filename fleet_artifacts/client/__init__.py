"""Python client of fleet-artifacts: ``Client`` (blocking) and ``AsyncClient`` (asyncio), on httpx.

Both send the same sans-IO calls (``calls``, ``jobcalls``) and run the same multi-step
flows (``flows``: uploads choosing proxied or direct-to-blob, verified downloads), retry
connection failures, 429 and 503 (honouring Retry-After) with an Idempotency-Key on every
create, and raise ``FleetError`` carrying the service's problem document.

Example:
    >>> from fleet_artifacts.client import Client  # doctest: +SKIP
    >>> with Client("http://127.0.0.1:8080", token) as fleet:  # doctest: +SKIP
    ...     out = fleet.upload("out/build.log", "nightly-42", run_id="attempt-1")
    ...     fleet.download(out.id, "copies/")
"""

from fleet_artifacts.client.aio import AsyncClient
from fleet_artifacts.client.errors import DigestMismatch, FleetConnectionError, FleetError
from fleet_artifacts.client.flows import UploadOptions
from fleet_artifacts.client.kinds import guess_kind
from fleet_artifacts.client.models import (
    Event,
    EventPage,
    JobPage,
    JobSummary,
    Manifest,
    ManifestArtifact,
    ManifestBody,
    Problem,
    SealOut,
    UploadSession,
)
from fleet_artifacts.client.retry import RetryPolicy
from fleet_artifacts.client.sync import Client

__all__ = [
    "AsyncClient",
    "Client",
    "DigestMismatch",
    "Event",
    "EventPage",
    "FleetConnectionError",
    "FleetError",
    "JobPage",
    "JobSummary",
    "Manifest",
    "ManifestArtifact",
    "ManifestBody",
    "Problem",
    "RetryPolicy",
    "SealOut",
    "UploadOptions",
    "UploadSession",
    "guess_kind",
]
