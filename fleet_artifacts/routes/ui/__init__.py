"""The browse page (``/ui``): a product's jobs and artifacts in a browser, read-only, with previews.

Server-rendered (Jinja2 templates, plain CSS, one small script for copy buttons, all served
from ``/ui/static``); signed in with a bearer token kept in a cookie (``session``); each page
is one API call rendered (``pages``); values are shown by ``views``. Nothing here is in the
OpenAPI document: the API is the contract, the page is a view of it.
"""

from __future__ import annotations

from litestar import Router, get
from litestar.middleware.base import DefineMiddleware
from litestar.response import Redirect
from litestar.static_files import create_static_files_router
from litestar.types import ControllerRouterHandler

from fleet_artifacts.routes.problems import EXCEPTION_HANDLERS
from fleet_artifacts.routes.ui import pages, session
from fleet_artifacts.routes.ui.views import STATIC, templates

__all__ = ["templates", "ui_handlers"]


@get("/", include_in_schema=False)
async def to_ui() -> Redirect:
    """The service's root shows the browse page."""
    return Redirect(session.UI_PATH, status_code=302)


def ui_handlers(*, key: str | None, secure_cookies: bool) -> list[ControllerRouterHandler]:
    """The page's routes: ``/ui`` (CSRF-checked forms), its static files, and ``/`` redirecting to it.

    ``key``: SIGNING_KEY, from which the CSRF secret is derived (see ``session.csrf_config``).
    """
    # CSRF as this router's middleware, not the app's: the API's POSTs (multipart uploads
    # included) are never read as forms nor asked for a cookie they cannot have.
    csrf = DefineMiddleware(session.RenewingCSRF, config=session.csrf_config(key, secure=secure_cookies))
    ui = Router(
        path=session.UI_PATH,
        include_in_schema=False,
        middleware=[csrf],
        # Every error of a page answered as a page, the framework's too (a failed CSRF check): the
        # app's classes, each overridden (Litestar picks the nearest class, from any layer).
        exception_handlers=dict.fromkeys(EXCEPTION_HANDLERS, pages.error_page),
        route_handlers=[
            session.sign_in_form,
            session.sign_in,
            session.sign_out,
            pages.jobs_page,
            pages.job_page,
            pages.artifact_page,
            pages.share_page,
            pages.job_zip,
        ],
    )
    static = create_static_files_router(
        path=f"{session.UI_PATH}/static",
        directories=[STATIC],
        include_in_schema=False,
        cache_control=None,
        name="ui-static",
    )
    return [ui, static, to_ui]
