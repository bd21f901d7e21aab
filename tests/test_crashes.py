"""Crashes (issue 15): SIGKILL of Azurite or of the service in the middle of an operation.

Real processes only: Azurite, ``fleet-artifacts serve`` and ``fleet-artifacts gc``. A kill may land
before, during or after the interesting moment, so the tests assert what must hold in every case:
an acknowledged write survives, no pointer names missing bytes (every listed artifact downloads with
its sha256), a repeated job DELETE finishes, and one ``gc`` run leaves no committed blob that no
pointer names (uncommitted blocks, and the local backend's temp files, are not blobs). The temp
files of uploads killed mid-body go too, by a ``gc`` run once they are past the sweep's grace.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.storage.blob import BlobServiceClient

from fleet_artifacts.core.clock import utcnow
from fleet_artifacts.core.keys import staging_key
from fleet_artifacts.core.sweeper import TEMP_GRACE
from tests.conftest import TOKEN_A
from tests.helpers import assert_problem, clean_env
from tests.servers import Azurite, serve_process

AUTH = {"Authorization": f"Bearer {TOKEN_A}"}
MiB = 1024 * 1024
SIDECARS = (".meta", ".sealed")  # the local backend's per-blob files beside the bytes


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Stores:
    """One deployment's stores: a data dir (SQLite; local blobs if no Azurite) and an Azurite container."""

    data_dir: Path
    azurite: Azurite | None
    container: str = field(default_factory=lambda: "crash" + secrets.token_hex(4))

    def env(self) -> dict[str, str]:
        env = clean_env() | {
            "FLEET_ARTIFACTS_TOKENS": f"{TOKEN_A}:prod-a",
            "FLEET_ARTIFACTS_DATA_DIR": str(self.data_dir),
            "FLEET_ARTIFACTS_SWEEP_INTERVAL_SECONDS": "0",  # only the gc run below sweeps
        }
        if self.azurite is not None:
            env |= {
                "FLEET_ARTIFACTS_AZURE_STORAGE_CONNECTION_STRING": self.azurite.connection_string,
                "FLEET_ARTIFACTS_BLOB_CONTAINER": self.container,
                "FLEET_ARTIFACTS_AZURE_RETRY_TOTAL": "0",
            }
        return env

    @contextmanager
    def serve(self) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
        """A ``fleet-artifacts serve`` process on these stores (its log appended to ``serve.log``)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with serve_process(self.env(), output=self.data_dir / "serve.log") as running:
            yield running

    def gc(self) -> str:
        """Run ``fleet-artifacts gc`` once (every step; orphans of any age); its stdout."""
        run = subprocess.run(
            [sys.executable, "-m", "fleet_artifacts", "gc", "--grace-seconds", "0"],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        assert run.stdout.splitlines()[-1].startswith("done: "), run.stdout
        return run.stdout

    def pointers(self, job: str | None = None) -> list[dict[str, Any]]:
        """Every pointer document in SQLite (of ``job``), whatever its status, read behind the service."""
        with closing(sqlite3.connect(self.data_dir / "pointers.sqlite3", timeout=10)) as conn:
            rows = conn.execute("SELECT job_id, doc FROM pointers").fetchall()
        return [json.loads(doc) for job_id, doc in rows if job is None or job_id == job]

    def committed_blobs(self) -> list[str]:
        """Every committed blob, listed behind the service's back (uncommitted blocks are no blobs)."""
        if self.azurite is None:
            root = self.data_dir / "blobs"
            return sorted(
                str(p.relative_to(root))
                for p in root.rglob("*")
                if p.is_file() and not p.name.endswith(SIDECARS) and not p.name.startswith(".tmp-")
            )
        with BlobServiceClient.from_connection_string(self.azurite.connection_string) as svc:
            return sorted(b.name for b in svc.get_container_client(self.container).list_blobs())

    def temp_files(self) -> list[Path]:
        """The local backend's temp files (``.tmp-<uuid>``): beside blobs and among staged blocks."""
        roots = [self.data_dir / "blobs", self.data_dir / "staging"]
        return sorted(path for root in roots for path in root.rglob(".tmp-*") if path.is_file())

    def orphans(self) -> list[str]:
        """Committed blobs no pointer needs: not a pointer's blob, nor the staging blob of an upload."""
        docs = self.pointers()
        named = {d["blobKey"] for d in docs}
        named |= {staging_key(d["blobKey"]) for d in docs if d["status"] == "UPLOADING"}
        return [key for key in self.committed_blobs() if key not in named]


def check_listed(url: str, job: str, sent: dict[str, str]) -> set[str]:
    """Fetch and download every artifact the job lists: 200, and the sha256 of pointer and bytes sent.

    ``sent`` maps each file name to the sha256 of the bytes uploaded under it. Returns the
    listed file names.
    """
    with (
        httpx.Client(base_url=url, headers=AUTH, timeout=60) as c,
        httpx.Client(timeout=60) as anyone,  # a signed URL needs no token
    ):
        page = c.get(f"/fleet/jobs/{job}/artifacts", params={"limit": 1000})
        assert page.status_code == 200, page.text
        assert page.json()["continuationToken"] is None
        items = page.json()["items"]
        for item in items:
            fresh = c.get(f"/fleet/artifacts/{item['id']}")
            assert fresh.status_code == 200, fresh.text
            download = anyone.get(fresh.json()["downloadUrl"])
            assert download.status_code == 200, (item["fileName"], download.status_code)
            assert len(download.content) == item["sizeBytes"]
            assert sha256(download.content) == item["sha256"] == sent[item["fileName"]], item["fileName"]
    names = {item["fileName"] for item in items}
    assert len(names) == len(items)  # one artifact per upload
    return names


class Upload(threading.Thread):
    """A proxied raw upload from its own client thread; ``outcome`` is the answer or the transport error."""

    def __init__(self, url: str, job: str, name: str, body: bytes | Iterable[bytes]) -> None:
        super().__init__(daemon=True)
        self.url, self.job, self.name, self.body = url, job, name, body
        self.outcome: httpx.Response | httpx.TransportError | None = None
        self.ended = 0.0

    def run(self) -> None:
        try:
            with httpx.Client(base_url=self.url, headers=AUTH, timeout=60) as c:
                self.outcome = c.post(
                    f"/fleet/jobs/{self.job}/artifacts",
                    params={"kind": "build", "fileName": self.name},
                    content=self.body,
                    headers={"Content-Type": "application/octet-stream"},
                )
        except httpx.TransportError as exc:  # the server went away mid-request
            self.outcome = exc
        finally:
            self.ended = time.monotonic()

    def created(self) -> bool:
        return isinstance(self.outcome, httpx.Response) and self.outcome.status_code == 201


def paced(
    data: bytes,
    *,
    pause: float,
    sent: threading.Event,
    after: int = 2 * MiB,
    hold: threading.Event | None = None,
) -> Iterator[bytes]:
    """``data`` in 256 KiB chunks ``pause`` seconds apart; ``sent`` is set once ``after`` bytes went.

    With ``hold``, the rest waits until it is set: the upload is surely mid-body until then.
    """
    step = 256 * 1024
    for start in range(0, len(data), step):
        yield data[start : start + step]
        if start + step >= after and not sent.is_set():
            sent.set()
            if hold is not None:
                assert hold.wait(30)
        if pause:
            time.sleep(pause)


def upload(client: httpx.Client, job: str, name: str, data: bytes) -> dict[str, Any]:
    r = client.post(
        f"/fleet/jobs/{job}/artifacts",
        params={"kind": "build", "fileName": name},
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    return created


def new_job() -> str:
    return "crash-" + secrets.token_hex(4)


# 1. Azurite killed in the middle of a proxied upload.


@pytest.fixture
def own_azurite(tmp_path: Path) -> Iterator[Azurite]:
    """An Azurite of this test's own, which it kills and restarts on the same port and data."""
    server = Azurite(tmp_path / "azurite").start()
    yield server
    server.stop()


def wait_persisted(azurite: Azurite, *names: str, timeout: float = 15) -> None:
    """Wait until Azurite saved ``names`` to disk: it keeps metadata in memory, saved every 5 s or so.

    Only what it saved survives a SIGKILL, so a restarted Azurite knows the container and blobs.
    """
    db = azurite.data_dir / "__azurite_db_blob__.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        saved = db.read_text(errors="replace") if db.exists() else ""
        if all(name in saved for name in names):
            return
        time.sleep(0.1)
    raise TimeoutError(f"Azurite did not save {names} within {timeout} s")


BIG = 200 * MiB
KILL_AFTER = 16 * MiB


def big_body(sent: threading.Event, killed: threading.Event) -> Iterator[bytes]:
    """200 MiB in 1 MiB chunks; after KILL_AFTER bytes it waits until Azurite is dead, then goes on."""
    chunk = secrets.token_bytes(MiB)
    for n in range(BIG // MiB):
        if n * MiB == KILL_AFTER:
            sent.set()
            assert killed.wait(30)
        yield chunk


def test_blob_store_killed_mid_upload_leaves_no_pointer_and_gc_no_orphan(
    own_azurite: Azurite, tmp_path: Path
) -> None:
    stores = Stores(tmp_path / "data", own_azurite)
    job = new_job()
    kept_bytes, after_bytes = secrets.token_bytes(300_000), secrets.token_bytes(200_000)
    sent, killed = threading.Event(), threading.Event()
    with stores.serve() as (url, _), httpx.Client(base_url=url, headers=AUTH, timeout=60) as c:
        kept = upload(c, job, "kept.bin", kept_bytes)
        wait_persisted(own_azurite, stores.container, kept["blobKey"])

        big = Upload(url, job, "big.bin", big_body(sent, killed))
        big.start()
        assert sent.wait(30)
        time.sleep(0.3)  # the service has read the first 16 MiB and staged blocks of them
        own_azurite.stop()  # SIGKILL
        at_kill = time.monotonic()
        killed.set()
        big.join(60)
        assert not big.is_alive()
        waited = big.ended - at_kill
        assert waited < 20, waited  # fail-fast retries, not the SDK's minute-long backoff
        # The service answers 503 while the client is still sending: the client reads it (httpx reads
        # the answer after a failed write); a connection cut before any answer is a TransportError.
        assert big.outcome is not None
        if isinstance(big.outcome, httpx.Response):
            assert_problem(big.outcome, 503)
            assert int(big.outcome.headers["retry-after"]) > 0
        # No pointer: neither listed (the pointer store is SQLite, still up) nor stored in any state.
        listed = c.get(f"/fleet/jobs/{job}/artifacts").json()["items"]
        assert [item["id"] for item in listed] == [kept["id"]]
        assert [d["fileName"] for d in stores.pointers(job)] == ["kept.bin"]

        own_azurite.start_again()  # same port, same data: the outage ends
        after = upload(c, job, "after.bin", after_bytes)
        out = stores.gc()
        assert stores.orphans() == [], out
        assert sorted(stores.committed_blobs()) == sorted([kept["blobKey"], after["blobKey"]])
        sent_hashes = {"kept.bin": sha256(kept_bytes), "after.bin": sha256(after_bytes)}
        assert check_listed(url, job, sent_hashes) == {"kept.bin", "after.bin"}


# 2a. The service killed while several proxied uploads are in flight.


def stores_on(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> Stores:
    """Stores on the session's Azurite (a fresh container) or a local directory, both with SQLite."""
    azurite: Azurite | None = request.getfixturevalue("azurite") if backend == "azure" else None
    return Stores(tmp_path / "data", azurite)


@pytest.fixture(params=["azure", "local"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Stores:
    return stores_on(request, request.param, tmp_path)


class TempFilesLeft(AssertionError):
    """The local backend's temp files of killed uploads outlived ``gc``."""


@pytest.mark.parametrize("backend", ["azure", "local"])
def test_service_killed_during_proxied_uploads(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path
) -> None:
    stores = stores_on(request, backend, tmp_path)
    job = new_job()
    before = {f"before-{n}.bin": secrets.token_bytes(256 * 1024 + n) for n in range(3)}
    flying = {f"flying-{n}.bin": secrets.token_bytes(12 * MiB + n) for n in range(4)}
    racing = {f"racing-{n}.bin": secrets.token_bytes(3 * MiB + n) for n in range(3)}
    uploads: list[Upload] = []
    killed = threading.Event()
    with stores.serve() as (url, proc):
        with httpx.Client(base_url=url, headers=AUTH, timeout=60) as c:
            for name, data in before.items():
                upload(c, job, name, data)
        started = []
        for name, data in flying.items():  # slow clients: 6 MiB sent, the rest after the kill
            started.append(threading.Event())
            body = paced(data, pause=0.005, sent=started[-1], after=6 * MiB, hold=killed)
            uploads.append(Upload(url, job, name, body))
        for u in uploads:
            u.start()
        assert all(event.wait(30) for event in started)
        # Fast clients, each sending at full speed by the kill for 0 to 40 ms: some done, some committing.
        for n, (name, data) in enumerate(racing.items()):
            first = threading.Event()
            uploads.append(Upload(url, job, name, paced(data, pause=0, sent=first, after=1)))
            uploads[-1].start()
            assert first.wait(30)
            time.sleep(0.02 if n < len(racing) - 1 else 0.0)
        proc.kill()
        proc.wait(10)
        killed.set()
    for u in uploads:
        u.join(30)
        assert not u.is_alive()
    acknowledged = {u.name for u in uploads if u.created()}

    sent = {name: sha256(data) for name, data in (before | flying | racing).items()}
    with stores.serve() as (url, _):
        listed = check_listed(url, job, sent)  # no pointer names missing bytes
        assert set(before) | acknowledged <= listed  # an acknowledged upload survives the crash
        assert not set(flying) & listed  # the slow ones never sent all their bytes
        docs = stores.pointers(job)
        assert {d["fileName"] for d in docs} == listed and {d["status"] for d in docs} == {"ACTIVE"}
        out = stores.gc()
        assert stores.orphans() == [], out
        assert check_listed(url, job, sent) == listed  # gc removed nothing a pointer names
    if backend == "local":  # the slow clients had sent over 4 MiB: their bytes were spooling to disk
        # Right after the crash a killed upload's temp file looks like a live upload's on another
        # replica (touched moments ago), so that gc run kept them.
        left = stores.temp_files()
        assert left, out
        then = (utcnow() - TEMP_GRACE - timedelta(minutes=1)).timestamp()
        for path in left:  # a day on, untouched since the kill
            os.utime(path, (then, then))
        out = stores.gc()
        swept = {line.removeprefix("temps ") for line in out.splitlines() if line.startswith("temps ")}
        assert swept == {path.relative_to(stores.data_dir).as_posix() for path in left}, out
        temps = [path.name for path in stores.temp_files()]
        if temps:
            raise TempFilesLeft(f"{len(temps)} temp files of killed uploads outlived gc: {temps}")
        assert stores.orphans() == [], out
        with stores.serve() as (url, _):
            assert check_listed(url, job, sent) == listed  # the temps' sweep took nothing a pointer names


# 2b. The service killed right after direct uploads' finalize calls were sent.


# How long each finalize has been running when the service is killed (a finalize takes about 20 ms
# locally and 70 ms on Azurite when alone): before it arrives, mid-copy, mid-pointer write, done.
FINALIZE_AGES = (0.0, 0.003, 0.008, 0.015, 0.03, 0.05, 0.08, 0.12)


def start_direct(client: httpx.Client, job: str, name: str, data: bytes) -> dict[str, Any]:
    """Start a direct upload and write its bytes to the upload URL (one PUT, as ``curl -T`` would)."""
    r = client.post(
        f"/fleet/jobs/{job}/artifacts/uploads",
        json={
            "kind": "build",
            "fileName": name,
            "contentType": "application/octet-stream",
            "sizeBytes": len(data),
        },
    )
    assert r.status_code == 201, r.text
    ticket: dict[str, Any] = r.json()
    put = httpx.put(ticket["uploadUrl"], content=data, headers=ticket["uploadHeaders"], timeout=60)
    assert put.status_code == 201, put.text
    return ticket


def finalize(client: httpx.Client, ticket: dict[str, Any], data: bytes) -> httpx.Response:
    return client.post(
        f"/fleet/jobs/{ticket['jobId']}/artifacts/{ticket['id']}/finalize",
        json={"sizeBytes": len(data), "sha256": sha256(data)},
    )


class Finalize(threading.Thread):
    """A finalize call on its own connection, opened beforehand, sent when ``go`` is set."""

    def __init__(self, url: str, ticket: dict[str, Any], data: bytes) -> None:
        super().__init__(daemon=True)
        self.url, self.ticket, self.data = url, ticket, data
        self.ready, self.go = threading.Event(), threading.Event()
        self.outcome: httpx.Response | httpx.TransportError | None = None

    def run(self) -> None:
        try:
            with httpx.Client(base_url=self.url, headers=AUTH, timeout=60) as c:
                assert c.get("/health").status_code == 200  # connected: the call goes at once
                self.ready.set()
                assert self.go.wait(30)
                self.outcome = finalize(c, self.ticket, self.data)
        except httpx.TransportError as exc:
            self.outcome = exc


def test_service_killed_during_direct_upload_finalize(stores: Stores) -> None:
    job = new_job()
    payloads = {f"direct-{n}.bin": secrets.token_bytes(2 * MiB + n) for n in range(len(FINALIZE_AGES))}
    with stores.serve() as (url, proc):
        with httpx.Client(base_url=url, headers=AUTH, timeout=60) as c:
            tickets = {name: start_direct(c, job, name, data) for name, data in payloads.items()}
        calls = [Finalize(url, tickets[name], data) for name, data in payloads.items()]
        for call in calls:
            call.start()
        assert all(call.ready.wait(30) for call in calls)
        # The oldest first; each call's age at the kill is its FINALIZE_AGES entry.
        ages = sorted(zip(FINALIZE_AGES, calls, strict=True), key=lambda pair: -pair[0])
        for (age, call), (younger, _) in zip(ages, [*ages[1:], (0.0, None)], strict=True):
            call.go.set()
            time.sleep(age - younger)
        proc.kill()
        proc.wait(10)
    for call in calls:
        call.join(30)
        assert not call.is_alive() and call.outcome is not None
    acknowledged: set[str] = set()
    for name, call in zip(payloads, calls, strict=True):
        if isinstance(call.outcome, httpx.Response):
            assert call.outcome.status_code == 200, call.outcome.text
            acknowledged.add(name)

    sent = {name: sha256(data) for name, data in payloads.items()}
    with stores.serve() as (url, _), httpx.Client(base_url=url, headers=AUTH, timeout=60) as c:
        listed = check_listed(url, job, sent)
        assert acknowledged <= listed  # a finalize that answered survives the crash
        statuses = {d["fileName"]: d["status"] for d in stores.pointers(job)}
        assert set(statuses) == set(payloads)
        assert {name for name, status in statuses.items() if status == "ACTIVE"} == listed
        assert set(statuses.values()) <= {"ACTIVE", "UPLOADING"}  # unfinalized uploads are never listed
        # A retried finalize completes every upload, wherever its first attempt was cut.
        for name, data in payloads.items():
            again = finalize(c, tickets[name], data)
            assert again.status_code == 200, (name, again.text)
            assert again.json()["status"] == "ACTIVE" and again.json()["sha256"] == sent[name]
        assert check_listed(url, job, sent) == set(payloads)
        out = stores.gc()  # staging blobs of finalized uploads go; the artifacts stay
        assert stores.orphans() == [], out
        assert not [key for key in stores.committed_blobs() if key.startswith("staging/")], out
        assert check_listed(url, job, sent) == set(payloads)


# 2c. The service killed in the middle of a job delete.


JOB_SIZE = 100


def test_service_killed_during_job_delete(stores: Stores) -> None:
    job = new_job()
    payloads = {f"art-{n:03}.bin": secrets.token_bytes(4096 + n) for n in range(JOB_SIZE)}
    outcome: list[httpx.Response | httpx.TransportError] = []
    with stores.serve() as (url, proc):
        with httpx.Client(base_url=url, headers=AUTH, timeout=60) as c:
            lanes = [list(payloads.items())[n::4] for n in range(4)]

            def fill(lane: list[tuple[str, bytes]]) -> None:
                for name, data in lane:
                    upload(c, job, name, data)

            fillers = [threading.Thread(target=fill, args=(lane,)) for lane in lanes]
            for t in fillers:
                t.start()
            for t in fillers:
                t.join(60)
        assert len(stores.pointers(job)) == JOB_SIZE

        def delete_job() -> None:
            try:
                with httpx.Client(base_url=url, headers=AUTH, timeout=60) as dc:
                    outcome.append(dc.delete(f"/fleet/jobs/{job}/artifacts"))
            except httpx.TransportError as exc:
                outcome.append(exc)

        deleting = threading.Thread(target=delete_job, daemon=True)
        deleting.start()
        # Kill once the delete is under way: a tenth of the pointers claimed or gone (or at a deadline).
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not outcome:
            docs = stores.pointers(job)
            if sum(d["status"] == "ACTIVE" for d in docs) <= JOB_SIZE * 9 // 10:
                break
            time.sleep(0.002)
        proc.kill()
        proc.wait(10)
        deleting.join(30)
        assert not deleting.is_alive()
    [answer] = outcome
    left = stores.pointers(job)
    assert set(d["status"] for d in left) <= {"ACTIVE", "DELETING"}
    if isinstance(answer, httpx.Response):  # the kill came too late: the delete was done
        assert answer.status_code == 200 and answer.json() == {"deleted": JOB_SIZE}, answer.text
        assert left == []

    sent = {name: sha256(data) for name, data in payloads.items()}
    with stores.serve() as (url, _), httpx.Client(base_url=url, headers=AUTH, timeout=60) as c:
        listed = check_listed(url, job, sent)  # what is still listed downloads: no dangling pointer
        assert listed == {d["fileName"] for d in left if d["status"] == "ACTIVE"}
        again = c.delete(f"/fleet/jobs/{job}/artifacts")  # the repeat finishes the job
        assert again.status_code == 200, again.text
        assert again.json() == {"deleted": len(left)}
        assert c.get(f"/fleet/jobs/{job}/artifacts").json()["items"] == []
        assert stores.pointers(job) == []
        assert [key for key in stores.committed_blobs() if f"/{job}/" in key] == []
        out = stores.gc()
        assert stores.orphans() == [], out
