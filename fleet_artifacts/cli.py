"""Command line: ``fleet-artifacts serve [--host H] [--port P]`` and ``fleet-artifacts cosmos-init``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import msgspec

from fleet_artifacts import __version__
from fleet_artifacts.settings import Settings, SettingsError, load_settings
from fleet_artifacts.stores.signing import load_or_create_secret

TOKEN_FILE = "token"  # noqa: S105 - a file name, not a secret
DEFAULT_PRODUCT = "default"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fleet-artifacts", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP service (uvicorn)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port to bind (default 8080)")
    commands.add_parser(
        "cosmos-init",
        help="create the Cosmos DB database and container if missing (idempotent)",
        description="Create the configured Cosmos DB database and container (partition key /jobId, "
        "per-item TTL on, the indexing policy the queries need) if they are missing.",
    )
    gc = commands.add_parser("gc", help="remove what clients left behind")
    gc.add_argument(
        "--stale-uploads",
        action="store_true",
        help="remove direct uploads not finalized by their deadline (blob, staged blocks, pointer), "
        "expired upload sessions (with their staged bytes) and expired idempotency keys",
    )
    gc.add_argument(
        "--orphans",
        action="store_true",
        help="remove committed blobs that no pointer names (left by a crash between the two writes)",
    )
    gc.add_argument(
        "--grace-seconds",
        type=int,
        default=3600,
        help="with --orphans: leave blobs younger than this alone (default 3600)",
    )
    gc.add_argument("--dry-run", action="store_true", help="list what would be removed, remove nothing")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fleet-artifacts`` console script."""
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(os.environ)
    except SettingsError as exc:
        print(f"fleet-artifacts: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.command == "serve":
        return serve(settings, args.host, args.port)
    if args.command == "gc":
        if not (args.stale_uploads or args.orphans):
            print("fleet-artifacts: gc needs --stale-uploads and/or --orphans", file=sys.stderr)
            return 2
        return collect(
            settings,
            stale_uploads=args.stale_uploads,
            orphans=args.orphans,
            grace=args.grace_seconds,
            dry_run=args.dry_run,
        )
    return init_cosmos(settings)


def collect(settings: Settings, *, stale_uploads: bool, orphans: bool, grace: int, dry_run: bool) -> int:
    """Run the chosen sweeps once against the configured stores."""
    import asyncio
    from datetime import timedelta

    from fleet_artifacts.app import StartupError, limits_of, open_stores
    from fleet_artifacts.core.clock import utcnow
    from fleet_artifacts.core.gc import sweep_expired_records, sweep_orphan_blobs, sweep_stale_uploads
    from fleet_artifacts.core.kernel import Kernel

    async def run() -> list[str]:
        removed: list[str] = []
        async with open_stores(settings) as (blobs, pointers):
            kernel = Kernel(blobs, pointers, limits=limits_of(settings))
            now = utcnow()
            if stale_uploads:
                removed += await sweep_stale_uploads(kernel, now=now, dry_run=dry_run)
                removed += await sweep_expired_records(kernel, now=now, dry_run=dry_run)
            if orphans:
                cutoff = now - timedelta(seconds=grace)
                removed += await sweep_orphan_blobs(kernel, older_than=cutoff, dry_run=dry_run)
        return removed

    try:
        removed = asyncio.run(run())
    except StartupError as exc:
        print(f"fleet-artifacts: gc failed: {exc}", file=sys.stderr)
        return 1
    verb = "would remove" if dry_run else "removed"
    for key in removed:
        print(f"{verb} {key}")
    print(f"{verb} {len(removed)} blob(s)")
    return 0


def init_cosmos(settings: Settings) -> int:
    """Run cosmos-init and print what it created or found."""
    import asyncio

    from fleet_artifacts.core.errors import ArtifactError
    from fleet_artifacts.cosmos_init import cosmos_init

    if not settings.cosmos_endpoint:
        print("fleet-artifacts: cosmos-init needs FLEET_ARTIFACTS_COSMOS_ENDPOINT", file=sys.stderr)
        return 2
    try:
        print(asyncio.run(cosmos_init(settings)))
    except (ArtifactError, SettingsError) as exc:
        print(f"fleet-artifacts: cosmos-init failed: {getattr(exc, 'detail', exc)}", file=sys.stderr)
        return 1
    return 0


def serve(settings: Settings, host: str, port: int) -> int:
    """Print where things are, then run the app under uvicorn until interrupted."""
    import uvicorn

    from fleet_artifacts.app import create_app
    from fleet_artifacts.serving import bounded_protocol

    data_dir = settings.data_dir.resolve()
    token_note = f"{len(settings.tokens)} configured in FLEET_ARTIFACTS_TOKENS"
    if not settings.tokens:
        # Zero-config start: one token for product "default", generated once and kept.
        token_file = data_dir / TOKEN_FILE
        token = load_or_create_secret(token_file, prefix="fa_")
        settings = msgspec.structs.replace(settings, tokens={token: DEFAULT_PRODUCT})
        token_note = f"{token}  (product {DEFAULT_PRODUCT!r}; kept in {token_file})"
    if settings.blob_backend == "local":
        blobs = f"local directory {data_dir / 'blobs'}"
    else:
        where = settings.azure_storage_account_url or "connection string"
        blobs = f"Azure Blob container {settings.blob_container!r} ({where})"
    if settings.pointer_backend == "cosmos":
        pointers = (
            f"Cosmos DB {settings.cosmos_endpoint} "
            f"(database {settings.cosmos_database!r}, container {settings.cosmos_container!r})"
        )
    else:
        pointers = f"SQLite {data_dir / 'pointers.sqlite3'}"
    print(
        f"fleet-artifacts {__version__} listening on http://{host}:{port}\n"
        f"  blobs:        {blobs}\n"
        f"  pointers:     {pointers}\n"
        f"  bearer token: {token_note}\n"
        f"  API docs:     http://{host}:{port}/docs",
        flush=True,
    )
    # A failing lifespan (say, Blob Storage unreachable) is logged by uvicorn, which then exits 3.
    # No access log: it would print every signed URL's query string, signature included.
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        access_log=False,
        http=bounded_protocol(settings.max_header_bytes, settings.header_timeout_seconds),
    )
    return 0
