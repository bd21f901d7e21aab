"""The worker commands as real processes against a real `fleet-artifacts serve` (local backend)."""

from __future__ import annotations

import hashlib
import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import TOKEN_A
from tests.helpers import clean_env
from tests.servers import serve_process

KiB, MiB = 1024, 1024 * 1024


def serve_env(data_dir: Path) -> dict[str, str]:
    return clean_env() | {
        "FLEET_ARTIFACTS_TOKENS": f"{TOKEN_A}:prod-a",
        "FLEET_ARTIFACTS_DATA_DIR": str(data_dir),
        "FLEET_ARTIFACTS_SWEEP_INTERVAL_SECONDS": "0",
        # So that a direct upload shows: its sha256 is the client's claim, recorded unverified.
        "FLEET_ARTIFACTS_VERIFY_MAX_BYTES": str(MiB),
        # The client commands' variables, set on a machine that also serves: serve ignores them.
        "FLEET_ARTIFACTS_URL": "http://elsewhere.invalid",
        "FLEET_ARTIFACTS_TOKEN": "not-a-token-of-this-service",
    }


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serve_process(serve_env(tmp_path_factory.mktemp("serve"))) as (url, _):
        yield url


def cli_env(url: str) -> dict[str, str]:
    return clean_env() | {"FLEET_ARTIFACTS_URL": url, "FLEET_ARTIFACTS_TOKEN": TOKEN_A}


def cli(url: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "fleet_artifacts", *args]
    return subprocess.run(command, env=cli_env(url), capture_output=True, text=True, timeout=timeout)


def make_tree(root: Path, count: int = 50) -> dict[str, bytes]:
    """``count`` files of mixed sizes under nested directories; one of 3 MiB (over a 2M threshold)."""
    files: dict[str, bytes] = {}
    for n in range(count):
        size = [0, 17, 4 * KiB, 70 * KiB, 300 * KiB][n % 5]
        relative = f"logs/step-{n}.log" if n % 3 == 0 else f"data/{n % 4}/part-{n}.json"
        files[relative] = secrets.token_bytes(size)
    files["dist/big.tar.gz"] = secrets.token_bytes(3 * MiB + 11)
    files.pop(next(iter(files)))  # back to `count` files
    for relative, data in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(data)
    return files


def test_push_ls_get_url_rm_round_trip(service: str, tmp_path: Path) -> None:
    src = tmp_path / "out"
    files = make_tree(src)
    assert len(files) == 50
    job = "cli-" + secrets.token_hex(4)
    pushed = cli(service, "push", str(src), "--job", job, "--run", "r1", "--tag", "os=linux",
                 "--concurrency", "6", "--direct-threshold", "2M", "--json")  # fmt: skip
    assert pushed.returncode == 0, pushed.stderr
    assert "Traceback" not in pushed.stderr
    created = json.loads(pushed.stdout)
    assert len(created) == 50
    by_path = {a["tags"].get("path", a["fileName"]): a for a in created}
    assert set(by_path) == set(files)
    big = by_path["dist/big.tar.gz"]
    assert big["kind"] == "build" and big["sha256Verified"] is False  # went direct to the blob
    assert big["sha256"] == hashlib.sha256(files["dist/big.tar.gz"]).hexdigest()
    assert by_path["logs/step-3.log"]["kind"] == "log" and by_path["data/1/part-1.json"]["kind"] == "data"
    assert all(a["runId"] == "r1" and a["tags"]["os"] == "linux" for a in created)

    listed = cli(service, "ls", "--job", job)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["NAME", "KIND", "SIZE", "AGE", "ID"] and len(lines) == 51
    assert any(line.startswith("dist/big.tar.gz") and "3.0 MiB" in line for line in lines)
    as_json = json.loads(cli(service, "ls", "--job", job, "--json").stdout)
    assert len(as_json) == 50

    target = tmp_path / "copy"
    got = cli(service, "get", "--job", job, "--all", "-o", str(target))
    assert got.returncode == 0, got.stderr
    copied = {p.relative_to(target).as_posix(): p.read_bytes() for p in target.rglob("*") if p.is_file()}
    assert copied == files  # every path recreated, every byte verified

    some = by_path["logs/step-3.log"]
    url = cli(service, "url", some["id"], "--job", job)
    assert url.returncode == 0 and httpx.get(url.stdout.strip()).content == files["logs/step-3.log"]
    removed = cli(service, "rm", some["id"])
    assert removed.returncode == 0 and some["id"] in removed.stdout
    assert len(json.loads(cli(service, "ls", "--job", job, "--json").stdout)) == 49


def test_push_seal_manifest_and_jobs(service: str, tmp_path: Path) -> None:
    src = tmp_path / "sealed"
    files = make_tree(src, count=6)
    job = "seal-" + secrets.token_hex(4)
    pushed = cli(service, "push", str(src), "--job", job, "--seal")
    assert pushed.returncode == 0, pushed.stderr
    first = cli(service, "manifest", "--job", job)
    assert first.returncode == 0, first.stderr
    manifest = json.loads(first.stdout)
    assert manifest["sealed"] is True and len(manifest["artifacts"]) == len(files)
    late = tmp_path / "late.log"
    late.write_bytes(b"late")
    refused = cli(service, "push", str(late), "--job", job)
    said = refused.stdout + refused.stderr
    assert refused.returncode == 1 and "sealed" in said and "Traceback" not in said
    assert cli(service, "manifest", "--job", job).stdout == first.stdout  # attempts changed nothing
    jobs = cli(service, "jobs")
    assert jobs.returncode == 0, jobs.stderr
    row = next(line for line in jobs.stdout.splitlines() if line.startswith(job))
    assert row.split()[1] == str(len(files)) and row.rstrip().endswith("yes")


def test_exit_codes_usage_and_partial_failure(service: str, tmp_path: Path) -> None:
    job = "cli-" + secrets.token_hex(4)
    (tmp_path / "one.txt").write_bytes(b"one\n")
    assert cli(service, "push", str(tmp_path / "one.txt")).returncode == 2  # --job missing
    assert cli(service, "get").returncode == 2
    assert cli(service, "push", str(tmp_path / "nope"), "--job", job).returncode == 2
    no_token = subprocess.run(
        [sys.executable, "-m", "fleet_artifacts", "ls", "--job", job, "--url", service],
        env=clean_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert no_token.returncode == 2 and "FLEET_ARTIFACTS_TOKEN" in no_token.stderr

    pushed = cli(service, "push", str(tmp_path / "one.txt"), "--job", job, "--json")
    good = json.loads(pushed.stdout)[0]["id"]
    partial = cli(service, "get", good, "f" * 32, "-o", str(tmp_path / "dl"))
    assert partial.returncode == 1
    assert (tmp_path / "dl" / "one.txt").read_bytes() == b"one\n"  # the good one is still done
    assert "Not Found" in partial.stdout + partial.stderr and "Traceback" not in partial.stderr
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == ["one.txt"]  # no partial file
    assert cli(service, "rm", "f" * 32).returncode == 1


def test_a_server_killed_mid_push_is_exit_1_with_a_clear_message(tmp_path: Path) -> None:
    src = tmp_path / "many"
    src.mkdir()
    for n in range(40):
        (src / f"f{n:02}.bin").write_bytes(secrets.token_bytes(128 * KiB))
    with serve_process(serve_env(tmp_path / "data")) as (url, proc):
        push = subprocess.Popen(
            [sys.executable, "-m", "fleet_artifacts", "push", str(src), "--job", "doomed",
             "--concurrency", "1", "--retries", "1"],
            env=cli_env(url), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert push.stdout is not None
        uploaded = 0
        for line in push.stdout:
            uploaded += line.startswith("uploaded")
            if uploaded == 3:
                proc.kill()  # the service dies with uploads still to do
                proc.wait()
                break
        out, err = push.communicate(timeout=60)
    assert push.returncode == 1, (out, err)
    assert "Traceback" not in err
    assert "cannot reach" in err and "not attempted" in err
