"""A database made before the lifecycle columns existed opens, migrates once, and sweeps by index."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec

from fleet_artifacts.core.models import ArtifactStatus, BlobTier
from fleet_artifacts.stores.sqlite import SqlitePointerStore

# The pointers table as the service created it before retention and tiers (release 0.x).
OLD_SCHEMA = """
CREATE TABLE pointers (
    id TEXT PRIMARY KEY, job_id TEXT NOT NULL, product_id TEXT NOT NULL, created_us INTEGER NOT NULL,
    status TEXT NOT NULL, kind TEXT NOT NULL, run_id TEXT, etag TEXT NOT NULL, doc TEXT NOT NULL
);
CREATE INDEX pointers_by_job ON pointers (job_id, created_us DESC, id DESC);
"""


def old_doc(artifact_id: str, created: datetime, expires: datetime | None, status: str) -> str:
    """A pointer document as the old release wrote it (no retention, tier or undelete fields)."""
    return msgspec.json.encode(
        {
            "id": artifact_id, "productId": "p", "jobId": "j", "runId": None, "kind": "log",
            "fileName": "a.log", "blobKey": f"fleet/p/j/{artifact_id}-log", "contentType": "text/plain",
            "sizeBytes": 1, "sha256": None, "createdAt": created.isoformat(),
            "expiresAt": None if expires is None else expires.isoformat(), "tags": {}, "status": status,
            "sha256Verified": False,
        }
    ).decode()  # fmt: skip


async def test_an_old_database_migrates_once_even_when_two_processes_open_it_together(tmp_path: Path) -> None:
    path = tmp_path / "pointers.sqlite3"
    created = datetime(2026, 1, 1, tzinfo=UTC)
    with sqlite3.connect(path) as conn:
        conn.executescript(OLD_SCHEMA)
        rows = [
            ("a" * 32, "ACTIVE", None),  # made before retention: never expires until re-dated
            ("b" * 32, "UPLOADING", created + timedelta(hours=1)),  # a stale direct upload
        ]
        for artifact_id, status, expires in rows:
            conn.execute(
                "INSERT INTO pointers VALUES (?, 'j', 'p', ?, ?, 'log', NULL, 'e1', ?)",
                (artifact_id, 1, status, old_doc(artifact_id, created, expires, status)),
            )
    opened: list[SqlitePointerStore] = []
    failures: list[BaseException] = []

    def open_store() -> None:
        try:
            opened.append(SqlitePointerStore(path))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]  # as several processes would
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == [] and len(opened) == 4
    store = opened[0]
    now = datetime(2026, 12, 1, tzinfo=UTC)
    assert [s.pointer.id for s in await store.expired(ArtifactStatus.UPLOADING, before=now)] == ["b" * 32]
    assert await store.expired(ArtifactStatus.ACTIVE, before=now) == []
    aged = await store.aged(ArtifactStatus.ACTIVE, tiered_before=now, tiers=[BlobTier.HOT])
    assert [s.pointer.id for s in aged] == ["a" * 32] and aged[0].pointer.tier is BlobTier.HOT
    with sqlite3.connect(path) as conn:
        plan = " ".join(
            str(row)
            for row in conn.execute(
                "EXPLAIN QUERY PLAN SELECT doc FROM pointers WHERE status = 'ACTIVE' AND expires_us < 5"
            )
        )
    assert "pointers_by_expiry" in plan  # found by index, never a scan of every pointer
    for each in opened:
        await each.close()
