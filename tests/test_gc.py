"""Sweeping orphan blobs: blobs that no pointer names, past a grace period."""

from __future__ import annotations

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
from fleet_artifacts.settings import Settings, load_settings
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
        "would do: 0 expired, 0 tiers, 0 restores, 1 stale-uploads, 0 sessions, 1 keys, 0 shares, 0 events,"
        " 1 orphans",
    ]
    # The step flags choose steps (--stale-uploads: uploads, sessions and keys); none: every step.
    assert gc("--dry-run", "--stale-uploads", "--orphans") == [
        *expected[:3],
        "would do: 1 stale-uploads, 0 sessions, 1 keys, 0 shares, 0 events, 1 orphans",
    ]
    assert gc("--dry-run") == expected
    assert gc("--dry-run") == expected  # a dry run removed nothing
    assert gc() == [line.replace("would: ", "").replace("would do:", "done:") for line in expected]
    assert gc() == [
        "done: 0 expired, 0 tiers, 0 restores, 0 stale-uploads, 0 sessions, 0 keys, 0 shares, 0 events,"
        " 0 orphans"
    ]
