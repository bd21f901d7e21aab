"""Sweeping orphan blobs: blobs that no pointer names, past a grace period."""

from __future__ import annotations

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
from fleet_artifacts.settings import Settings
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


def test_gc_cli_needs_a_sweep_and_runs_both(tmp_path: Path) -> None:
    env = clean_env() | {
        "FLEET_ARTIFACTS_TOKENS": "gc-token-0123456789abcdef:p",
        "FLEET_ARTIFACTS_DATA_DIR": str(tmp_path),
    }
    bare = subprocess.run(
        [sys.executable, "-m", "fleet_artifacts", "gc"], env=env, capture_output=True, text=True
    )
    assert bare.returncode == 2 and "--stale-uploads and/or --orphans" in bare.stderr
    both = subprocess.run(
        [sys.executable, "-m", "fleet_artifacts", "gc", "--stale-uploads", "--orphans", "--dry-run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert both.returncode == 0, both.stderr
    assert "would remove 0 blob(s)" in both.stdout
