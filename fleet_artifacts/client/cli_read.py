"""``ls``, ``get``, ``rm``, ``url``, ``manifest`` and ``jobs``: the read side, and deletes."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path, PurePosixPath

import msgspec

from fleet_artifacts.client.cli_output import (
    Reporter,
    UsageError,
    error,
    human_age,
    human_size,
    problem_line,
    table,
)
from fleet_artifacts.client.cli_push import PATH_TAG
from fleet_artifacts.client.errors import FleetConnectionError, FleetError
from fleet_artifacts.client.sync import Client
from fleet_artifacts.core.models import ArtifactOut


def display_name(artifact: ArtifactOut) -> str:
    """The name a person knows it by: the path push kept, else the file name."""
    return artifact.tags.get(PATH_TAG) or artifact.file_name


def ls(client: Client, args: argparse.Namespace) -> int:
    """A table of a job's artifacts (or JSON with --json)."""
    found = list(client.iter_artifacts(args.job, kind=args.kind, run_id=args.run, limit=1000))
    if args.json:
        print(msgspec.json.encode(found).decode())
        return 0
    rows = [
        [display_name(a), a.kind.value, human_size(a.size_bytes), human_age(a.created_at), a.id]
        for a in found
    ]
    table(["NAME", "KIND", "SIZE", "AGE", "ID"], rows)
    return 0


def safe_relative(name: str) -> Path | None:
    """``name`` as a path inside the target directory; None if it would step outside it."""
    path = PurePosixPath(name)
    if path.is_absolute() or not path.parts or any(part in ("..", "", ".") for part in path.parts):
        return None
    return Path(*path.parts)


def get(client: Client, args: argparse.Namespace) -> int:
    """Download each artifact, verified; with --all every artifact of --job under its kept path."""
    if args.all and not args.job:
        raise UsageError("get: --all needs --job")
    if not args.all and not args.ids:
        raise UsageError("get: give artifact ids, or --job J --all")
    target = Path(args.output)
    target.mkdir(parents=True, exist_ok=True)
    wanted: list[ArtifactOut | str] = list(client.iter_artifacts(args.job, limit=1000)) if args.all else []
    wanted += list(args.ids)
    failures = 0
    with Reporter(0, len(wanted), verb="get", live=sys.stderr.isatty(), log=sys.stdout) as reporter:
        for artifact in wanted:
            label = artifact if isinstance(artifact, str) else display_name(artifact)
            dest = target
            if isinstance(artifact, ArtifactOut):
                relative = safe_relative(display_name(artifact)) or Path(artifact.file_name)
                dest = target / relative
            transfer = reporter.start(label, None if isinstance(artifact, str) else artifact.size_bytes)
            try:
                saved = client.download(artifact, dest, job_id=args.job, progress=transfer.advance)
            except FleetConnectionError:
                transfer.finish(f"failed   {label}")
                raise  # the service is gone: the rest would fail alike
            except FleetError as exc:
                failures += 1
                transfer.finish(f"failed   {label}: {exc.title}: {exc.detail}")
                continue
            transfer.finish(f"saved    {saved} ({human_size(saved.stat().st_size)}, sha256 verified)")
    if failures:
        error(f"get: {len(wanted) - failures} of {len(wanted)} downloaded, {failures} failed")
        return 1
    return 0


def rm(client: Client, args: argparse.Namespace) -> int:
    """Delete each artifact; exit 1 if any could not be."""
    failures = 0
    for artifact_id in args.ids:
        try:
            client.delete(artifact_id, args.job, purge=args.purge)
        except FleetConnectionError:
            raise
        except FleetError as exc:
            failures += 1
            error(problem_line(f"rm {artifact_id}", exc))
            continue
        print(f"deleted {artifact_id}")
    return 1 if failures else 0


def url(client: Client, args: argparse.Namespace) -> int:
    """Print a freshly signed download URL."""
    print(client.download_url(args.id, args.job, expires_in=args.expires_in))
    return 0


def manifest(client: Client, args: argparse.Namespace) -> int:
    """Print a job's manifest exactly as served (canonical JSON), ETag checked."""
    body = client.manifest_body(args.job)
    assert body is not None
    client.checked_manifest(body)  # raises DigestMismatch if the ETag is not the body's sha256
    sys.stdout.write(body.body.decode("utf-8") + "\n")
    return 0


def jobs(client: Client, args: argparse.Namespace) -> int:
    """A table of jobs, most recently active first."""
    found = []
    for job in client.iter_jobs(limit=min(args.limit or 100, 1000)):
        found.append(job)
        if args.limit and len(found) >= args.limit:
            break
    if args.json:
        print(msgspec.json.encode(found).decode())
        return 0
    rows = [
        [
            j.job_id,
            str(j.artifact_count),
            human_size(j.total_bytes),
            human_age(j.last_upload_at),
            "yes" if j.sealed else "",
        ]
        for j in found
    ]
    table(["JOB", "ARTIFACTS", "SIZE", "LAST UPLOAD", "SEALED"], rows)
    return 0
