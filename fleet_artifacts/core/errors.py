"""The project's own errors.

Adapters translate SDK and I/O failures into these at one boundary each
(``raise ... from exc``); the HTTP layer maps them to problem documents in one
table (``fleet_artifacts.routes.problems``). Nothing above the adapters catches an
Azure SDK exception.

    ArtifactError
    ├── InvalidInput          400  the request cannot be acted on as sent
    ├── Unauthenticated       401  no or unknown bearer token
    ├── Forbidden             403  the token lacks the scope the operation needs
    ├── NotFound              404  absent, or owned by another product
    ├── Conflict              409  a create raced an existing item
    │   ├── JobSealed         409  the job was sealed: it takes no new artifact
    │   └── Archived          409  the bytes are offline (Archive tier) until restored
    ├── Gone                  410  an event cursor older than the events kept
    ├── PreconditionFailed    412  an etag compare-and-swap lost
    ├── SignatureRejected     403  a signed blob URL is forged, altered or expired
    ├── PayloadTooLarge       413  the upload crossed the size limit
    ├── UnsupportedMediaType  415  the upload's content type has no reading
    ├── RangeNotSatisfiable   416  a Range header selects no byte
    ├── Unprocessable         422  well-formed, but contradicts what was stored
    └── Unavailable           503  a backend (Blob, pointers) cannot be reached
"""

from __future__ import annotations


class ArtifactError(Exception):
    """Base of every error the service raises on purpose."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidInput(ArtifactError):
    """The request is malformed or violates a validation rule."""

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.field = field


class Unauthenticated(ArtifactError):
    """The bearer token is missing or unknown."""


class Forbidden(ArtifactError):
    """The token is valid but lacks the scope the operation needs."""

    def __init__(self, detail: str, *, scope: str) -> None:
        super().__init__(detail)
        self.scope = scope


class NotFound(ArtifactError):
    """The item does not exist, or is not visible to the caller."""


class Conflict(ArtifactError):
    """An item with the same identity exists already."""


class JobSealed(Conflict):
    """The job was sealed: it takes no new artifact."""


class Archived(Conflict):
    """A blob in the Archive tier (or still being rehydrated from it) cannot be read."""


class Gone(ArtifactError):
    """What the request resumes from is no longer kept (an event cursor past the retention)."""


class PreconditionFailed(ArtifactError):
    """An optimistic-concurrency check (etag) failed."""


class PayloadTooLarge(ArtifactError):
    """The upload is larger than the configured limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"upload exceeds the limit of {limit} bytes")
        self.limit = limit


class UnsupportedMediaType(ArtifactError):
    """The request body's content type is not one the route reads."""


class SignatureRejected(ArtifactError):
    """A signed URL was not signed by us, was altered, lacks a permission, or expired."""


class RangeNotSatisfiable(ArtifactError):
    """The Range header selects no byte of the representation."""

    def __init__(self, size: int) -> None:
        super().__init__(f"the requested range is outside the {size} bytes of the artifact")
        self.size = size


class Unprocessable(ArtifactError):
    """The request is well-formed but contradicts the stored state (e.g. a digest mismatch)."""


class Unavailable(ArtifactError):
    """A backend could not be reached or answered with a server error."""

    def __init__(self, detail: str, *, retry_after: int = 5) -> None:
        super().__init__(detail)
        self.retry_after = retry_after
