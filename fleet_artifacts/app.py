"""Application factory: ``create_app(settings)`` wires adapters, core and routes.

The one place (with the CLI) that knows both sides: it picks the adapters
(``stores/``), hands them to the core (``core/``) and serves it over HTTP
(``routes/``). Settings are read here and nowhere else. Each backend client is
created once per process in the lifespan and closed there. Tests may pass their
own ``open_stores`` (for example one that wraps a real adapter in an honest
fault-injecting fake of the port).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from datetime import datetime, timedelta

from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.logging import LoggingConfig
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.routes import HTTPRoute

from fleet_artifacts import __version__
from fleet_artifacts.core import audit
from fleet_artifacts.core.artifacts import ArtifactService
from fleet_artifacts.core.clock import utcnow
from fleet_artifacts.core.direct import DirectUploads
from fleet_artifacts.core.errors import ArtifactError
from fleet_artifacts.core.hosted import HostedBlobStore
from fleet_artifacts.core.jobs import Jobs
from fleet_artifacts.core.kernel import Kernel, Limits
from fleet_artifacts.core.lifecycle import Lifecycle
from fleet_artifacts.core.ports import BlobStore, PointerStore
from fleet_artifacts.core.readiness import Readiness
from fleet_artifacts.core.sessions import SessionService
from fleet_artifacts.core.shares import Shares
from fleet_artifacts.core.sweeper import Sweeper
from fleet_artifacts.routes.access_log import access_log, true_allow
from fleet_artifacts.routes.auth import TokenAuthority
from fleet_artifacts.routes.deps import BLOB_PATH, Services
from fleet_artifacts.routes.hosts import LOOPBACK, trusted_hosts
from fleet_artifacts.routes.hot import hot_reads
from fleet_artifacts.routes.log_lines import JsonFormatter, stderr_lines
from fleet_artifacts.routes.metrics import Metrics, counting
from fleet_artifacts.routes.problems import EXCEPTION_HANDLERS
from fleet_artifacts.routes.router import DOCS_ASSETS, docs_assets, route_handlers
from fleet_artifacts.routes.ui import templates, ui_handlers
from fleet_artifacts.settings import Settings, SettingsError
from fleet_artifacts.stores.azure_blob import AzureBlobStore
from fleet_artifacts.stores.cosmos import CosmosPointerStore
from fleet_artifacts.stores.local_blob import LocalBlobStore
from fleet_artifacts.stores.signing import UrlSigner, load_or_create_key
from fleet_artifacts.stores.sqlite import SqlitePointerStore

log = logging.getLogger(__name__)


class StartupError(RuntimeError):
    """A backend could not be opened at start-up; the message says which and why."""


@asynccontextmanager
async def open_stores(settings: Settings) -> AsyncIterator[tuple[BlobStore, PointerStore]]:
    """Open the configured blob and pointer stores; close them on exit.

    ``DURABILITY`` reaches the two stores that write this machine's disk: ``power`` fsyncs every
    local blob write and SQLite commit, ``process`` neither (a crash of the process keeps them).
    """
    power = settings.durability == "power"
    async with AsyncExitStack() as stack:
        blobs: BlobStore
        if settings.blob_backend == "local":
            signer = UrlSigner(load_or_create_key(settings.signing_key, settings.data_dir))
            blobs = LocalBlobStore(
                settings.data_dir / "blobs", signer, url_prefix=BLOB_PATH + "/", fsync=power
            )
        else:
            azure = AzureBlobStore.from_settings(settings)
            stack.push_async_callback(azure.close)
            try:
                await azure.open()
            except Exception as exc:
                raise StartupError(f"cannot open Blob container {settings.blob_container!r}: {exc}") from exc
            blobs = azure
        pointers: PointerStore
        if settings.pointer_backend == "cosmos":
            cosmos = CosmosPointerStore.from_settings(settings)
            stack.push_async_callback(cosmos.close)
            try:
                await cosmos.open()
            except ArtifactError as exc:
                raise StartupError(f"cannot open the Cosmos DB pointer store: {exc.detail}") from exc
            pointers = cosmos
        else:
            sqlite = SqlitePointerStore(
                settings.data_dir / "pointers.sqlite3", synchronous="FULL" if power else "NORMAL"
            )
            stack.push_async_callback(sqlite.close)
            pointers = sqlite
        yield blobs, pointers


StoresOpener = Callable[[Settings], AbstractAsyncContextManager[tuple[BlobStore, PointerStore]]]


def reload_on_sighup(auth: TokenAuthority) -> None:
    """Read the tokens file again on SIGHUP (where signals reach this loop: the main thread, POSIX)."""
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError, AttributeError):
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, auth.reload)


async def sweep_in_background(
    sweeper: Sweeper,
    interval: timedelta,
    *,
    on_sweep: Callable[[Mapping[str, Sequence[str]]], None] | None = None,
) -> None:
    """Every ``interval`` (the first after a random part of it), sweep if this replica gets the lease.

    The jitter spreads replicas started together; the lease makes one of them do the work.
    ``on_sweep`` is told what each sweep of this replica did (the metrics count it).
    """
    await asyncio.sleep(random.uniform(1, max(1.0, min(60.0, interval.total_seconds()))))  # noqa: S311
    while True:
        try:
            done = await sweeper.run_if_due(interval)
            if done is not None and on_sweep is not None:
                on_sweep(done)
        except Exception:
            log.exception("background sweep failed; the next interval tries again")
        await asyncio.sleep(interval.total_seconds())


def create_app(
    settings: Settings,
    *,
    open_stores: StoresOpener = open_stores,
    clock: Callable[[], datetime] = utcnow,
) -> Litestar:
    """Build the Litestar app for ``settings`` (``clock``: tests move time).

    Example:
        >>> app = create_app(load_settings(os.environ))  # doctest: +SKIP
        >>> uvicorn.run(app, host="127.0.0.1", port=8080)  # doctest: +SKIP
    """
    if not settings.tokens and settings.tokens_file is None:
        raise SettingsError(
            "no bearer tokens configured (FLEET_ARTIFACTS_TOKENS or FLEET_ARTIFACTS_TOKENS_FILE)"
        )

    limits = limits_of(settings)
    # Routes are fixed before the stores open: the signed /blobs/ routes exist exactly when the
    # configured blob store is one this service hosts (checked once the store is open).
    hosts_blobs = settings.blob_backend == "local"
    # Off: no /metrics route and no counting wrapper, so requests pay nothing for them.
    metrics = Metrics(token=settings.metrics_token) if settings.metrics else None

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with open_stores(settings) as (blobs, pointers):
            hosted = blobs if isinstance(blobs, HostedBlobStore) else None
            if (hosted is not None) != hosts_blobs:
                raise StartupError(f"blob backend {settings.blob_backend!r} opened a {type(blobs).__name__}")
            kernel = Kernel(blobs, pointers, limits=limits, clock=clock)
            auth = TokenAuthority(
                settings.tokens, file=settings.tokens_file, anonymous_read=settings.anon_read_product
            )
            reload_on_sighup(auth)
            direct = DirectUploads(kernel)
            app.state.services = Services(
                kernel=kernel,
                artifacts=ArtifactService(kernel),
                lifecycle=Lifecycle(kernel),
                shares=Shares(kernel, max_lifetime=timedelta(seconds=settings.max_share_seconds)),
                direct=direct,
                sessions=SessionService(kernel),
                # A long poll looks at the store again this often (any replica may have written).
                jobs=Jobs(kernel, poll_interval=1.0 if settings.pointer_backend == "cosmos" else 0.25),
                auth=auth,
                public_base_url=settings.public_base_url,
                hosted=hosted,
                write_allowed=direct.upload_open,
            )
            # GET /ready (routes/readiness.py): both stores' checks, each within its deadline.
            app.state.readiness = Readiness(blobs, pointers, timeout=settings.ready_timeout_seconds)
            sweeping = None
            if settings.sweep_interval_seconds:
                interval = timedelta(seconds=settings.sweep_interval_seconds)
                sweeping = asyncio.create_task(
                    sweep_in_background(
                        Sweeper(kernel), interval, on_sweep=None if metrics is None else metrics.swept_once
                    )
                )
            try:
                yield
            finally:
                if sweeping is not None:
                    sweeping.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await sweeping

    openapi = OpenAPIConfig(
        title="fleet-artifacts",
        version=__version__,
        description="Artifact store for CI fleets: bytes in Azure Blob, pointers in a database. "
        "Every error is application/problem+json.",
        path="/docs",
        # The page's scripts come from the service itself (a packaged Swagger UI): no CDN, so
        # the docs work on a machine with no internet access.
        render_plugins=[
            SwaggerRenderPlugin(
                path="/",
                js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
                css_url=f"{DOCS_ASSETS}/swagger-ui.css",
                standalone_preset_js_url=f"{DOCS_ASSETS}/swagger-ui-standalone-preset.js",
                favicon="",
            ),
            JsonRenderPlugin(),
        ],
        # The bearer scheme; the operations that need it say so themselves (not /health, /docs, /blobs).
        components=Components(security_schemes={"bearer": SecurityScheme(type="http", scheme="bearer")}),
    )
    logging_config = LoggingConfig(
        root={"level": settings.log_level, "handlers": ["queue_listener"]},
        loggers={
            "azure": {"level": "WARNING"},  # azure-core logs every request (and SAS URLs) at INFO
            # The audit trail: JSON lines alone on stderr, apart from the access log. Its lines are
            # written there directly (``audit.write_to`` below); the handler serves any other record.
            "fleet_artifacts.audit": {"level": "INFO", "handlers": ["audit"], "propagate": False},
        },
        handlers={
            "audit": {"class": "logging.StreamHandler", "formatter": "audit", "stream": "ext://sys.stderr"}
        },
        formatters={
            "audit": {"format": "%(message)s"},
            **({"standard": {"()": JsonFormatter}} if settings.log_format == "json" else {}),
        },
        log_exceptions="never",  # the problem handlers log what deserves it
    )
    audit.write_to(stderr_lines)
    audit.count_signed_with(None if metrics is None else metrics.signed)
    app = Litestar(
        route_handlers=[
            *route_handlers(hosted_blobs=hosts_blobs, metrics=metrics is not None),
            docs_assets(),
            # The browse page; its CSRF secret comes from SIGNING_KEY (random per process without it).
            *ui_handlers(
                key=settings.signing_key,
                secure_cookies=(settings.public_base_url or "").startswith("https://"),
            ),
        ],
        template_config=templates(),
        cors_config=cors_of(settings),
        lifespan=[lifespan],
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        openapi_config=openapi,
        logging_config=logging_config,
    )
    allowed = {
        route.path_format: sorted(str(getattr(m, "value", m)) for m in route.methods)
        for route in app.routes
        if isinstance(route, HTTPRoute)
    }
    app.state.metrics = metrics  # GET /metrics (routes/metrics.py) reads it
    # Plain pointer fetches are answered in front of the router (routes/hot.py); the rest go through it.
    served = trusted_hosts(true_allow(hot_reads(app.asgi_handler, app), allowed), hosts_of(settings))
    if metrics is not None:  # outside the hosts check: a refused Host is counted, as "unmatched"
        served = counting(served, metrics)
    # Outermost, so unknown routes (404) and refused methods (405) get their line too.
    app.asgi_handler = access_log(served, json=settings.log_format == "json")
    return app


# What a browser dashboard or front-end upload sends and needs to read (the signed PUT included).
CORS_REQUEST_HEADERS = [
    "Authorization",
    "Content-Type",
    "Content-Range",
    "Idempotency-Key",
    "If-Match",
    "If-None-Match",
    "Range",
    "X-Request-ID",
    "x-ms-blob-type",
    "x-ms-blob-content-type",
    "x-ms-version",
    "x-ms-date",
    "x-ms-client-request-id",
]
CORS_EXPOSED_HEADERS = [
    "ETag",
    "Location",
    "Content-Range",
    "Content-Disposition",
    "Idempotent-Replayed",
    "Retry-After",
    "Accept-Ranges",
    "X-Job-Digest",
    "X-Skipped-Artifacts",
    "X-Request-ID",
]


def cors_of(settings: Settings) -> CORSConfig | None:
    """CORS for browser dashboards (``CORS_ORIGINS``; off when unset). Bearer tokens, no cookies."""
    if not settings.cors_origins:
        return None
    return CORSConfig(
        allow_origins=list(settings.cors_origins),
        allow_methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"],
        allow_headers=CORS_REQUEST_HEADERS,
        expose_headers=CORS_EXPOSED_HEADERS,
        max_age=600,
    )


def hosts_of(settings: Settings) -> tuple[str, ...] | None:
    """The Host names requests may carry: ALLOWED_HOSTS; else loopback, or any with PUBLIC_BASE_URL."""
    if settings.allowed_hosts is not None:
        return settings.allowed_hosts
    return None if settings.public_base_url else LOOPBACK


def limits_of(settings: Settings) -> Limits:
    """The core's bounds and lifetimes, from the settings."""
    return Limits(
        max_upload_bytes=settings.max_upload_bytes,
        max_envelope_bytes=settings.max_envelope_bytes,
        sas_ttl=timedelta(seconds=settings.sas_ttl_seconds),
        max_sas_ttl=timedelta(seconds=settings.max_sas_ttl_seconds),
        upload_url_ttl=timedelta(seconds=settings.upload_url_ttl_seconds),
        verify_max_bytes=settings.verify_max_bytes,
        idempotency_retention=timedelta(seconds=settings.idempotency_retention_seconds),
        session_ttl=timedelta(seconds=settings.session_ttl_seconds),
        default_retention_days=settings.default_retention_days,
        max_retention_days=settings.max_retention_days,
        soft_delete=timedelta(days=settings.soft_delete_days),
        event_retention=timedelta(days=settings.event_retention_days),
        cool_after_days=settings.cool_after_days,
        cold_after_days=settings.cold_after_days,
        archive_after_days=settings.archive_after_days,
    )
