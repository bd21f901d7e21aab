"""The event feed under load, across two replicas, one of which restarts: every creation exactly once.

Three producers upload 200 artifacts (through both replicas, retrying with an Idempotency-Key when
a replica is down) while a consumer tails the feed from the start through the other replica; on
all three variants (on SQLite both replicas share the database file, as replicas on one volume do).
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict

import httpx

from fleet_artifacts.app import create_app
from fleet_artifacts.settings import Settings
from tests.conftest import TOKEN_A
from tests.servers import ThreadedServer

PRODUCERS = 3
ARTIFACTS = 200


def _upload(urls: list[str], job: str, n: int) -> str:
    """Upload artifact ``n`` of ``job`` through the replicas in turn until one answers; its id."""
    key = f"{job}-{n}"
    for attempt in range(200):
        url = urls[(n + attempt) % len(urls)]
        try:
            response = httpx.post(
                f"{url}/fleet/jobs/{job}/artifacts",
                params={"kind": "log", "fileName": f"{n}.log"},
                content=f"artifact {n}\n".encode(),
                headers={
                    "Authorization": f"Bearer {TOKEN_A}",
                    "Content-Type": "text/plain",
                    "Idempotency-Key": key,
                },
                timeout=30,
            )
        except httpx.TransportError:
            time.sleep(0.05)  # that replica is restarting: the next one
            continue
        if response.status_code == 503:
            time.sleep(0.05)
            continue
        assert response.status_code in (200, 201), response.text
        artifact_id: str = response.json()["id"]
        return artifact_id
    raise AssertionError(f"artifact {key} could not be uploaded")


def test_a_tailing_consumer_gets_every_creation_once_in_job_order(settings: Settings, job_id: str) -> None:
    replicas = [ThreadedServer(create_app(settings)).start(), ThreadedServer(create_app(settings)).start()]
    urls = [replica.url for replica in replicas]
    jobs = [f"{job_id}-{p}" for p in range(PRODUCERS)]
    made: dict[str, list[str]] = defaultdict(list)  # per job, in acknowledgement order
    errors: list[BaseException] = []

    def produce(p: int) -> None:
        try:
            for n in range(p, ARTIFACTS, PRODUCERS):
                made[jobs[p]].append(_upload([urls[1], urls[0]], jobs[p], n))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    seen: list[dict[str, object]] = []
    done = threading.Event()

    def consume() -> None:
        since: str | None = None
        with httpx.Client(base_url=urls[0], headers={"Authorization": f"Bearer {TOKEN_A}"}, timeout=60) as c:
            while not done.is_set() or since is None:
                params: dict[str, str | int] = {"wait": 1, "limit": 50}
                if since is not None:
                    params["since"] = since
                page = c.get("/fleet/events", params=params).json()
                seen.extend(
                    e for e in page["items"] if e["jobId"] in jobs and e["type"] == "artifact.created"
                )
                since = page["next"]
                if done.is_set() and not page["items"]:
                    return

    producers = [threading.Thread(target=produce, args=(p,)) for p in range(PRODUCERS)]
    consumer = threading.Thread(target=consume)
    try:
        consumer.start()
        for thread in producers:
            thread.start()
        while sum(len(ids) for ids in made.values()) < ARTIFACTS // 3 and not errors:
            time.sleep(0.05)
        replicas[1].stop()  # a replica goes away mid-run and comes back on another port
        replicas[1] = ThreadedServer(create_app(settings)).start()
        urls[1] = replicas[1].url
        for thread in producers:
            thread.join(timeout=300)
        assert not errors, errors
        done.set()
        consumer.join(timeout=120)
        assert not consumer.is_alive()
    finally:
        done.set()
        for replica in replicas:
            replica.stop()

    assert sum(len(ids) for ids in made.values()) == ARTIFACTS
    ids = [str(e["artifactId"]) for e in seen]
    assert len(ids) == len(set(ids)) == ARTIFACTS  # every creation, once
    for job in jobs:
        in_feed = [str(e["artifactId"]) for e in seen if e["jobId"] == job]
        assert in_feed == made[job]  # in the order the job's uploads were acknowledged
