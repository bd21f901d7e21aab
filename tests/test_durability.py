"""DURABILITY (issue 14): what an acknowledged upload survives, on the local backend and SQLite.

``power`` (the default) fsyncs every blob, sidecar and directory and commits SQLite with
synchronous=FULL; ``process`` fsyncs none of them (SQLite WAL, synchronous=NORMAL) but still
writes the bytes, renames them into place and commits the pointer before it answers. So with
``process`` an answered upload must survive a SIGKILL of the service, whatever else was in flight:
that is what these tests do to a real ``fleet-artifacts serve`` process, then start it again on
the same data directory and read everything back through the API. (A power loss is not
something a test here can cause; ``test_crashes`` kills the default, ``power``, the same way.)

With ``process`` an upload's pointer commits on the event loop's thread, through a SQLite
connection of its own: the pointer and journal contracts run once more against such a store,
and its fallback to the writer's thread (a busy database) and its checkpoints are checked too.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import secrets
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest

import tests.test_journal_contract as journal_contract
import tests.test_pointer_contract as pointer_contract
from fleet_artifacts.app import open_stores
from fleet_artifacts.core.ports import PointerStore
from fleet_artifacts.settings import SettingsError, load_settings
from fleet_artifacts.stores.local_blob import LocalBlobStore
from fleet_artifacts.stores.sqlite import SqlitePointerStore
from fleet_artifacts.stores.sqlite_schema import LOOP_CHECKPOINT_EVERY
from tests.conftest import TOKEN_A
from tests.helpers import clean_env
from tests.servers import serve_process

AUTH = {"Authorization": f"Bearer {TOKEN_A}"}
MiB = 1024 * 1024
JOB = "durable-job"
SIDECARS = (".meta", ".sealed")  # the local backend's files beside a blob's bytes


def env(data_dir: Path, durability: str) -> dict[str, str]:
    """A ``serve`` environment on ``data_dir`` (local blobs, SQLite) with ``DURABILITY=durability``."""
    return clean_env() | {
        "FLEET_ARTIFACTS_TOKENS": f"{TOKEN_A}:prod-a",
        "FLEET_ARTIFACTS_DATA_DIR": str(data_dir),
        "FLEET_ARTIFACTS_DURABILITY": durability,
        "FLEET_ARTIFACTS_SWEEP_INTERVAL_SECONDS": "0",
        "FLEET_ARTIFACTS_LOG_LEVEL": "WARNING",
    }


def post(client: httpx.Client, name: str, body: bytes | Iterator[bytes]) -> httpx.Response:
    return client.post(
        f"/fleet/jobs/{JOB}/artifacts",
        params={"kind": "build", "fileName": name},
        content=body,
        headers={"Content-Type": "application/octet-stream"},
    )


def held(first: bytes, started: threading.Event, release: threading.Event) -> Iterator[bytes]:
    """A body that sends ``first``, then waits (the upload is surely mid-body) until ``release``."""
    yield first
    started.set()
    release.wait(30)
    yield b"never stored"


def test_with_durability_process_an_acknowledged_upload_survives_kill_9(tmp_path: Path) -> None:
    data = tmp_path / "data"
    sent = {
        "empty.bin": b"",
        "small.log": b"line\n" * 200,
        "one-mib.bin": secrets.token_bytes(MiB),
        "streamed.bin": secrets.token_bytes(5 * MiB),  # past the one-hop size: the streamed path
    }
    started, release = threading.Event(), threading.Event()
    answers: list[object] = []
    with (
        serve_process(env(data, "process"), output=tmp_path / "serve.log") as (url, proc),
        httpx.Client(base_url=url, headers=AUTH, timeout=30) as client,
    ):

        def in_flight() -> None:  # an upload mid-body when the service dies: it must leave nothing
            try:
                answers.append(post(client, "cut.bin", held(b"x" * MiB, started, release)))
            except httpx.TransportError as exc:
                answers.append(exc)

        sender = threading.Thread(target=in_flight, daemon=True)
        sender.start()
        assert started.wait(10)
        for name, body in sent.items():
            answer = post(client, name, body)
            assert answer.status_code == 201, answer.text
            assert answer.json()["sha256"] == hashlib.sha256(body).hexdigest()
        proc.kill()  # SIGKILL right after the last answer: nothing gets to flush or fsync
        proc.wait()
        release.set()
        sender.join(10)
    assert len(answers) == 1 and not isinstance(answers[0], httpx.Response)

    with (
        serve_process(env(data, "process"), output=tmp_path / "serve.log") as (url, _),
        httpx.Client(base_url=url, headers=AUTH, timeout=30) as client,
    ):
        page = client.get(f"/fleet/jobs/{JOB}/artifacts", params={"limit": 100})
        assert page.status_code == 200, page.text
        items = {item["fileName"]: item for item in page.json()["items"]}
        assert sorted(items) == sorted(sent)  # every answered upload, and not the cut one
        for name, body in sent.items():
            content = client.get(f"/fleet/artifacts/{items[name]['id']}/content")
            assert content.status_code == 200, content.text
            assert content.content == body, name
            assert items[name]["sizeBytes"] == len(body)
            assert items[name]["sha256"] == hashlib.sha256(body).hexdigest()

    # No blob of the cut upload was committed: every committed blob is an answered artifact's.
    committed = {
        path.relative_to(data / "blobs").as_posix()
        for path in (data / "blobs").rglob("*")
        if path.is_file() and not path.name.startswith(".tmp-") and not path.name.endswith(SIDECARS)
    }
    assert committed == {item["blobKey"] for item in items.values()}


def test_a_bad_durability_is_refused_at_start_up(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="FLEET_ARTIFACTS_DURABILITY must be one of power, process"):
        load_settings({"FLEET_ARTIFACTS_DURABILITY": "fsync"})
    run = subprocess.run(
        [sys.executable, "-m", "fleet_artifacts", "serve", "--port", "0"],
        env=env(tmp_path / "data", "sometimes"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2, run.stdout + run.stderr
    assert "FLEET_ARTIFACTS_DURABILITY must be one of power, process" in run.stderr
    assert not (tmp_path / "data" / "pointers.sqlite3").exists()  # refused before any store opened


@pytest.mark.parametrize(
    ("durability", "fsync", "synchronous"), [("power", True, "FULL"), ("process", False, "NORMAL")]
)
async def test_the_setting_reaches_both_local_stores(
    tmp_path: Path, durability: str, fsync: bool, synchronous: str
) -> None:
    settings = load_settings(env(tmp_path, durability))
    assert settings.durability == durability
    async with open_stores(settings) as (blobs, pointers):
        assert isinstance(blobs, LocalBlobStore) and blobs.fsync is fsync
        assert isinstance(pointers, SqlitePointerStore) and pointers.synchronous == synchronous


# With DURABILITY=process an upload's pointer commits on the event loop's thread (a third SQLite
# connection that never waits); the pointer contract must hold there too, so its tests (and the
# journal's) run once more against such a store.
ContractTest = Callable[[PointerStore], Awaitable[None]]
CONTRACT: dict[str, ContractTest] = {
    f"{module.__name__.rsplit('.', 1)[-1]}.{name}": test
    for module in (pointer_contract, journal_contract)
    for name, test in vars(module).items()
    if name.startswith("test_") and list(inspect.signature(test).parameters) == ["pointers"]
}


@pytest.mark.parametrize("name", sorted(CONTRACT))
async def test_the_pointer_contract_holds_with_durability_process(tmp_path: Path, name: str) -> None:
    store = SqlitePointerStore(tmp_path / "p.sqlite3", synchronous="NORMAL")
    try:
        await CONTRACT[name](store)
    finally:
        await store.close()


async def test_a_busy_database_sends_the_commit_to_the_writers_thread(tmp_path: Path) -> None:
    store = SqlitePointerStore(tmp_path / "p.sqlite3", synchronous="NORMAL")
    other = sqlite3.connect(tmp_path / "p.sqlite3", isolation_level=None)  # another process's writer
    try:
        pointer = pointer_contract.make("busy-job")
        other.execute("BEGIN IMMEDIATE")
        creating = asyncio.ensure_future(store.create(pointer))
        await asyncio.sleep(0.3)
        assert not creating.done()  # waiting its turn in the writer's thread, not failed nor blocking
        other.execute("COMMIT")
        etag = await creating
        found = await store.get("busy-job", pointer.id)
        assert found is not None and found.etag == etag
    finally:
        other.close()
        await store.close()


async def test_the_loop_writers_commits_are_checkpointed_in_the_writers_thread(tmp_path: Path) -> None:
    store = SqlitePointerStore(tmp_path / "p.sqlite3", synchronous="NORMAL")
    wal = tmp_path / "p.sqlite3-wal"
    try:
        for n in range(LOOP_CHECKPOINT_EVERY // 2):
            await store.create(pointer_contract.make("wal-job", n))
        per_commit = wal.stat().st_size / (LOOP_CHECKPOINT_EVERY // 2)
        for n in range(4 * LOOP_CHECKPOINT_EVERY):
            await store.create(pointer_contract.make("wal-job", n))
            await asyncio.sleep(0)  # a request yields somewhere: the checkpoint gets its turn
        # Without checkpoints the WAL would hold every commit; with them it is reused from its start.
        assert wal.stat().st_size < 2.5 * LOOP_CHECKPOINT_EVERY * per_commit
    finally:
        await store.close()
