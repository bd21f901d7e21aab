"""The HTTP surface in one place: which handlers the app serves, under which guard."""

from __future__ import annotations

import swagger_ui_bundle
from litestar import Router, get
from litestar.static_files import create_static_files_router
from litestar.types import ControllerRouterHandler

from fleet_artifacts.core.models import Health
from fleet_artifacts.routes import archive, artifacts, downloads, jobs, lifecycle, shares, uploads
from fleet_artifacts.routes.deps import authorizing
from fleet_artifacts.routes.local_blobs import signed_blob, signed_blob_put
from fleet_artifacts.routes.metrics import metrics_page
from fleet_artifacts.routes.readiness import ready
from fleet_artifacts.routes.sessions import UploadSessionController

DOCS_ASSETS = "/docs/assets"


@get("/health", operation_id="health", tags=["health"])
async def health() -> Health:
    """Anonymous liveness probe."""
    return Health(status="ok")


def docs_assets() -> Router:
    """Swagger UI's files, from the swagger-ui-bundle package, for the /docs page."""
    return create_static_files_router(
        path=DOCS_ASSETS, directories=[swagger_ui_bundle.swagger_ui_path], include_in_schema=False
    )


def route_handlers(*, hosted_blobs: bool, metrics: bool = False) -> list[ControllerRouterHandler]:
    """Every handler; ``/blobs/`` only when this service hosts the blobs, ``/metrics`` when metrics are on."""
    # One Router for /fleet: Litestar merges the methods of one path only within one router.
    fleet = Router(
        path="/fleet",
        tags=["artifacts"],
        middleware=[authorizing],  # every /fleet route needs a bearer token with its scope, before the body
        route_handlers=[
            uploads.upload,
            uploads.start_direct_upload,
            uploads.finalize,
            artifacts.list_artifacts,
            artifacts.get_in_job,
            artifacts.get_by_id,
            artifacts.delete_in_job,
            artifacts.delete_by_id,
            artifacts.delete_job,
            downloads.content_in_job,
            downloads.content_by_id,
            archive.job_archive,
            jobs.list_jobs,
            jobs.manifest,
            jobs.seal,
            jobs.events,
            lifecycle.update_in_job,
            lifecycle.update_by_id,
            lifecycle.archive_in_job,
            lifecycle.archive_by_id,
            lifecycle.restore_in_job,
            lifecycle.restore_by_id,
            lifecycle.undelete_in_job,
            lifecycle.undelete_by_id,
            lifecycle.get_job_retention,
            lifecycle.set_job_retention,
            shares.share_in_job,
            shares.share_by_id,
            shares.shares_in_job,
            shares.shares_by_id,
            shares.revoke_share,
        ],
    )
    handlers: list[ControllerRouterHandler] = [
        fleet,
        UploadSessionController,
        health,
        ready,
        shares.follow_share,
    ]
    if hosted_blobs:
        handlers.extend([signed_blob, signed_blob_put])
    if metrics:
        handlers.append(metrics_page)
    return handlers
