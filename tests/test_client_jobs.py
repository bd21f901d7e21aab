"""The client's job-level calls on the real server (three variants): jobs, manifest, seal, events, zip."""

from __future__ import annotations

import hashlib
import io
import secrets
import zipfile
from pathlib import Path

import cbor2
import pytest

from fleet_artifacts.client import AsyncClient, Client, FleetError
from tests.conftest import TOKEN_A
from tests.servers import ThreadedServer


def test_jobs_manifest_seal_events_and_zip(server: ThreadedServer, tmp_path: Path) -> None:
    job = "cj-" + secrets.token_hex(4)
    with Client(server.url, TOKEN_A) as fleet:
        first = fleet.upload(b"one\n", job, file_name="a.log")
        second = fleet.upload(b"two two\n", job, file_name="b.log")
        listed = {j.job_id: j for j in fleet.iter_jobs(limit=50)}
        assert listed[job].artifact_count == 2 and listed[job].total_bytes == 12

        manifest = fleet.manifest(job)  # the client checks the ETag against the body's sha256
        assert [a.id for a in manifest.artifacts] == [first.id, second.id] and not manifest.sealed
        body = fleet.manifest_body(job)
        assert body is not None and body.etag == '"' + hashlib.sha256(body.body).hexdigest() + '"'
        assert fleet.manifest_body(job, if_none_match=body.etag) is None  # 304: unchanged
        as_cbor = fleet.manifest_body(job, cbor=True)
        assert as_cbor is not None and cbor2.loads(as_cbor.body)["jobId"] == job

        archive = fleet.download_archive(job, tmp_path / "job.zip")
        with zipfile.ZipFile(io.BytesIO(archive.read_bytes())) as zf:
            assert {n: zf.read(n) for n in zf.namelist()} == {"a.log": b"one\n", "b.log": b"two two\n"}

        sealed = fleet.seal(job)
        assert sealed.sealed and fleet.manifest(job).sealed
        with pytest.raises(FleetError) as refused:
            fleet.upload(b"late", job, file_name="late.log")
        assert refused.value.status == 409 and "sealed" in refused.value.detail

        page = fleet.events(job_id=job)
        assert [e.type for e in page.items] == ["artifact.created", "artifact.created", "job.sealed"]
        tailed = fleet.tail(page.items[0].cursor, wait=1, job_id=job)
        assert [next(tailed).type, next(tailed).type] == ["artifact.created", "job.sealed"]


async def test_the_async_client_tails_the_feed(server: ThreadedServer) -> None:
    job = "ca-" + secrets.token_hex(4)
    async with AsyncClient(server.url, TOKEN_A) as fleet:
        made = await fleet.upload(b"x", job, file_name="x.log")
        seen = []
        async for event in fleet.tail(wait=1, job_id=job):
            seen.append(event)
            break
        assert seen[0].artifact_id == made.id and seen[0].artifact is not None
        assert (await fleet.manifest(job)).artifacts[0].sha256 == hashlib.sha256(b"x").hexdigest()


def test_a_key_reused_for_other_bytes_raises_and_keeps_the_first_artifact(server: ThreadedServer) -> None:
    from fleet_artifacts.client import DigestMismatch

    job = "ck-" + secrets.token_hex(4)
    with Client(server.url, TOKEN_A) as fleet:
        first = fleet.upload(b"first!", job, file_name="a.log", idempotency_key="k-" + job)
        with pytest.raises(DigestMismatch) as mismatch:
            fleet.upload(b"other!", job, file_name="a.log", idempotency_key="k-" + job)
        assert first.id in mismatch.value.detail and "kept" in mismatch.value.detail
        assert fleet.get(first.id, job).sha256 == hashlib.sha256(b"first!").hexdigest()  # still there


def test_a_stream_of_unknown_size_goes_through_a_resumable_session(server: ThreadedServer) -> None:
    job = "cs-" + secrets.token_hex(4)
    data = secrets.token_bytes(300_000)

    class Unsized(io.RawIOBase):
        """A pipe-like reader: no size, no seek."""

        def __init__(self) -> None:
            self.left = memoryview(data)

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
            n = min(len(buffer), len(self.left), 70_000)
            buffer[:n] = self.left[:n]
            self.left = self.left[n:]
            return n

    with Client(server.url, TOKEN_A) as fleet:
        out = fleet.upload(io.BufferedReader(Unsized()), job, file_name="piped.bin", form="resumable")
        assert out.size_bytes == len(data) and out.sha256 == hashlib.sha256(data).hexdigest()
        events = fleet.events(job_id=job, wait=0.4)
        assert [e.artifact_id for e in events.items] == [out.id]


@pytest.mark.parametrize("form", ["raw", "multipart", "envelope"])
def test_every_proxied_form_carries_all_the_metadata(server: ThreadedServer, form: str) -> None:
    job = "cm-" + secrets.token_hex(4)
    with Client(server.url, TOKEN_A) as fleet:
        out = fleet.upload(
            b"{}", job, file_name="m.json", run_id="r9", content_type="application/json",
            tags={"os": "linux", "arch": "arm64"}, retention_days=3, form=form,  # type: ignore[arg-type]
        )  # fmt: skip
        kept = fleet.upload(b"k", job, file_name="k.log", keep_forever=True, form=form)  # type: ignore[arg-type]
    assert (out.run_id, out.content_type, out.tags) == (
        "r9",
        "application/json",
        {"os": "linux", "arch": "arm64"},
    )
    assert out.retention_days == 3 and not out.keep_forever
    assert kept.keep_forever and kept.expires_at is None
