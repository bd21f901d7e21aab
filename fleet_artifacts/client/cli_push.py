"""``fleet-artifacts push``: files and directories to a job, in parallel, with progress."""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import msgspec

from fleet_artifacts.client.cli_output import Reporter, UsageError, error, human_size, problem_line
from fleet_artifacts.client.errors import FleetConnectionError, FleetError
from fleet_artifacts.client.sync import Client
from fleet_artifacts.core.models import ArtifactOut

PATH_TAG = "path"  # where below the pushed directory a file was: `get --all` puts it back there


@dataclass(frozen=True)
class Item:
    """One file to push: where it is, and the path it is known by."""

    path: Path
    relative: str
    size: int


def collect(paths: list[str]) -> list[Item]:
    """Every file named or found (recursively, sorted) under a named directory; UsageError if missing."""
    items: list[Item] = []
    for given in paths:
        root = Path(given)
        if root.is_file():
            items.append(Item(root, root.name, root.stat().st_size))
        elif root.is_dir():
            for found in sorted(p for p in root.rglob("*") if p.is_file()):
                items.append(Item(found, found.relative_to(root).as_posix(), found.stat().st_size))
        else:
            raise UsageError(f"push: {given}: no such file or directory")
    return items


def parse_tags(pairs: list[str]) -> dict[str, str]:
    """``k=v`` pairs (``k:v`` too, as the HTTP API writes them)."""
    tags: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=") if "=" in pair else pair.partition(":")
        if not sep or not key:
            raise UsageError(f"push: --tag {pair!r} must be written key=value")
        tags[key] = value
    return tags


def push(client: Client, args: argparse.Namespace) -> int:
    """Upload every item; exit 1 if any failed (the others are still uploaded)."""
    if args.concurrency < 1:
        raise UsageError("push: --concurrency must be at least 1")
    items = collect(args.paths)
    tags = parse_tags(args.tag)
    live = sys.stderr.isatty() and not args.json
    created: list[ArtifactOut] = []
    failures = 0
    unreachable: FleetConnectionError | None = None
    log = sys.stderr if args.json else sys.stdout

    def one(item: Item, reporter: Reporter) -> ArtifactOut:
        transfer = reporter.start(item.relative, item.size)
        own = dict(tags)
        if item.relative != item.path.name and len(item.relative) <= 256:
            own[PATH_TAG] = item.relative
        try:
            out = client.upload(
                item.path, args.job, kind=args.kind, run_id=args.run, tags=own, progress=transfer.advance
            )
        except FleetError as exc:
            transfer.finish(f"failed   {item.relative}: {exc.title}: {exc.detail}")
            raise
        transfer.finish(f"uploaded {item.relative} ({human_size(out.size_bytes)}, {out.kind.value}) {out.id}")
        return out

    total = sum(item.size for item in items)
    with (
        Reporter(total, len(items), verb="push", live=live, log=sys.stderr if live else log) as reporter,
        ThreadPoolExecutor(max_workers=args.concurrency) as pool,
    ):
        queue = list(reversed(items))
        running: dict[Future[ArtifactOut], Item] = {}
        while queue or running:
            # Fill the pool lazily: once the service is unreachable, nothing more is started.
            while queue and unreachable is None and len(running) < args.concurrency:
                item = queue.pop()
                running[pool.submit(one, item, reporter)] = item
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                item = running.pop(future)
                try:
                    created.append(future.result())
                except FleetConnectionError as exc:
                    failures += 1
                    unreachable = unreachable or exc
                except FleetError:
                    failures += 1
    skipped = len(items) - len(created) - failures
    if args.json:
        print(msgspec.json.encode(created).decode())
    if unreachable is not None:
        error(problem_line("push", unreachable) + (f"; {skipped} file(s) not attempted" if skipped else ""))
    if failures or skipped:
        error(f"push: {len(created)} of {len(items)} file(s) uploaded, {failures + skipped} not")
        return 1
    print(f"pushed {len(created)} file(s), {human_size(total)} to job {args.job}", file=sys.stderr)
    if args.seal:
        sealed = client.seal(args.job)
        print(f"sealed job {sealed.job_id}", file=sys.stderr)
    return 0
