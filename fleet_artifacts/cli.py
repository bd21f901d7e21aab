"""Command line: ``serve``, ``cosmos-init``, ``gc``, ``lifecycle-policy`` (``--help`` on each)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import msgspec

from fleet_artifacts import __version__
from fleet_artifacts.client.cli import WORKER_COMMANDS, add_worker_commands, run_worker_command
from fleet_artifacts.core.access import TokenEntry, digest_of, new_token, parse_scopes
from fleet_artifacts.core.errors import InvalidInput
from fleet_artifacts.settings import Settings, SettingsError, load_settings
from fleet_artifacts.stores.signing import load_or_create_secret

TOKEN_FILE = "token"  # noqa: S105 - a file name, not a secret
DEFAULT_PRODUCT = "default"


def _port(value: str) -> int:
    """A TCP port, 0 to 65535 (argparse type)."""
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port (0 to 65535)")
    return port


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fleet-artifacts",
        description="An artifact store for CI fleets: bytes in Azure Blob Storage (or a local "
        "directory), pointers in Cosmos DB (or SQLite), fresh signed links. Configured by "
        "FLEET_ARTIFACTS_* variables (see .env.example).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="run the HTTP service (uvicorn)",
        description="Run the HTTP service until interrupted. With no configuration it stores blobs "
        "and pointers in ./fleet-artifacts-data and prints a bearer token made for product 'default'.",
    )
    serve.add_argument(
        "--host", help="address to bind (default: FLEET_ARTIFACTS_HOST, else 127.0.0.1; 0.0.0.0 for all)"
    )
    serve.add_argument(
        "--port",
        type=_port,
        help="port to bind (default: FLEET_ARTIFACTS_PORT, else 8080; 0 picks a free one)",
    )
    commands.add_parser(
        "cosmos-init",
        help="create the Cosmos DB database and container if missing (idempotent)",
        description="Create the configured Cosmos DB database and container (partition key /jobId, "
        "per-item TTL on, the indexing policy the queries need) if they are missing.",
    )
    gc = commands.add_parser(
        "gc",
        help="sweep once: expired artifacts, tier moves, restores, stale uploads, orphans",
        description="Run the sweep once against the configured stores, as the service does every "
        "SWEEP_INTERVAL_SECONDS: with no step flag every step, in this order; flags choose steps. "
        "Prints one line per item (removed, moved, restored; with --dry-run, that would be) and a "
        "count per step. Safe beside a running service and another gc.",
    )
    gc.add_argument("--expired", action="store_true", help="remove artifacts past expiresAt (blob, pointer)")
    gc.add_argument(
        "--tiers", action="store_true", help="move old artifacts to Cool/Cold/Archive (*_AFTER_DAYS settings)"
    )
    gc.add_argument("--restores", action="store_true", help="mark rehydrated RESTORING artifacts ACTIVE")
    gc.add_argument(
        "--stale-uploads",
        action="store_true",
        help="remove direct uploads not finalized by their deadline (blob, staged blocks, pointer), "
        "expired upload sessions (with their staged bytes), idempotency keys, share links and old events",
    )
    gc.add_argument(
        "--orphans",
        action="store_true",
        help="remove committed blobs that no pointer names (left by a crash between the two writes), "
        "and temp files of writes killed mid-stream once a day untouched (local backend)",
    )
    gc.add_argument(
        "--grace-seconds",
        type=int,
        default=3600,
        help="orphans: leave blobs younger than this alone (default 3600; temp files always wait a day)",
    )
    gc.add_argument("--dry-run", action="store_true", help="list what would be done, change nothing")
    token = commands.add_parser(
        "token",
        help="make a bearer token",
        description="`token new --product P [--scopes read+write]` prints a fresh token once, and the "
        "line to configure it by its hash only (in FLEET_ARTIFACTS_TOKENS or a TOKENS_FILE).",
    )
    token_commands = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    made = token_commands.add_parser("new", help="print a fresh token and its hashed config line")
    made.add_argument("--product", required=True, help="the product the token acts for")
    made.add_argument(
        "--scopes",
        default="read+write+delete+admin",
        help="+-joined subset of read, write, delete, admin, share (default: the first four)",
    )
    cors = commands.add_parser(
        "storage-cors",
        help="print (or --apply) the Blob service CORS rules browsers need for direct uploads",
        description="Print the storage account's CORS rules that let the given origins PUT to upload "
        "URLs and GET download URLs straight from Blob Storage; --apply sets them through the SDK "
        "(replacing the account's CORS rules, nothing else). The API's own: FLEET_ARTIFACTS_CORS_ORIGINS.",
    )
    cors.add_argument("--origin", action="append", required=True, help="an allowed origin (repeatable)")
    cors.add_argument("--apply", action="store_true", help="set the rules on the configured account")
    commands.add_parser(
        "lifecycle-policy",
        help="print the Azure Storage lifecycle-management policy equivalent to the settings",
        description="Print (JSON) an Azure Storage lifecycle-management policy for the blobs under fleet/: "
        "tier moves after COOL/COLD/ARCHIVE_AFTER_DAYS, and a delete after MAX_RETENTION_DAYS + 1 of "
        "every blob not tagged keep=true, as a second line of defence behind the sweeper. Apply it with "
        "`az storage account management-policy create --policy @policy.json ...`.",
    )
    add_worker_commands(commands)  # push, ls, get, rm, url, manifest, jobs: clients of a running service
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fleet-artifacts`` console script."""
    args = _parser().parse_args(argv)
    if args.command in WORKER_COMMANDS:
        return run_worker_command(args)
    if args.command == "token":
        return make_token(args.product, args.scopes)
    try:
        settings = load_settings(os.environ)
    except SettingsError as exc:
        print(f"fleet-artifacts: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.command == "serve":
        return serve(settings, args.host or settings.host, settings.port if args.port is None else args.port)
    if args.command == "gc":
        if args.grace_seconds < 0:
            print("fleet-artifacts: --grace-seconds cannot be negative", file=sys.stderr)
            return 2
        return collect(settings, steps=_steps(args), grace=args.grace_seconds, dry_run=args.dry_run)
    if args.command == "storage-cors":
        return storage_cors(settings, args.origin, apply=args.apply)
    if args.command == "lifecycle-policy":
        from fleet_artifacts.lifecycle_policy import policy_json

        print(policy_json(settings))
        return 0
    return init_cosmos(settings)


_STEP_FLAGS = {
    "expired": ["expired"],
    "tiers": ["tiers"],
    "restores": ["restores"],
    "stale_uploads": ["stale-uploads", "sessions", "keys", "shares", "events"],
    "orphans": ["orphans", "temps"],
}


def _steps(args: argparse.Namespace) -> list[str] | None:
    """The sweep steps the flags choose; None (every step) when no flag is given."""
    chosen = [step for flag, steps in _STEP_FLAGS.items() if getattr(args, flag) for step in steps]
    return chosen or None


def collect(settings: Settings, *, steps: list[str] | None, grace: int, dry_run: bool) -> int:
    """Sweep once against the configured stores; print each item and the counts per step."""
    import asyncio
    from datetime import timedelta

    from fleet_artifacts.app import StartupError, limits_of, open_stores
    from fleet_artifacts.core.errors import ArtifactError
    from fleet_artifacts.core.kernel import Kernel
    from fleet_artifacts.core.sweeper import STEPS, Sweeper, summary

    async def run() -> dict[str, list[str]]:
        async with open_stores(settings) as (blobs, pointers):
            sweeper = Sweeper(
                Kernel(blobs, pointers, limits=limits_of(settings)), orphan_grace=timedelta(seconds=grace)
            )
            return await sweeper.sweep(steps=steps or STEPS, dry_run=dry_run)

    try:
        done = asyncio.run(run())
    except (StartupError, ArtifactError) as exc:
        print(f"fleet-artifacts: gc failed: {getattr(exc, 'detail', exc)}", file=sys.stderr)
        return 1
    prefix = "would: " if dry_run else ""
    for step, items in done.items():
        for item in items:
            print(f"{prefix}{step} {item}", file=sys.stderr if step == "errors" else sys.stdout)
    print(f"{'would do' if dry_run else 'done'}: {summary(done)}")
    return 1 if "errors" in done else 0  # a step that failed: the next run retries it


def storage_cors(settings: Settings, origins: list[str], *, apply: bool) -> int:
    """Print the Blob service CORS rules for ``origins``; with ``apply``, set them too."""
    import asyncio

    from fleet_artifacts.storage_cors import apply as apply_rules
    from fleet_artifacts.storage_cors import rules_json

    print(rules_json(origins))
    if apply:
        try:
            asyncio.run(apply_rules(settings, origins))
        except SettingsError as exc:
            print(f"fleet-artifacts: {exc}", file=sys.stderr)
            return 2
        except Exception as exc:
            print(
                f"fleet-artifacts: storage-cors --apply failed: {type(exc).__name__}: {str(exc)[:200]}",
                file=sys.stderr,
            )
            return 1
        print(
            f"applied to the Blob service of the configured account ({len(origins)} origin(s))",
            file=sys.stderr,
        )
    return 0


def make_token(product: str, scopes: str) -> int:
    """Print a fresh token (once: only its hash is kept anywhere) and its hashed config line."""
    from fleet_artifacts.core.validation import check_id

    try:
        check_id(product, "productId")
        chosen = parse_scopes(scopes, "--scopes")
    except InvalidInput as exc:
        print(f"fleet-artifacts: {exc.detail}", file=sys.stderr)
        return 2
    token, line = new_token(product, chosen)
    print(f"token:  {token}\nconfig: {line}")
    print(
        "Give the token to its client now: it is not stored. Put the config line in "
        "FLEET_ARTIFACTS_TOKENS (comma-separated) or FLEET_ARTIFACTS_TOKENS_FILE (one per line).",
        file=sys.stderr,
    )
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
    """Run the app under uvicorn until interrupted; say where it listens once the socket is bound."""
    import socket

    import uvicorn

    from fleet_artifacts.app import create_app
    from fleet_artifacts.routes.hosts import LOOPBACK
    from fleet_artifacts.routes.log_lines import utc_stamp
    from fleet_artifacts.serving import bounded_protocol

    if host not in LOOPBACK and not settings.public_base_url and settings.allowed_hosts is None:
        print(
            f"fleet-artifacts: serving on {host} needs FLEET_ARTIFACTS_PUBLIC_BASE_URL or "
            "FLEET_ARTIFACTS_ALLOWED_HOSTS: without either, the URLs it hands out would follow any "
            "Host header a client sends",
            file=sys.stderr,
        )
        return 2
    data_dir = settings.data_dir.resolve()
    token_note = f"{len(settings.tokens)} configured in FLEET_ARTIFACTS_TOKENS"
    if settings.tokens_file is not None:
        token_note += f", and those of {settings.tokens_file} (re-read when it changes, or on SIGHUP)"
    if not settings.tokens and settings.tokens_file is None:
        # Zero-config start: one token for product "default", generated once and kept.
        token_file = data_dir / TOKEN_FILE
        token = load_or_create_secret(token_file, prefix="fa_")
        settings = msgspec.structs.replace(settings, tokens=(TokenEntry(digest_of(token), DEFAULT_PRODUCT),))
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
    # No uvicorn access log: it would print every signed URL's query string, signature included.
    config = uvicorn.Config(
        create_app(settings),
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        # JSON: uvicorn's own lines go to the root logger, whose handler writes JSON (create_app).
        log_config=None if settings.log_format == "json" else uvicorn.config.LOGGING_CONFIG,
        access_log=False,
        # SIGTERM: stop accepting, let requests in flight finish for this long, then cancel them;
        # a cancelled upload commits nothing (bytes first, pointer last: see README, Operating it).
        timeout_graceful_shutdown=settings.shutdown_grace_seconds,
        http=bounded_protocol(settings.max_header_bytes, settings.header_timeout_seconds),
    )

    class Announcing(uvicorn.Server):
        """Says where it listens once the sockets are bound and the app started, not before."""

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if not self.started:
                return
            bound = self.servers[0].sockets[0].getsockname()[1] if self.servers else port
            origin = f"http://{host}:{bound}"
            if settings.log_format == "json":  # one object, as every other line is then
                banner = {
                    "time": utc_stamp(),
                    "level": "INFO",
                    "logger": "fleet_artifacts",
                    "message": f"fleet-artifacts {__version__} listening on {origin}",
                    "blobs": blobs,
                    "pointers": pointers,
                    "bearerToken": token_note,
                    "docs": f"{origin}/docs",
                }
                # One write: a line in two could be split by a log line written in between.
                sys.stdout.write(msgspec.json.encode(banner).decode() + "\n")
                sys.stdout.flush()
                return
            print(
                f"fleet-artifacts {__version__} listening on {origin}\n"
                f"  blobs:        {blobs}\n"
                f"  pointers:     {pointers}\n"
                f"  bearer token: {token_note}\n"
                f"  API docs:     {origin}/docs",
                flush=True,
            )

    server = Announcing(config)
    server.run()
    # A failing lifespan (say, Blob Storage unreachable) is logged by uvicorn; exit 3 as uvicorn.run does.
    return 0 if server.started else 3
