"""A bounded load test on every variant: concurrent uploads, verified downloads, deletes racing fetches.

Three phases against the module's real server (``settings`` runs it on each of the three variants):

1. 20 concurrent clients upload 200 artifacts of 0-4 MiB (sizes and bytes from a fixed seed) across
   10 jobs with the raw upload form, each with an Idempotency-Key: 200 x 201, and each job's totals
   in the job listing add up.
2. Each pointer is fetched and each artifact downloaded twice, through its ``downloadUrl`` (the
   service's ``/blobs/`` route locally, a SAS URL on Azurite) and through the ``/content`` proxy:
   every download's sha256 is the uploaded one.
3. 200 deletes run interleaved with pointer fetches and ``/content`` downloads of the same artifacts:
   no 5xx; a fetch sees 200 or 404, a delete 204 (every other artifact is addressed by id alone,
   the others within their job: Cosmos finds the first across partitions). Afterwards every job
   lists empty, the pointer store holds no pointer of the jobs in any state, the blob store holds
   no committed blob (under ``fleet/`` or ``staging/``) and nothing uncommitted or half-written,
   and the sweep (what ``fleet-artifacts gc --dry-run --grace-seconds 0`` runs) finds nothing to do.

Every phase runs under a hard timeout, and every request loop is a fixed list of requests. Figures
(wall time, requests, errors) are printed per phase (``pytest -s``) and put in assertion messages.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import pytest

from fleet_artifacts.app import limits_of, open_stores
from fleet_artifacts.core.kernel import Kernel
from fleet_artifacts.core.keys import BLOB_PREFIX, STAGING_PREFIX
from fleet_artifacts.core.models import ArtifactStatus
from fleet_artifacts.core.ports import ListQuery
from fleet_artifacts.core.sweeper import Sweeper
from fleet_artifacts.settings import Settings
from tests.conftest import TOKEN_A
from tests.servers import ThreadedServer

SEED = 15
CLIENTS = 20
ARTIFACTS = 200
JOBS = 10
MiB = 1024 * 1024
PHASE_TIMEOUT = 45.0  # seconds per phase: a hang fails the test instead of stalling CI
REQUEST_TIMEOUT = 30.0

Op = Callable[[], Awaitable[None]]


@dataclass
class Tally:
    """What one phase did: requests sent, answers by status, errors (each one line)."""

    name: str
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def answer(self, method: str, url: str, response: httpx.Response, allowed: Sequence[int]) -> bool:
        """Count ``response``; an error unless its status is one of ``allowed``. Whether it was allowed."""
        self.statuses[response.status_code] += 1
        if response.status_code in allowed:
            return True
        self.errors.append(f"{method} {url} -> {response.status_code} {response.text[:300]!r}")
        return False

    def line(self, variant: str) -> str:
        statuses = ", ".join(f"{s}: {n}" for s, n in sorted(self.statuses.items()))
        return (
            f"[load {variant}] {self.name}: {self.seconds:.1f} s, {self.requests} requests "
            f"({statuses}), {len(self.errors)} errors"
        )

    def report(self, variant: str) -> str:
        """The summary line, and the first errors if there were any."""
        return "\n".join([self.line(variant), *self.errors[:10]])


@dataclass(frozen=True)
class Payload:
    index: int
    job_id: str
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@functools.cache
def payloads() -> list[Payload]:
    """200 payloads of 0-4 MiB across 10 jobs: empty, tiny, small and several-MiB ones, all seeded.

    About 105 MiB in all: 11 empty, 88 of at most 4 KiB, 29 over 1 MiB (made once per session).
    """
    rng = random.Random(SEED)
    run = f"{rng.getrandbits(32):08x}"
    sizes = [0, 1, 4 * MiB, 3 * MiB + 12345]  # the edges always appear
    while len(sizes) < ARTIFACTS:
        bucket = rng.random()
        if bucket < 0.05:
            sizes.append(0)
        elif bucket < 0.45:
            sizes.append(rng.randint(1, 4096))
        elif bucket < 0.85:
            sizes.append(rng.randint(4097, 512 * 1024))
        else:
            sizes.append(rng.randint(512 * 1024 + 1, 4 * MiB))
    rng.shuffle(sizes)
    return [Payload(i, f"load-{run}-{i % JOBS}", rng.randbytes(n)) for i, n in enumerate(sizes)]


def artifact_url(p: Payload, created: dict[int, dict[str, Any]]) -> str:
    """An artifact's URL: by id alone for every other one (the cross-partition find), else in its job."""
    aid = created[p.index]["id"]
    return f"/fleet/artifacts/{aid}" if p.index % 2 else f"/fleet/jobs/{p.job_id}/artifacts/{aid}"


async def run_pool(tally: Tally, ops: Sequence[Op], variant: str) -> None:
    """Run ``ops`` on CLIENTS concurrent workers within PHASE_TIMEOUT; a hang or crash fails the test."""
    queue: asyncio.Queue[Op] = asyncio.Queue()
    for op in ops:
        queue.put_nowait(op)

    async def worker() -> None:
        while not queue.empty():
            op = queue.get_nowait()
            tally.requests += 1
            try:
                await op()
            except httpx.HTTPError as exc:  # a connection reset or a timeout: an error, not a crash
                try:
                    where = f"{exc.request.method} {exc.request.url}"
                except RuntimeError:  # an error raised before a request was made
                    where = "no request"
                tally.errors.append(f"{type(exc).__name__}: {exc} ({where})")

    started = time.monotonic()
    try:
        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(CLIENTS))), PHASE_TIMEOUT)
    except TimeoutError:
        tally.seconds = time.monotonic() - started
        pytest.fail(f"phase hung: not done within {PHASE_TIMEOUT} s\n{tally.report(variant)}")
    tally.seconds = time.monotonic() - started
    print(tally.line(variant))


async def test_load_upload_download_delete(server: ThreadedServer, settings: Settings) -> None:
    variant = f"{settings.blob_backend}-{settings.pointer_backend}"
    items = payloads()
    rng = random.Random(SEED + 1)  # the order of phase 3
    jobs = sorted({p.job_id for p in items})
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    auth = {"Authorization": f"Bearer {TOKEN_A}"}
    started = time.monotonic()
    async with (
        httpx.AsyncClient(base_url=server.url, headers=auth, timeout=REQUEST_TIMEOUT, limits=limits) as api,
        httpx.AsyncClient(timeout=REQUEST_TIMEOUT, limits=limits) as anon,  # signed URLs carry no token
    ):
        # -- phase 1: 200 concurrent uploads ---------------------------------------------------------
        uploads = Tally("upload")
        created: dict[int, dict[str, Any]] = {}

        def upload(p: Payload) -> Op:
            async def op() -> None:
                url = f"/fleet/jobs/{p.job_id}/artifacts"
                r = await api.post(
                    url,
                    params={"kind": "data", "fileName": f"a{p.index:03}.bin", "runId": "load"},
                    content=p.data,
                    headers={"Content-Type": "application/octet-stream", "Idempotency-Key": f"k-{p.index}"},
                )
                if uploads.answer("POST", url, r, [201]):
                    body = r.json()
                    if (body["sizeBytes"], body["sha256"]) != (len(p.data), p.sha256):
                        uploads.errors.append(f"POST {url} #{p.index}: stored {body['sizeBytes']} bytes")
                    created[p.index] = body

            return op

        await run_pool(uploads, [upload(p) for p in items], variant)
        assert not uploads.errors and len(created) == ARTIFACTS, uploads.report(variant)

        r = await api.get("/fleet/jobs", params={"limit": 100})
        assert r.status_code == 200, r.text
        totals = {j["jobId"]: (j["artifactCount"], j["totalBytes"]) for j in r.json()["items"]}
        expected = {j: (0, 0) for j in jobs}
        for p in items:
            count, size = expected[p.job_id]
            expected[p.job_id] = (count + 1, size + len(p.data))
        assert {j: totals.get(j) for j in jobs} == expected, uploads.report(variant)

        # -- phase 2: fetch each pointer, download each artifact twice, digests checked --------------
        downloads = Tally("download")
        matches = Counter[str]()

        def check(route: str, p: Payload, url: str, r: httpx.Response) -> None:
            if downloads.answer("GET", url, r, [200]):
                if hashlib.sha256(r.content).hexdigest() == p.sha256:
                    matches[route] += 1
                else:
                    downloads.errors.append(f"GET {url} #{p.index}: {len(r.content)} bytes, digest differs")

        def fetch_and_download(p: Payload) -> Op:
            async def op() -> None:
                aid = created[p.index]["id"]
                url = f"/fleet/jobs/{p.job_id}/artifacts/{aid}"
                r = await api.get(url)
                if not downloads.answer("GET", url, r, [200]):
                    return
                download_url = r.json()["downloadUrl"]
                downloads.requests += 2
                check("downloadUrl", p, download_url, await anon.get(download_url))
                content = f"{url}/content"
                check("content", p, content, await api.get(content))

            return op

        await run_pool(downloads, [fetch_and_download(p) for p in items], variant)
        assert matches == {"downloadUrl": ARTIFACTS, "content": ARTIFACTS}, (
            f"{dict(matches)}\n{downloads.report(variant)}"
        )
        assert not downloads.errors, downloads.report(variant)

        # -- phase 3: deletes interleaved with fetches of the same artifacts --------------------------
        deletes = Tally("delete+fetch")

        def delete(p: Payload) -> Op:
            async def op() -> None:
                url = artifact_url(p, created)
                deletes.answer("DELETE", url, await api.delete(url), [204])  # each deleted once

            return op

        def fetch(p: Payload) -> Op:
            async def op() -> None:
                url = f"/fleet/jobs/{p.job_id}/artifacts/{created[p.index]['id']}"
                r = await api.get(url)
                found = deletes.answer("GET", url, r, [200, 404]) and r.status_code == 200
                if found and r.json()["sha256"] != p.sha256:
                    deletes.errors.append(f"GET {url}: another artifact's pointer")

            return op

        def fetch_content(p: Payload) -> Op:
            async def op() -> None:
                url = f"/fleet/jobs/{p.job_id}/artifacts/{created[p.index]['id']}/content"
                r = await api.get(url)
                found = deletes.answer("GET", url, r, [200, 404]) and r.status_code == 200
                if found and hashlib.sha256(r.content).hexdigest() != p.sha256:
                    deletes.errors.append(f"GET {url}: {len(r.content)} bytes, digest differs")

            return op

        # The three requests on one artifact sit side by side, in a seeded order: the pool's
        # workers take them at about the same moment, so fetches race their delete.
        groups = [[delete(p), fetch(p), fetch_content(p)] for p in items]
        for group in groups:
            rng.shuffle(group)
        rng.shuffle(groups)
        await run_pool(deletes, [op for group in groups for op in group], variant)
        assert not [s for s in deletes.statuses if s >= 500], deletes.report(variant)
        assert not deletes.errors, deletes.report(variant)
        assert deletes.statuses[204] == ARTIFACTS, deletes.report(variant)

        # -- afterwards: nothing listed, nothing stored, nothing for gc --------------------------------
        after = Tally("afterwards")

        async def gone(p: Payload) -> None:
            url = artifact_url(p, created)
            after.answer("GET", url, await api.get(url), [404])

        async def lists_empty(job_id: str) -> None:
            url = f"/fleet/jobs/{job_id}/artifacts"
            r = await api.get(url)
            if after.answer("GET", url, r, [200]) and r.json()["items"]:
                after.errors.append(f"GET {url}: still lists {[a['id'] for a in r.json()['items']]}")

        checks: list[Op] = [functools.partial(gone, p) for p in items]
        checks += [functools.partial(lists_empty, j) for j in jobs]
        await run_pool(after, checks, variant)
        assert not after.errors, after.report(variant)
        r = await api.get("/fleet/jobs", params={"limit": 100})
        assert r.status_code == 200, r.text
        left = {j["jobId"]: (j["artifactCount"], j["totalBytes"]) for j in r.json()["items"]}
        assert all(left.get(j, (0, 0)) == (0, 0) for j in jobs), f"job totals after the deletes: {left}"

    await assert_stores_empty(settings, jobs, variant)
    tallies = [uploads, downloads, deletes, after]
    errors = sum(len(t.errors) for t in tallies)
    total = (
        f"[load {variant}] total: {time.monotonic() - started:.1f} s, "
        f"{sum(t.requests for t in tallies) + 2} requests (with the two job listings), {errors} errors"
    )
    print(total)
    assert errors == 0, total


async def assert_stores_empty(settings: Settings, jobs: list[str], variant: str) -> None:
    """No pointer in any state, no blob (committed, staged or half-written), nothing for the sweep."""
    async with open_stores(settings) as (blobs, pointers):
        every_state = tuple(ArtifactStatus)
        dangling = {
            job: [
                (s.pointer.id, s.pointer.status.value)
                for s in (
                    await pointers.list(ListQuery(job_id=job, product_id="prod-a", statuses=every_state))
                ).items
            ]
            for job in jobs
        }
        assert not any(dangling.values()), f"[{variant}] pointers left after the deletes: {dangling}"
        stored = [key for prefix in (BLOB_PREFIX, STAGING_PREFIX) async for key, _ in blobs.committed(prefix)]
        assert not stored, f"[{variant}] blobs left without a pointer: {stored}"
        left = await leftovers(settings)
        assert not left, f"[{variant}] uncommitted or half-written leftovers: {left}"
        # What `fleet-artifacts gc --dry-run --grace-seconds 0` runs: every step, nothing to do.
        sweeper = Sweeper(Kernel(blobs, pointers, limits=limits_of(settings)), orphan_grace=timedelta(0))
        plan = await sweeper.sweep(dry_run=True)
        assert not any(plan.values()), f"[{variant}] gc --dry-run would do: {plan}"


async def leftovers(settings: Settings) -> list[str]:
    """Bytes the blob store holds outside committed blobs: staged blocks, temporary files, sidecars."""
    if settings.blob_backend == "local":
        root = settings.data_dir / "blobs"
        files = [p for p in settings.data_dir.glob("staging/**/*") if p.is_file()]
        files += [p for p in root.rglob("*") if p.is_file()]  # every committed blob is gone too
        return sorted(str(p.relative_to(settings.data_dir)) for p in files)
    from azure.storage.blob.aio import BlobServiceClient

    assert settings.azure_storage_connection_string
    async with BlobServiceClient.from_connection_string(settings.azure_storage_connection_string) as svc:
        container = svc.get_container_client(settings.blob_container)
        return [b.name async for b in container.list_blobs(include=["uncommittedblobs"])]
