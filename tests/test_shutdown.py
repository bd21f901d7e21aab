"""SIGTERM on a real `fleet-artifacts serve` process.

Uploads in flight finish within the grace, or are cancelled past it without leaving a pointer
or a blob behind.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.conftest import TOKEN_A
from tests.helpers import clean_env
from tests.servers import serve_process

AUTH = {"Authorization": f"Bearer {TOKEN_A}"}
CHUNK = 256 * 1024


def env(data_dir: Path, grace: int) -> dict[str, str]:
    return clean_env() | {
        "FLEET_ARTIFACTS_TOKENS": f"{TOKEN_A}:prod-a",
        "FLEET_ARTIFACTS_DATA_DIR": str(data_dir),
        "FLEET_ARTIFACTS_SWEEP_INTERVAL_SECONDS": "0",
        "FLEET_ARTIFACTS_SHUTDOWN_GRACE_SECONDS": str(grace),
    }


def slow_body(
    started: threading.Event, chunks: int, pause: float, hurry: threading.Event | None = None
) -> Iterator[bytes]:
    """``chunks`` chunks of CHUNK bytes, ``pause`` seconds apart; ``started`` is set after the first.

    ``hurry`` set ends a pause at once: the test is done waiting for the server.
    """
    hurry = hurry or threading.Event()
    for n in range(chunks):
        yield bytes([n % 256]) * CHUNK
        started.set()
        hurry.wait(pause)


def upload_in_thread(url: str, body: Iterator[bytes], outcome: list[object]) -> threading.Thread:
    def run() -> None:
        try:
            with httpx.Client(base_url=url, headers=AUTH, timeout=30) as c:
                outcome.append(
                    c.post(
                        "/fleet/jobs/j-term/artifacts",
                        params={"kind": "log", "fileName": "a.log"},
                        content=body,
                    )
                )
        except httpx.HTTPError as exc:  # the server went away mid-request
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def listed(data_dir: Path) -> list[str]:
    """The job's artifacts, as a fresh server on the same data directory sees them."""
    with serve_process(env(data_dir, 30)) as (url, _):
        page = httpx.get(f"{url}/fleet/jobs/j-term/artifacts", headers=AUTH).json()
    return [item["fileName"] for item in page["items"]]


def test_an_upload_in_flight_finishes_within_the_grace(tmp_path: Path) -> None:
    data = tmp_path / "data"
    outcome: list[object] = []
    started = threading.Event()
    with serve_process(env(data, 30)) as (url, proc):
        thread = upload_in_thread(url, slow_body(started, 6, 0.3), outcome)
        assert started.wait(10)
        proc.send_signal(signal.SIGTERM)
        thread.join(30)
        assert proc.wait(30) in (0, -signal.SIGTERM)
    [answer] = outcome
    assert isinstance(answer, httpx.Response) and answer.status_code == 201, answer
    assert answer.json()["sizeBytes"] == 6 * CHUNK
    assert listed(data) == ["a.log"]


def test_past_the_grace_an_upload_is_cancelled_and_leaves_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    outcome: list[object] = []
    started, hurry = threading.Event(), threading.Event()
    with serve_process(env(data, 1)) as (url, proc):
        thread = upload_in_thread(url, slow_body(started, 3, 8.0, hurry), outcome)
        assert started.wait(10)
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        assert time.monotonic() - signalled < 10  # the grace (1 s) and the shutdown, not the upload
        hurry.set()  # the server is gone: the client's next send fails now, not 8 s from now
        thread.join(30)
    [answer] = outcome
    assert not (isinstance(answer, httpx.Response) and answer.status_code < 300), answer
    assert listed(data) == []
    blobs = data / "blobs"
    left = [p for p in blobs.rglob("*") if p.is_file()] if blobs.exists() else []
    assert left == [], left  # no blob, no temp file, no sidecar
