"""End to end: the real `fleet-artifacts serve` process, talked to over HTTP like a worker would."""

from __future__ import annotations

import hashlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fleet_artifacts import __version__
from tests.conftest import TOKEN_A
from tests.helpers import clean_env
from tests.servers import AZURITE_ACCOUNT, AZURITE_KEY, REPO, Azurite, free_port, wait_for_port


def serve_env(connection_string: str, data_dir: Path) -> dict[str, str]:
    env = clean_env()
    env.update(
        {
            "FLEET_ARTIFACTS_TOKENS": f"{TOKEN_A}:prod-a",
            "FLEET_ARTIFACTS_AZURE_STORAGE_CONNECTION_STRING": connection_string,
            "FLEET_ARTIFACTS_BLOB_CONTAINER": "e2e" + secrets.token_hex(4),
            "FLEET_ARTIFACTS_DATA_DIR": str(data_dir),
            "FLEET_ARTIFACTS_AZURE_RETRY_TOTAL": "0",
        }
    )
    return env


@pytest.fixture
def service(azurite: Azurite, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "fleet_artifacts", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=serve_env(azurite.connection_string, tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, proc=proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
        log = out.decode(errors="replace")
        # uvicorn finishes the lifespan, then re-raises SIGTERM as its exit status.
        assert proc.returncode in (0, -15), log
        assert "Application shutdown complete." in log, log


def test_worker_and_dashboard_flow(service: str) -> None:
    data = secrets.token_bytes(3 * 1024 * 1024 + 5)
    with httpx.Client(base_url=service, headers={"Authorization": f"Bearer {TOKEN_A}"}, timeout=60) as c:
        r = c.post(
            "/fleet/jobs/nightly-42/artifacts",
            data={"kind": "build", "runId": "attempt-1"},
            files={"file": ("dist.tar.gz", data, "application/gzip")},
        )
        assert r.status_code == 201, r.text
        artifact = r.json()
        assert artifact["sha256"] == hashlib.sha256(data).hexdigest()

        page = c.get("/fleet/jobs/nightly-42/artifacts", params={"runId": "attempt-1"}).json()
        assert [item["id"] for item in page["items"]] == [artifact["id"]]

        fresh = c.get(f"/fleet/artifacts/{artifact['id']}").json()
        download = httpx.get(fresh["downloadUrl"], timeout=60)
        assert download.status_code == 200 and download.content == data
        assert "filename*=UTF-8''dist.tar.gz" in download.headers["content-disposition"]

        assert c.delete(f"/fleet/artifacts/{artifact['id']}").status_code == 204
        assert c.get(f"/fleet/artifacts/{artifact['id']}").status_code == 404
        assert httpx.get(f"{service}/health").json() == {"status": "ok"}


def test_one_access_line_per_request_and_no_signed_url_in_the_log(azurite: Azurite, tmp_path: Path) -> None:
    port = free_port()
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fleet_artifacts", "serve", "--port", str(port)],
            env=serve_env(azurite.connection_string, tmp_path),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_port(port, proc=proc)
            with httpx.Client(
                base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {TOKEN_A}"}
            ) as c:
                for n in range(3):
                    c.post(
                        "/fleet/jobs/j-log/artifacts",
                        params={"kind": "log", "fileName": f"{n}.log"},
                        content=b"x",
                    )
                page = c.get("/fleet/jobs/j-log/artifacts").json()  # signs three download URLs
                assert len(page["items"]) == 3
                assert httpx.get(page["items"][0]["downloadUrl"]).status_code == 200
                assert c.get("/no/such/route").status_code == 404
                forged = (
                    "/x%0aINFO - 2026-01-01 - fleet_artifacts.access - DELETE /fleet/artifacts/{id} 204 1ms"
                )
                assert c.get(forged).status_code == 404
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    log = log_path.read_text(errors="replace")
    lines = [line for line in log.splitlines() if "fleet_artifacts.access" in line]
    assert len(lines) == 6, log  # 3 uploads, 1 list, 2 unknown routes; the download went to Azurite
    # The encoded newline stayed encoded inside its own line: it forged no second one (6 above).
    assert any("GET /x%0aINFO" in line for line in lines), lines
    assert sum("POST /fleet/jobs/{job_id}/artifacts 201 " in line for line in lines) == 3, lines
    assert any("GET /fleet/jobs/{job_id}/artifacts 200 " in line for line in lines), lines
    assert any("GET /no/such/route 404 " in line for line in lines), lines
    assert all(line.rstrip().endswith("ms") for line in lines), lines
    assert "sig=" not in log and "signed read URL" not in log  # issuance is DEBUG, never a URL


def test_unreachable_blob_storage_is_a_clear_startup_error(tmp_path: Path) -> None:
    closed = free_port()
    cs = (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{closed}/{AZURITE_ACCOUNT};"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "fleet_artifacts", "serve", "--port", str(free_port())],
        env=serve_env(cs, tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "cannot open Blob container" in proc.stdout + proc.stderr


def serve_refused(cwd: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    """`fleet-artifacts serve` with these FLEET_ARTIFACTS_* variables, expected to refuse to start."""
    env = clean_env() | {f"FLEET_ARTIFACTS_{name.upper()}": value for name, value in variables.items()}
    command = [sys.executable, "-m", "fleet_artifacts", "serve", "--port", str(free_port())]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, cwd=cwd)


def test_missing_configuration_is_a_clear_error(tmp_path: Path) -> None:
    proc = serve_refused(tmp_path, tokenz="typo")
    assert proc.returncode == 2
    assert "unknown setting FLEET_ARTIFACTS_TOKENZ" in proc.stderr


@pytest.mark.parametrize("tokens", ["", "   ", ",,", " , "])
def test_a_set_but_empty_token_list_refuses_to_start(tmp_path: Path, tokens: str) -> None:
    proc = serve_refused(tmp_path, tokens=tokens)
    assert proc.returncode == 2
    assert "FLEET_ARTIFACTS_TOKENS is set but names no token" in proc.stderr
    assert not (tmp_path / "fleet-artifacts-data" / "token").exists()  # no token was made


def test_version_and_a_port_in_use_is_an_error_without_a_banner(tmp_path: Path) -> None:
    version = subprocess.run(
        [sys.executable, "-m", "fleet_artifacts", "--version"],
        env=clean_env(),
        capture_output=True,
        text=True,
    )
    assert version.returncode == 0 and version.stdout.strip() == f"fleet-artifacts {__version__}"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = clean_env() | {"FLEET_ARTIFACTS_PORT": str(port)}  # the env equivalent of --port
        proc = subprocess.run(
            [sys.executable, "-m", "fleet_artifacts", "serve"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )
    assert proc.returncode != 0
    assert "listening on" not in proc.stdout  # never claimed an address it could not bind
    assert "address already in use" in (proc.stdout + proc.stderr).lower()


def test_a_port_out_of_range_is_a_usage_error(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "fleet_artifacts", "serve", "--port", "70000"]
    run = subprocess.run(command, env=clean_env(), capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert run.returncode == 2 and "70000 is not a port" in run.stderr


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_dev_azurite_says_where_its_token_lives_and_stops_azurite_with_it(tmp_path: Path) -> None:
    if port_open(10000):
        pytest.skip("port 10000, where scripts/dev-azurite runs Azurite, is taken on this machine")
    port = free_port()
    env = clean_env() | {"PORT": str(port), "FLEET_ARTIFACTS_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.Popen(
        ["bash", str(REPO / "scripts" / "dev-azurite")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, as a terminal would give it
    )
    assert proc.stdout is not None
    seen: list[str] = []
    try:
        for raw in iter(proc.stdout.readline, b""):
            seen.append(raw.decode(errors="replace").rstrip())
            if "listening on" in seen[-1]:
                break
        assert any("bearer token for product my-product" in line and "kept in" in line for line in seen), seen
        assert port_open(10000)  # Azurite is up
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
        proc.wait(timeout=60)  # Azurite takes about 12 s to close gracefully
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    for _ in range(50):
        if not port_open(10000):
            break
        time.sleep(0.1)
    assert not port_open(10000), "Azurite outlived scripts/dev-azurite"


def start_zero_config(cwd: Path) -> tuple[subprocess.Popen[bytes], str, str, list[str]]:
    """`fleet-artifacts serve` with no configuration at all, in ``cwd``; returns its banner."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "fleet_artifacts", "serve", "--port", str(port)],
        env=clean_env(),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert proc.stdout is not None
    for line in iter(proc.stdout.readline, b""):  # uvicorn's own start-up lines come first
        if b"listening on" in line:
            banner = [line.decode().rstrip()] + [proc.stdout.readline().decode().rstrip() for _ in range(4)]
            break
    else:
        raise AssertionError("serve ended without saying where it listens")
    token = next(line.split()[2] for line in banner if "bearer token:" in line)
    # The banner comes once the socket is bound: a connection succeeds at once, no waiting.
    socket.create_connection(("127.0.0.1", port), timeout=5).close()
    return proc, f"http://127.0.0.1:{port}", token, banner


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.communicate(timeout=20)


def test_zero_config_serve_starts_and_accepts_an_upload_with_the_printed_token(tmp_path: Path) -> None:
    proc, url, token, banner = start_zero_config(tmp_path)
    data_dir = tmp_path / "fleet-artifacts-data"
    try:
        assert f"listening on {url}" in banner[0]
        assert f"local directory {data_dir / 'blobs'}" in banner[1]
        assert f"SQLite {data_dir / 'pointers.sqlite3'}" in banner[2]
        auth = {"Authorization": f"Bearer {token}"}
        r = httpx.post(
            f"{url}/fleet/jobs/first-job/artifacts",
            params={"kind": "log", "fileName": "hello.txt"},
            content=b"hello, fleet",
            headers={**auth, "Content-Type": "text/plain"},
        )
        assert r.status_code == 201, r.text
        created = r.json()
        assert created["productId"] == "default"
        assert created["downloadUrl"].startswith(f"{url}/blobs/fleet/default/first-job/")
        assert httpx.get(created["downloadUrl"]).content == b"hello, fleet"
        assert (data_dir / "blobs" / created["blobKey"]).read_bytes() == b"hello, fleet"
        assert httpx.post(f"{url}/fleet/jobs/j/artifacts", content=b"x").status_code == 401
    finally:
        stop(proc)
    # A restart keeps the token, the signing key and the data.
    proc, url, token_again, _ = start_zero_config(tmp_path)
    try:
        assert token_again == token
        listed = httpx.get(
            f"{url}/fleet/jobs/first-job/artifacts", headers={"Authorization": f"Bearer {token}"}
        )
        assert [item["id"] for item in listed.json()["items"]] == [created["id"]]
        proxied = httpx.get(
            f"{url}/fleet/artifacts/{created['id']}/content", headers={"Authorization": f"Bearer {token}"}
        )
        assert proxied.content == b"hello, fleet"
    finally:
        stop(proc)
    assert oct((data_dir / "token").stat().st_mode & 0o777) == "0o600"
    assert oct((data_dir / "signing.key").stat().st_mode & 0o777) == "0o600"
