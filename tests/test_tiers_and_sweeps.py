"""Tiers and the sweeper on every backend variant.

Archive and restore, tier moves by age, keep-forever through sweeps, two sweeps at once,
background sweeping by two replicas, and the equivalent Azure lifecycle policy.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator

import msgspec
import pytest

from fleet_artifacts.app import create_app, open_stores
from fleet_artifacts.core.models import BlobTier
from fleet_artifacts.core.ports import SweepLease
from fleet_artifacts.core.sweeper import LEASE_ID, LEASE_JOB
from tests.helpers import assert_problem, start, stored_doc, upload_raw
from tests.lifecycle_kit import VARIANTS, World, blob_info, blob_tags, env_of, gc, gc_items, make_world
from tests.servers import ThreadedServer


@pytest.fixture(scope="module", params=VARIANTS)
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """A server per variant that moves artifacts to Cool after 30 days and to Archive after 90."""
    yield from make_world(
        request, tmp_path_factory.mktemp("tiers"), cool_after_days="30", archive_after_days="90"
    )


@pytest.fixture
def w(world: World) -> Iterator[World]:
    """The module's world, its clock back at now after each test."""
    yield world
    world.ago(0)


def new_job() -> str:
    return "job-" + secrets.token_hex(5)


async def test_archive_hides_the_url_and_content_until_restore_brings_the_bytes_back(w: World) -> None:
    c, job = w.client, new_job()
    data = secrets.token_bytes(5000)
    out = upload_raw(c, job, data, _ct="application/octet-stream", kind="build", fileName="b.bin").json()
    where = f"/fleet/jobs/{job}/artifacts/{out['id']}"

    cool = c.post(where + "/archive", json={"tier": "Cool"})
    assert cool.status_code == 200, cool.text
    assert cool.json()["status"] == "ACTIVE" and cool.json()["tier"] == "Cool"
    assert c.get(cool.json()["downloadUrl"]).content == data  # Cool is online
    assert (await blob_info(w.settings, out["blobKey"])).tier is BlobTier.COOL  # type: ignore[union-attr]
    warm = c.post(where + "/restore")  # from Cool: Hot at once
    assert (warm.status_code, warm.json()["tier"], warm.json()["status"]) == (200, "Hot", "ACTIVE")
    assert (await blob_info(w.settings, out["blobKey"])).tier is BlobTier.HOT  # type: ignore[union-attr]

    archived = c.post(where + "/archive")  # no body: Archive
    assert archived.status_code == 200, archived.text
    body = archived.json()
    assert (body["status"], body["tier"], body["downloadUrl"]) == ("ARCHIVED", "Archive", None)
    assert "restore" in body["reason"] and archived.headers["etag"] == body["etag"]
    assert c.get(where).json()["status"] == "ARCHIVED"
    [listed] = c.get(f"/fleet/jobs/{job}/artifacts").json()["items"]
    assert listed["status"] == "ARCHIVED" and listed["downloadUrl"] is None
    assert "restore" in str(assert_problem(c.get(where + "/content"), 409)["detail"])
    assert_problem(c.get(where + "/content", params={"redirect": "true"}), 409)
    assert (await blob_info(w.settings, out["blobKey"])).tier is BlobTier.ARCHIVE  # type: ignore[union-attr]
    assert c.post(where + "/archive").json()["status"] == "ARCHIVED"  # again: as it is
    assert_problem(c.post(where + "/archive", json={"tier": "Cool"}), 409)  # restore first
    assert_problem(c.post(where + "/archive", json={"tier": "Hot"}), 400)
    assert_problem(c.post(where + "/restore", json={"priority": "Soon"}), 400)

    restored = c.post(f"/fleet/artifacts/{out['id']}/restore", json={"priority": "High"})
    # Azurite and the local backend rehydrate at once (Azure takes hours: 202 and RESTORING then).
    assert restored.status_code == 200, restored.text
    assert (restored.json()["status"], restored.json()["tier"]) == ("ACTIVE", "Hot")
    assert c.get(where + "/content").content == data
    assert c.get(restored.json()["downloadUrl"]).content == data
    assert c.post(where + "/restore").status_code == 200  # an ACTIVE one answers as it is


async def test_tier_moves_by_age_keep_forever_through_sweeps_and_a_second_sweep_changes_nothing(
    w: World,
) -> None:
    c, job = w.client, new_job()
    w.ago(40)
    cool = upload_raw(c, job, b"40 days", retentionDays="365").json()
    w.ago(100)
    cold = upload_raw(c, job, b"100 days", retentionDays="365").json()
    w.ago(400)
    kept = upload_raw(c, job, b"kept", keepForever="true").json()
    gone = upload_raw(c, job, b"expired").json()
    w.ago(0)
    fresh = upload_raw(c, job, b"today").json()
    assert (await blob_tags(w.settings, kept["blobKey"]))["keep"] == "true"
    assert (await blob_tags(w.settings, gone["blobKey"]))["keep"] == "false"
    if w.settings.pointer_backend == "cosmos":  # Cosmos's own ttl is only a backstop, a day late
        assert "ttl" not in stored_doc(w.settings, kept["id"])
        assert stored_doc(w.settings, fresh["id"])["ttl"] > 30 * 86400  # type: ignore[operator]

    dry = gc(w.settings, "--dry-run")
    assert gone["blobKey"] in gc_items(dry, "would: expired")
    assert f"{cool['blobKey']} -> Cool" in gc_items(dry, "would: tiers")
    assert c.get(f"/fleet/artifacts/{cool['id']}").json()["tier"] == "Hot"  # a dry run changed nothing

    done = gc(w.settings)
    assert gone["blobKey"] in gc_items(done, "expired")
    moves = gc_items(done, "tiers")
    assert {
        f"{cool['blobKey']} -> Cool",
        f"{cold['blobKey']} -> Archive",
        f"{kept['blobKey']} -> Archive",
    } <= moves
    assert not any(fresh["blobKey"] in move for move in moves)
    state = {a["id"]: (a["status"], a["tier"]) for a in c.get(f"/fleet/jobs/{job}/artifacts").json()["items"]}
    assert state == {
        cool["id"]: ("ACTIVE", "Cool"),
        cold["id"]: ("ARCHIVED", "Archive"),
        kept["id"]: ("ARCHIVED", "Archive"),  # kept forever, and archived by age like any other
        fresh["id"]: ("ACTIVE", "Hot"),
    }
    assert (await blob_info(w.settings, cool["blobKey"])).tier is BlobTier.COOL  # type: ignore[union-attr]
    assert (await blob_info(w.settings, cold["blobKey"])).tier is BlobTier.ARCHIVE  # type: ignore[union-attr]
    assert await blob_info(w.settings, gone["blobKey"]) is None
    nothing = (
        "done: 0 expired, 0 tiers, 0 restores, 0 stale-uploads, 0 sessions, 0 keys, 0 shares, 0 events,"
        " 0 orphans, 0 temps"
    )
    assert gc(w.settings) == [nothing]
    # A restore is not undone by the next sweep: age counts from the restore.
    assert c.post(f"/fleet/artifacts/{cold['id']}/restore").json()["status"] == "ACTIVE"
    assert gc(w.settings) == [nothing]
    assert c.get(f"/fleet/artifacts/{cold['id']}").json()["tier"] == "Hot"


async def test_two_sweeps_at_once_in_two_processes_act_once_per_artifact(w: World) -> None:
    c, job = w.client, new_job()
    w.ago(10)
    keys = {upload_raw(c, job, f"old {n}".encode(), retentionDays="1").json()["blobKey"] for n in range(40)}
    # Direct uploads never finalized (their deadline long past).
    stale = {start(c, job, fileName=f"s{n}.tgz")["blobKey"] for n in range(10)}
    w.ago(0)
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "fleet_artifacts", "gc"],
            env=env_of(w.settings),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=120) for run in runs]
    for run, (_, err) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, err
    first, second = (gc_items(out.splitlines(), "expired") for out, _ in outputs)
    assert keys <= first | second
    assert not (first & second), "an artifact was removed by both sweeps"
    uploads = [gc_items(out.splitlines(), "stale-uploads") for out, _ in outputs]
    assert stale <= uploads[0] | uploads[1] and not (uploads[0] & uploads[1])
    assert c.get(f"/fleet/jobs/{job}/artifacts").json()["items"] == []
    assert c.get(f"/fleet/jobs/{job}/artifacts", params={"status": "UPLOADING"}).json()["items"] == []
    assert gc_items(gc(w.settings, "--expired"), "expired") == set()


async def test_two_replicas_sweep_in_the_background_under_one_lease(w: World) -> None:
    c, job = w.client, new_job()
    w.ago(5)
    old = upload_raw(c, job, b"swept by a replica", retentionDays="1").json()
    w.ago(0)
    settings = msgspec.structs.replace(w.settings, sweep_interval_seconds=2)
    replicas = [ThreadedServer(create_app(settings)).start() for _ in range(2)]
    try:
        deadline = time.monotonic() + 30
        while await blob_info(settings, old["blobKey"]) is not None:
            assert time.monotonic() < deadline, "no replica swept within 30 s"
            await asyncio.sleep(0.3)
        async with open_stores(settings) as (_, pointers):
            lease = await pointers.get_record(LEASE_JOB, LEASE_ID, SweepLease)
        assert lease is not None
        assert (lease.record.expires_at - lease.record.acquired_at).total_seconds() == 2
    finally:
        for replica in replicas:
            replica.stop()
    assert_problem(c.get(f"/fleet/artifacts/{old['id']}"), 404)


def test_lifecycle_policy_prints_the_equivalent_azure_rules(w: World) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "fleet_artifacts", "lifecycle-policy"],
        env=env_of(w.settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    rules = {rule["name"]: rule for rule in json.loads(run.stdout)["rules"]}
    prefix = [f"{w.settings.blob_container}/fleet/"]
    tiers = rules["fleet-artifacts-tiers"]["definition"]
    assert tiers["filters"] == {"blobTypes": ["blockBlob"], "prefixMatch": prefix}
    assert tiers["actions"]["baseBlob"] == {
        "tierToCool": {"daysAfterCreationGreaterThan": 30},
        "tierToArchive": {"daysAfterCreationGreaterThan": 90},
    }
    backstop = rules["fleet-artifacts-expiry-backstop"]["definition"]
    assert backstop["filters"]["blobIndexMatch"] == [{"name": "keep", "op": "==", "value": "false"}]
    assert backstop["actions"]["baseBlob"] == {"delete": {"daysAfterCreationGreaterThan": 366}}
    assert all(rule["enabled"] and rule["type"] == "Lifecycle" for rule in rules.values())
