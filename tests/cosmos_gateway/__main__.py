"""Runs the gateway as a standalone process: ``python -m tests.cosmos_gateway --port 8081``."""

from __future__ import annotations

import argparse
import logging
import threading

from .auth import EMULATOR_KEY
from .gateway import CosmosGateway


def main(argv: list[str] | None = None) -> None:
    """Parses arguments, starts the gateway and serves until interrupted.

    Args:
        argv: Command-line arguments (defaults to ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(prog="python -m tests.cosmos_gateway", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind (default: a free one)")
    parser.add_argument("--key", default=EMULATOR_KEY, help="base64 master key (default: the emulator key)")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING)
    gateway = CosmosGateway(args.key, host=args.host, port=args.port).start()
    print(gateway.url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        gateway.stop()


if __name__ == "__main__":
    main()
