"""``GET /fleet/jobs/{jobId}/archive.zip`` on every backend: a job's artifacts as one streamed zip.

What goes in (ACTIVE, unexpired, yours, filtered), in which order and under which names, that
the bytes are exact and the zip whole (``unzip -t`` and ``zipfile``), and what a client sees
when a blob goes away before its entry (left out) or during it (a cut transfer).
"""

from __future__ import annotations

import hashlib
import io
import os
import secrets
import shutil
import subprocess
import time
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from fleet_artifacts.app import create_app
from fleet_artifacts.core.archive import compressible, safe_name, unique_names
from fleet_artifacts.routes import archive as archive_route
from fleet_artifacts.settings import Settings
from tests.conftest import TOKEN_B, make_settings
from tests.helpers import assert_problem, upload_raw
from tests.servers import ThreadedServer

UNZIP = shutil.which("unzip")

# (kind, fileName, content type, compressible?) cycled over 50 uploads: repeats and a case twin
# of one name, a name with every character Windows refuses that upload validation lets through,
# a device name.
SHAPES = [
    ("log", "report.txt", "text/plain", True),
    ("data", "results.json", "application/json", True),
    ("image", "shot.png", "image/png", False),
    ("build", "dist.tar.gz", "application/gzip", False),
    ("other", "blob.bin", "application/octet-stream", False),
    ("log", "Report.txt", "text/plain", True),
    ("document", 'a<b>:c|d?"e*.txt', "text/plain", True),
    ("log", "CON.txt", "text/plain", True),
]
SIZES = [0, 1, 777, 10_000, 65_536, 100_003, 300_000, 1_048_577, 3 * 1024 * 1024 + 5]


def body_of(size: int, text: bool) -> bytes:
    """``size`` bytes: log-like lines (compressible) or random ones."""
    if not text:
        return secrets.token_bytes(size)
    line = f"{secrets.token_hex(4)} INFO step finished in 12 ms\n".encode()
    return (line * (size // len(line) + 1))[:size]


def created_at(item: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(item["createdAt"]).replace("Z", "+00:00"))


def archive_of(client: httpx.Client, job_id: str, **params: str) -> tuple[httpx.Response, zipfile.ZipFile]:
    r = client.get(f"/fleet/jobs/{job_id}/archive.zip", params=params)
    assert r.status_code == 200, r.text
    return r, zipfile.ZipFile(io.BytesIO(r.content))


def test_a_fifty_file_job_zips_whole_byte_exact_in_order_under_safe_unique_names(
    client: httpx.Client, job_id: str, tmp_path: Path
) -> None:
    uploads: list[tuple[dict[str, Any], bytes, bool]] = []
    for i in range(50):
        kind, name, content_type, text = SHAPES[i % len(SHAPES)]
        data = body_of(SIZES[i % len(SIZES)], text)
        r = upload_raw(client, job_id, data, kind=kind, fileName=name, _ct=content_type, runId=f"run-{i % 3}")
        assert r.status_code == 201, r.text
        uploads.append((r.json(), data, text))
    r, zipped = archive_of(client, job_id)

    assert r.headers["content-type"] == "application/zip"
    assert r.headers["content-disposition"].startswith(f'attachment; filename="{job_id}.zip"')
    assert r.headers["x-skipped-artifacts"] == "0"
    assert "content-length" not in r.headers  # streamed as it is built
    infos = zipped.infolist()
    assert len(infos) == 50
    # Oldest first (createdAt, then id); each entry's bytes are its artifact's, exactly.
    ordered = sorted(uploads, key=lambda u: (created_at(u[0]), u[0]["id"]))
    for info, (item, data, text) in zip(infos, ordered, strict=True):
        assert zipped.read(info) == data, info.filename
        assert hashlib.sha256(data).hexdigest() == item["sha256"]
        assert info.file_size == len(data)
        # DOS time: the createdAt's fields (UTC), to its 2-second resolution.
        stamp = created_at(item)
        assert info.date_time[:5] == (stamp.year, stamp.month, stamp.day, stamp.hour, stamp.minute)
        assert info.date_time[5] == stamp.second - stamp.second % 2
        if text and len(data) > 10_000:
            assert info.compress_size < len(data) // 4, info.filename  # deflated
        elif not text and len(data) > 10_000:
            assert len(data) <= info.compress_size <= len(data) * 1.001 + 64, info.filename  # stored
    names = [info.filename for info in infos]
    assert len({n.casefold() for n in names}) == 50
    for name in names:
        assert "/" not in name and "\\" not in name and "\x00" not in name and name not in (".", "..")
    assert names.count("report.txt") == 1 and "report (2).txt" in {n.lower() for n in names}
    assert "dist (2).tar.gz" in names and "a_b__c_d__e_.txt" in names and "_CON.txt" in names

    path = tmp_path / "job.zip"
    path.write_bytes(r.content)
    if UNZIP is None:
        pytest.skip("unzip is not on PATH: the zip was checked with zipfile only")
    tested = subprocess.run([UNZIP, "-t", str(path)], capture_output=True, text=True, check=False)
    assert tested.returncode == 0 and "No errors detected" in tested.stdout, tested.stdout + tested.stderr
    out = tmp_path / "out"
    subprocess.run([UNZIP, "-q", "-d", str(out), str(path)], check=True)
    extracted = sorted(p.name for p in out.rglob("*"))
    assert extracted == sorted(names)  # all of them, flat, in the target directory


def rename_behind_the_back(settings: Settings, job_id: str, artifact_id: str, name: str) -> None:
    """Give a stored pointer a fileName upload validation refuses (an older or foreign writer)."""
    if settings.pointer_backend == "cosmos":
        from azure.cosmos import CosmosClient

        assert settings.cosmos_endpoint and settings.cosmos_key
        with CosmosClient(settings.cosmos_endpoint, settings.cosmos_key) as cosmos:
            container = cosmos.get_database_client(settings.cosmos_database).get_container_client(
                settings.cosmos_container
            )
            doc = container.read_item(artifact_id, partition_key=job_id)
            container.replace_item(artifact_id, {**doc, "fileName": name})
        return
    import sqlite3

    with sqlite3.connect(settings.data_dir / "pointers.sqlite3") as conn:
        conn.execute(
            "UPDATE pointers SET doc = json_set(doc, '$.fileName', ?) WHERE id = ?", (name, artifact_id)
        )


def test_a_stored_traversal_name_cannot_escape_the_extraction_directory(
    client: httpx.Client, settings: Settings, job_id: str, tmp_path: Path
) -> None:
    assert_problem(upload_raw(client, job_id, b"x", fileName="../../etc/passwd"), 400)  # refused at upload
    hostile = ["../../etc/passwd", "..\\..\\win.ini", "/abs/path", "nul\x00byte", "..", "C:evil"]
    for name in hostile:
        created = upload_raw(client, job_id, name.encode(), fileName="plain.txt").json()
        rename_behind_the_back(settings, job_id, created["id"], name)
    r, zipped = archive_of(client, job_id)
    names = [info.filename for info in zipped.infolist()]
    assert names == [".._.._etc_passwd", ".._.._win.ini", "_abs_path", "nul_byte", "_", "C_evil"]
    assert [zipped.read(n) for n in names] == [n.encode() for n in hostile]
    if UNZIP is not None:
        (tmp_path / "a.zip").write_bytes(r.content)
        out = tmp_path / "deep" / "out"
        out.mkdir(parents=True)
        subprocess.run([UNZIP, "-q", "-d", str(out), str(tmp_path / "a.zip")], check=True)
        assert sorted(p.name for p in (tmp_path / "deep").rglob("*") if p.is_file()) == sorted(names)
        assert all(p.parent == out for p in out.rglob("*"))


def test_kind_and_run_id_narrow_the_archive(client: httpx.Client, job_id: str) -> None:
    for i in range(3):
        assert upload_raw(
            client, job_id, b"log %d" % i, kind="log", fileName=f"l{i}.log", runId="r1"
        ).is_success
    for i in range(2):
        r = upload_raw(
            client, job_id, b"img", kind="image", fileName=f"i{i}.png", _ct="image/png", runId="r2"
        )
        assert r.is_success
    assert archive_of(client, job_id, kind="log")[1].namelist() == ["l0.log", "l1.log", "l2.log"]
    assert archive_of(client, job_id, runId="r2")[1].namelist() == ["i0.png", "i1.png"]
    assert len(archive_of(client, job_id)[1].namelist()) == 5
    assert_problem(
        client.get(f"/fleet/jobs/{job_id}/archive.zip", params={"kind": "log", "runId": "r2"}), 404
    )
    assert_problem(client.get(f"/fleet/jobs/{job_id}/archive.zip", params={"kind": "nope"}), 400)
    assert_problem(client.get(f"/fleet/jobs/{job_id}/archive.zip", params={"runId": "bad id"}), 400)


def test_an_empty_job_answers_404_and_another_products_job_looks_the_same(
    client: httpx.Client, server_url: str, job_id: str
) -> None:
    # Listing answers an empty page; the archive, a download, has nothing to download.
    assert client.get(f"/fleet/jobs/{job_id}/artifacts").json()["items"] == []
    assert "no artifacts" in str(
        assert_problem(client.get(f"/fleet/jobs/{job_id}/archive.zip"), 404)["detail"]
    )
    assert upload_raw(client, job_id, b"mine").status_code == 201
    with httpx.Client(base_url=server_url, headers={"Authorization": f"Bearer {TOKEN_B}"}) as other:
        body = assert_problem(other.get(f"/fleet/jobs/{job_id}/archive.zip"), 404)
    assert body["detail"] == f"job {job_id} has no artifacts to archive"  # as for a job that is empty
    assert_problem(httpx.get(f"{server_url}/fleet/jobs/{job_id}/archive.zip"), 401)


def test_archived_artifacts_are_left_out_and_counted(client: httpx.Client, job_id: str) -> None:
    kept = upload_raw(client, job_id, b"kept", fileName="kept.log").json()
    cold = upload_raw(client, job_id, b"cold", fileName="cold.log").json()
    r = client.post(f"/fleet/jobs/{job_id}/artifacts/{cold['id']}/archive")
    assert r.status_code == 200, r.text
    r, zipped = archive_of(client, job_id)
    assert zipped.namelist() == ["kept.log"] and r.headers["x-skipped-artifacts"] == "1"
    assert (
        client.delete(f"/fleet/jobs/{job_id}/artifacts/{kept['id']}", params={"purge": "true"}).status_code
        == 204
    )
    assert "archived" in str(assert_problem(client.get(f"/fleet/jobs/{job_id}/archive.zip"), 409)["detail"])


async def _delete_blob(settings: Settings, key: str) -> None:
    if settings.blob_backend == "local":
        (settings.data_dir / "blobs" / key).unlink()
        return
    from azure.storage.blob.aio import BlobServiceClient

    assert settings.azure_storage_connection_string
    async with BlobServiceClient.from_connection_string(settings.azure_storage_connection_string) as svc:
        await svc.get_blob_client(settings.blob_container, key).delete_blob()


async def _shorten_blob(settings: Settings, key: str, data: bytes) -> None:
    if settings.blob_backend == "local":
        with open(settings.data_dir / "blobs" / key, "r+b") as blob:
            blob.truncate(len(data))
        return
    from azure.storage.blob.aio import BlobServiceClient

    assert settings.azure_storage_connection_string
    async with BlobServiceClient.from_connection_string(settings.azure_storage_connection_string) as svc:
        await svc.get_blob_client(settings.blob_container, key).upload_blob(data, overwrite=True)


def _no_archive_streaming() -> None:
    """Every archive body finished (or was collected): no slot stays taken."""
    deadline = time.monotonic() + 5
    while len(archive_route._streaming) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(archive_route._streaming) == 0


async def test_a_blob_gone_before_its_entry_is_left_out_and_one_cut_short_fails_the_transfer(
    client: httpx.Client, settings: Settings, job_id: str
) -> None:
    datas = [os.urandom(600_000) for _ in range(3)]
    items = [
        upload_raw(
            client, job_id, d, kind="build", fileName=f"{n}.bin", _ct="application/octet-stream"
        ).json()
        for n, d in zip("abc", datas, strict=True)
    ]
    await _delete_blob(settings, items[1]["blobKey"])  # as a concurrent delete leaves it, pointer last
    _, zipped = archive_of(client, job_id)
    assert zipped.namelist() == ["a.bin", "c.bin"] and zipped.testzip() is None
    assert zipped.read("c.bin") == datas[2]

    await _shorten_blob(settings, items[2]["blobKey"], datas[2][:1000])  # its bytes changed under it
    received = b""
    with (
        pytest.raises(httpx.RemoteProtocolError),  # the chunked body never ends properly
        client.stream("GET", f"/fleet/jobs/{job_id}/archive.zip") as r,
    ):
        assert r.status_code == 200
        for chunk in r.iter_bytes():
            received += chunk
    with pytest.raises(zipfile.BadZipFile):  # no central directory: never a complete-looking zip
        zipfile.ZipFile(io.BytesIO(received))
    _no_archive_streaming()


def test_a_client_that_leaves_early_frees_its_slot(client: httpx.Client, job_id: str) -> None:
    for i in range(4):
        assert upload_raw(
            client, job_id, os.urandom(2 * 1024 * 1024), fileName=f"{i}.bin", _ct="image/png"
        ).is_success
    with client.stream("GET", f"/fleet/jobs/{job_id}/archive.zip") as r:
        assert r.status_code == 200
        next(r.iter_raw(1024))
    _no_archive_streaming()


def test_past_the_streaming_limit_the_answer_is_503_with_retry_after(
    client: httpx.Client, job_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert upload_raw(client, job_id, b"x").status_code == 201
    monkeypatch.setattr(archive_route, "MAX_STREAMS", 0)  # the server runs in this process
    r = client.get(f"/fleet/jobs/{job_id}/archive.zip")
    assert_problem(r, 503)
    assert r.headers["retry-after"] == "10"
    monkeypatch.setattr(archive_route, "MAX_STREAMS", 1)
    assert client.get(f"/fleet/jobs/{job_id}/archive.zip").status_code == 200


def test_reading_needs_the_read_scope(tmp_path: Path) -> None:
    tokens = {"read": "tok-read-" + "0" * 16, "write": "tok-write-" + "0" * 16}
    entries = ",".join(f"{token}:prod-a:{scope}" for scope, token in tokens.items())
    server = ThreadedServer(create_app(make_settings(None, tmp_path, tokens=entries))).start()
    try:
        writer = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {tokens['write']}"})
        reader = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {tokens['read']}"})
        with writer, reader:
            assert upload_raw(writer, "j1", b"x", fileName="a.log").status_code == 201
            refused = assert_problem(writer.get("/fleet/jobs/j1/archive.zip"), 403)
            assert refused["requiredScope"] == "read"
            r = reader.get("/fleet/jobs/j1/archive.zip")
            assert r.status_code == 200 and zipfile.ZipFile(io.BytesIO(r.content)).read("a.log") == b"x"
    finally:
        server.stop()


def test_names_and_compression_choices() -> None:
    assert [
        safe_name(n) for n in ["ok.txt", "a/b", "a\\b", "x\x00y", "...", " lead", "trail. ", "Lpt1", "com9.x"]
    ] == [
        "ok.txt",
        "a_b",
        "a_b",
        "x_y",
        "_",
        "lead",
        "trail",
        "_Lpt1",
        "_com9.x",
    ]
    assert unique_names(["r.txt", "r.txt", "r (2).txt", ".env", ".env", "noext", "noext"]) == [
        "r.txt",
        "r (2).txt",
        "r (2) (2).txt",
        ".env",
        ".env (2)",
        "noext",
        "noext (2)",
    ]
    assert [
        compressible(t)
        for t in ["text/csv", "application/xml", "application/x-tar", "image/jpeg", "application/zip"]
    ] == [
        True,
        True,
        True,
        False,
        False,
    ]
