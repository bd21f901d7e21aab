"""Sweeping orphan blobs (no pointer names them) and temp files of killed writes, past grace periods."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx

from fleet_artifacts.app import open_stores
from fleet_artifacts.core.clock import utcnow
from fleet_artifacts.core.gc import sweep_orphan_blobs
from fleet_artifacts.core.kernel import Kernel
from fleet_artifacts.core.models import ArtifactKind, ArtifactStatus, CheckedMeta, Pointer
from fleet_artifacts.core.ports import IdempotencyRecord
from fleet_artifacts.core.sweeper import TEMP_GRACE, Sweeper
from fleet_artifacts.settings import Settings, load_settings
from fleet_artifacts.stores.local_blob import LocalBlobStore
from fleet_artifacts.stores.local_temps import temp_name
from tests.fakes import MemoryPointerStore
from tests.helpers import clean_env, upload_raw


async def once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def test_orphans_are_swept_and_named_blobs_kept(
    client: httpx.Client, settings: Settings, job_id: str
) -> None:
    kept = upload_raw(client, job_id, b"has a pointer").json()
    orphan = f"fleet/prod-a/{job_id}/{'f' * 32}-log"  # as left by a crash between the two writes
    async with open_stores(settings) as (blobs, pointers):
        await blobs.write(orphan, once(b"no pointer"), content_type="text/plain", max_bytes=100)
        young = await sweep_orphan_blobs(Kernel(blobs, pointers), older_than=utcnow() - timedelta(hours=1))
        assert orphan not in young  # within the grace period: left alone
        later = utcnow() + timedelta(seconds=5)
        assert orphan in await sweep_orphan_blobs(Kernel(blobs, pointers), older_than=later, dry_run=True)
        assert await blobs.info(orphan) is not None  # a dry run removes nothing
        removed = await sweep_orphan_blobs(Kernel(blobs, pointers), older_than=later)
        assert orphan in removed and kept["blobKey"] not in removed
        assert await blobs.info(orphan) is None
        assert await blobs.info(kept["blobKey"]) is not None
    assert client.get(f"/fleet/artifacts/{kept['id']}/content").content == b"has a pointer"


async def test_gc_cli_reports_each_step_and_dry_run_removes_nothing(tmp_path: Path) -> None:
    env = clean_env() | {
        "FLEET_ARTIFACTS_TOKENS": "gc-token-0123456789abcdef:p",
        "FLEET_ARTIFACTS_DATA_DIR": str(tmp_path),
    }
    bad = subprocess.run(
        [sys.executable, "-m", "fleet_artifacts", "gc", "--grace-seconds", "-1"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "cannot be negative" in bad.stderr
    settings = load_settings(env)
    past = utcnow() - timedelta(days=3)
    stale = Pointer.of(
        CheckedMeta(kind=ArtifactKind.BUILD, file_name="b.tgz", content_type="application/gzip"),
        id="a" * 32,
        product_id="p",
        job_id="j",
        blob_key=f"fleet/p/j/{'a' * 32}-build",
        size_bytes=0,
        sha256=None,
        created_at=past,
        expires_at=past + timedelta(hours=1),
        status=ArtifactStatus.UPLOADING,
    )
    key = IdempotencyRecord(
        id="idem-x", job_id="j", fingerprint="f", claimed_at=past, expires_at=past, artifact_id="z"
    )
    orphan = f"fleet/p/j/{'b' * 32}-log"
    async with open_stores(settings) as (blobs, pointers):
        await pointers.create(stale)
        await pointers.put_record(key, etag=None)
        await blobs.write(orphan, once(b"no pointer"), content_type="text/plain", max_bytes=100)
    old = past.timestamp()
    os.utime(settings.data_dir / "blobs" / orphan, (old, old))  # past the grace period
    # A write killed mid-stream left a temp file beside the orphan days ago; a live write has one too.
    killed, live = (settings.data_dir / "blobs" / orphan).with_name(temp_name()), temp_name()
    killed.write_bytes(b"spooled before the kill")
    os.utime(killed, (old, old))
    (killed.parent / live).write_bytes(b"still arriving")

    def gc(*extra: str) -> list[str]:
        run = subprocess.run(
            [sys.executable, "-m", "fleet_artifacts", "gc", *extra],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 0, run.stderr
        return run.stdout.splitlines()

    expected = [
        f"would: stale-uploads {stale.blob_key}",
        "would: keys j/idem-x",
        f"would: orphans {orphan}",
        f"would: temps {killed.relative_to(settings.data_dir).as_posix()}",  # blobs/fleet/p/j/.tmp-…
        "would do: 0 expired, 0 tiers, 0 restores, 1 stale-uploads, 0 sessions, 1 keys, 0 shares, 0 events,"
        " 1 orphans, 1 temps",
    ]
    # The step flags choose steps (--stale-uploads: uploads, sessions and keys; --orphans: orphans
    # and temp files); none: every step.
    assert gc("--dry-run", "--stale-uploads", "--orphans") == [
        *expected[:4],
        "would do: 1 stale-uploads, 0 sessions, 1 keys, 0 shares, 0 events, 1 orphans, 1 temps",
    ]
    assert gc("--dry-run") == expected
    assert gc("--dry-run") == expected  # a dry run removed nothing
    assert gc() == [line.replace("would: ", "").replace("would do:", "done:") for line in expected]
    assert gc("--grace-seconds", "0") == [  # orphans of any age; a live write's temp file stays
        "done: 0 expired, 0 tiers, 0 restores, 0 stale-uploads, 0 sessions, 0 keys, 0 shares, 0 events,"
        " 0 orphans, 0 temps"
    ]
    assert not killed.exists() and (killed.parent / live).exists()


async def test_temp_files_go_once_a_day_untouched_each_removed_by_one_sweep(
    local_blobs: LocalBlobStore,
) -> None:
    blob = f"fleet/p/j/{'c' * 32}-log"
    await local_blobs.write(blob, once(b"kept"), content_type="text/plain", max_bytes=100)
    staging = local_blobs.staging_dir(blob)
    staging.mkdir(parents=True)
    # What writes killed mid-stream leave (beside a blob, among staged blocks), and a live write's.
    beside, among = local_blobs.path_of(blob).with_name(temp_name()), staging / temp_name()
    live = local_blobs.path_of(blob).with_name(temp_name())
    for path in (beside, among, live):
        path.write_bytes(b"partial")

    def untouched_for(age: timedelta) -> None:
        then = (utcnow() - age).timestamp()  # the sweep's clock is the wall clock here
        for path in (beside, among):
            os.utime(path, (then, then))

    kernel = Kernel(local_blobs, MemoryPointerStore())
    untouched_for(TEMP_GRACE - timedelta(minutes=5))
    assert await Sweeper(kernel).sweep(steps=["temps"]) == {"temps": []}  # within the grace: kept
    untouched_for(TEMP_GRACE + timedelta(minutes=1))
    assert [key async for key, _ in local_blobs.committed("")] == [blob]  # a temp is never a blob
    expected = sorted(path.relative_to(local_blobs.root.parent).as_posix() for path in (beside, among))
    assert sorted((await Sweeper(kernel).sweep(steps=["temps"], dry_run=True))["temps"]) == expected
    assert beside.exists() and among.exists()  # a dry run removes nothing
    # Two replicas sweep the one directory at once: each temp file goes once, named by one sweep.
    other = LocalBlobStore(local_blobs.root, local_blobs.signer, url_prefix=local_blobs.url_prefix)
    done = await asyncio.gather(
        Sweeper(kernel).sweep(steps=["temps"]),
        Sweeper(Kernel(other, MemoryPointerStore())).sweep(steps=["temps"]),
    )
    assert sorted(name for one in done for name in one["temps"]) == expected
    assert not beside.exists() and not among.exists() and live.exists()
    assert b"".join([chunk async for chunk in local_blobs.read(blob)]) == b"kept"
