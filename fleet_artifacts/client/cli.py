"""The worker commands of ``fleet-artifacts``: push, ls, get, rm, url, manifest, jobs.

Registered on the main parser by ``add_worker_commands``; each talks to a running service
(``--url``/``--token``, or ``FLEET_ARTIFACTS_URL``/``FLEET_ARTIFACTS_TOKEN``) through
``fleet_artifacts.client``. Exit codes: 0 all done, 1 some operation failed (the others were
still done), 2 usage error. Failures print the problem's title and detail, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import re
from typing import Any

import fleet_artifacts.client.cli_push as cli_push
import fleet_artifacts.client.cli_read as cli_read
from fleet_artifacts.client.cli_output import UsageError, error, problem_line
from fleet_artifacts.client.errors import FleetError
from fleet_artifacts.client.flows import MiB, UploadOptions
from fleet_artifacts.client.retry import RetryPolicy
from fleet_artifacts.client.sync import Client

URL_VARIABLE = "FLEET_ARTIFACTS_URL"
TOKEN_VARIABLE = "FLEET_ARTIFACTS_TOKEN"  # noqa: S105 - the variable's name, not a secret
WORKER_COMMANDS = ("push", "ls", "get", "rm", "url", "manifest", "jobs")
_SIZE = re.compile(r"(\d+)\s*([kmgt]?)(i?b)?", re.IGNORECASE)


def size_arg(value: str) -> int:
    """A byte count: ``1048576``, ``64M``, ``1GiB`` (binary units; argparse type)."""
    found = _SIZE.fullmatch(value.strip())
    if not found:
        raise argparse.ArgumentTypeError(f"{value!r} is not a size (e.g. 1048576, 64M, 1GiB)")
    return int(found[1]) * int(1024 ** "_kmgt".index(found[2].lower() or "_"))


def _connection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help=f"the service's base URL (default: ${URL_VARIABLE})")
    parser.add_argument("--token", help=f"bearer token (default: ${TOKEN_VARIABLE}; prefer the variable)")
    parser.add_argument("--retries", type=int, default=4, help="retries per request (default 4)")


def add_worker_commands(commands: Any) -> None:
    """Add the worker subcommands to the main parser's subparsers (``add_subparsers()``'s result)."""
    push = commands.add_parser(
        "push",
        help="upload files and directories as a job's artifacts (in parallel, with progress)",
        description="Upload each file, and every file under each directory (recursively: the file "
        "name is the file's own, its path below the directory is kept in the 'path' tag). Kind: "
        "--kind, else guessed from the extension. Large files go straight to Blob Storage.",
    )
    push.add_argument("paths", nargs="+", metavar="PATH")
    push.add_argument("--job", required=True, help="the job id")
    push.add_argument("--kind", help="artifact kind for every file (default: guessed per file)")
    push.add_argument("--run", help="run id")
    push.add_argument("--tag", action="append", default=[], metavar="K=V", help="a tag (repeatable)")
    push.add_argument("--concurrency", type=int, default=4, help="files in flight (default 4)")
    push.add_argument(
        "--direct-threshold",
        type=size_arg,
        default=64 * MiB,
        help="files this large go direct to Blob Storage (default 64M)",
    )
    push.add_argument("--json", action="store_true", help="print the created pointers as JSON")
    push.add_argument("--seal", action="store_true", help="seal the job once every file is uploaded")
    _connection(push)

    ls = commands.add_parser(
        "ls", help="list a job's artifacts", description="List a job's artifacts, newest first."
    )
    ls.add_argument("--job", required=True)
    ls.add_argument("--kind")
    ls.add_argument("--run")
    ls.add_argument("--json", action="store_true", help="print the pointers as JSON")
    _connection(ls)

    get = commands.add_parser(
        "get",
        help="download artifacts, verifying each sha256",
        description="Download artifacts by id (or a whole job with --job J --all, recreating the paths "
        "push kept). Each file is written beside its target and renamed once its sha256 matches.",
    )
    get.add_argument("ids", nargs="*", metavar="ID")
    get.add_argument("--job", help="the artifacts' job (a cheaper lookup; required with --all)")
    get.add_argument("--all", action="store_true", help="every artifact of --job")
    get.add_argument("-o", "--output", default=".", metavar="DIR", help="target directory (default .)")
    _connection(get)

    rm = commands.add_parser("rm", help="delete artifacts", description="Delete artifacts by id.")
    rm.add_argument("ids", nargs="+", metavar="ID")
    rm.add_argument("--job")
    rm.add_argument("--purge", action="store_true", help="remove at once, even within a soft-delete window")
    _connection(rm)

    url = commands.add_parser(
        "url", help="print a fresh download URL", description="Print a fresh signed URL."
    )
    url.add_argument("id", metavar="ID")
    url.add_argument("--job")
    url.add_argument("--expires-in", type=int, help="seconds the URL lives (default: the service's)")
    _connection(url)

    manifest = commands.add_parser(
        "manifest", help="print a job's manifest", description="Print a job's manifest (canonical JSON)."
    )
    manifest.add_argument("--job", required=True)
    _connection(manifest)

    jobs = commands.add_parser("jobs", help="list jobs", description="List jobs, most recently active first.")
    jobs.add_argument("--limit", type=int, help="at most this many")
    jobs.add_argument("--json", action="store_true")
    _connection(jobs)


def client_of(args: argparse.Namespace) -> Client:
    """A client from the flags, else the environment; UsageError when either is missing."""
    url = args.url or os.environ.get(URL_VARIABLE)
    token = args.token or os.environ.get(TOKEN_VARIABLE)
    if not url:
        raise UsageError(f"no service URL: give --url or set {URL_VARIABLE}")
    if not token:
        raise UsageError(f"no token: set {TOKEN_VARIABLE} (or give --token)")
    if args.retries < 0:
        raise UsageError("--retries cannot be negative")
    threshold = getattr(args, "direct_threshold", 64 * MiB)
    return Client(
        url,
        token,
        retry=RetryPolicy(attempts=args.retries + 1),
        upload=UploadOptions(direct_threshold=threshold),
    )


def run_worker_command(args: argparse.Namespace) -> int:
    """Run one worker command; its exit code."""
    handlers = {
        "push": cli_push.push,
        "ls": cli_read.ls,
        "get": cli_read.get,
        "rm": cli_read.rm,
        "url": cli_read.url,
        "manifest": cli_read.manifest,
        "jobs": cli_read.jobs,
    }
    try:
        with client_of(args) as client:
            return handlers[args.command](client, args)
    except UsageError as exc:
        error(str(exc))
        return 2
    except FleetError as exc:
        error(problem_line(args.command, exc))
        return 1
    except KeyboardInterrupt:
        error("interrupted")
        return 130
