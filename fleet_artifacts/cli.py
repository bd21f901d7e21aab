"""Command line: ``fleet-artifacts serve [--host H] [--port P]``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from fleet_artifacts.settings import SettingsError, load_settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fleet-artifacts", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP service (uvicorn)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port to bind (default 8080)")
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
        import uvicorn

        from fleet_artifacts.app import create_app

        app = create_app(settings)
        print(
            f"fleet-artifacts {settings.blob_backend} blobs + {settings.pointer_backend} pointers "
            f"(data dir {settings.data_dir.resolve()}) on http://{args.host}:{args.port}",
            flush=True,
        )
        uvicorn.run(app, host=args.host, port=args.port, log_level=settings.log_level.lower())
    return 0
