"""Server memory while streaming a job's archive.zip: flat from a 16 MiB job to a 1 GiB one?

Starts `fleet-artifacts serve` (local backend, SQLite) from this checkout, uploads a 16 MiB job
(4 x 4 MiB) and a 1 GiB job (4 x 256 MiB) of binary artifacts (stored in the zip), and a
64 MiB job of text logs (deflated). Downloads each job's `GET .../archive.zip` while sampling
the server's RSS, then each of its artifacts through `GET .../content`, and prints the RSS
growth of each archive, the difference between the two binary jobs (the goal: within 64 MiB),
and the archive's throughput against the plain downloads of the same blobs.

    .venv/bin/python bench/zip_memory.py [--small-mib 16] [--large-mib 1024] [--text-mib 64]
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.download import TOKEN, MiB, PeakSampler, rss_mib
from tests.servers import REPO, serve_process

GOAL_MIB = 64  # the 1 GiB archive's RSS growth may exceed the 16 MiB one's by at most this much
FILES = 4


def binary(size: int) -> Iterator[bytes]:
    """``size`` random bytes (a fresh 1 MiB block repeated: incompressible to a deflate window)."""
    block = secrets.token_bytes(MiB)
    for _ in range(size // MiB):
        yield block


def text(size: int) -> Iterator[bytes]:
    """``size`` bytes of log lines, which deflate well."""
    lines = b"".join(
        f"{i:08d} INFO worker-{i % 7} step {i % 97} ok in {i % 1000} ms\n".encode() for i in range(20000)
    )
    for _ in range(size // MiB):
        yield (lines * (MiB // len(lines) + 1))[:MiB]


class Job:
    """One job of the run: its artifacts, and what downloading them measured."""

    def __init__(self, name: str, total: int, content_type: str) -> None:
        """A job of ``FILES`` artifacts of ``total`` bytes in all."""
        self.name, self.total, self.content_type = name, total, content_type
        self.ids: list[str] = []
        self.before = self.peak = self.zip_speed = self.content_speed = 0.0
        self.zip_bytes = 0

    def upload(self, client: httpx.Client) -> None:
        """Upload the job's artifacts."""
        size = self.total // FILES
        for i in range(FILES):
            body = text(size) if self.content_type.startswith("text/") else binary(size)
            created = client.post(
                f"/fleet/jobs/{self.name}/artifacts",
                params={
                    "kind": "build",
                    "fileName": f"part-{i}.{'log' if self.content_type.startswith('text/') else 'bin'}",
                },
                content=body,
                headers={"Content-Type": self.content_type},
            )
            created.raise_for_status()
            self.ids.append(created.json()["id"])

    def download(self, client: httpx.Client, pid: int) -> None:
        """Stream the archive (sampling the server's RSS), then each artifact's content."""
        self.before = rss_mib(pid)
        started = time.perf_counter()
        with PeakSampler(pid) as sampler, client.stream("GET", f"/fleet/jobs/{self.name}/archive.zip") as r:
            r.raise_for_status()
            for chunk in r.iter_raw(MiB):
                self.zip_bytes += len(chunk)
        self.zip_speed = self.total / MiB / (time.perf_counter() - started)
        self.peak = sampler.peak
        started = time.perf_counter()
        received = 0
        for artifact_id in self.ids:
            with client.stream("GET", f"/fleet/jobs/{self.name}/artifacts/{artifact_id}/content") as r:
                r.raise_for_status()
                for chunk in r.iter_raw(MiB):
                    received += len(chunk)
        assert received == self.total, (received, self.total)
        self.content_speed = self.total / MiB / (time.perf_counter() - started)


def run(env: dict[str, str], jobs: list[Job]) -> None:
    """Serve, upload every job, warm up on the first, then measure each."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with serve_process(env) as (base, proc), httpx.Client(base_url=base, headers=auth, timeout=600) as client:
        for job in jobs:
            job.upload(client)
        # Warm-up: the writer's threads and zlib are set up before anything is measured.
        client.get(f"/fleet/jobs/{jobs[0].name}/archive.zip").raise_for_status()
        for job in jobs:
            job.download(client, proc.pid)


def main() -> None:
    """Run the benchmark once and print its figures."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--small-mib", type=int, default=16)
    parser.add_argument("--large-mib", type=int, default=1024)
    parser.add_argument("--text-mib", type=int, default=64)
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_ARTIFACTS_")}
    env |= {
        "FLEET_ARTIFACTS_TOKENS": f"{TOKEN}:bench",
        "FLEET_ARTIFACTS_LOG_LEVEL": "WARNING",
        "FLEET_ARTIFACTS_SWEEP_INTERVAL_SECONDS": "0",
        "PYTHONPATH": str(REPO),  # this checkout's code, whatever is installed
    }
    small = Job("small", args.small_mib * MiB, "application/octet-stream")
    large = Job("large", args.large_mib * MiB, "application/octet-stream")
    logs = Job("text", args.text_mib * MiB, "text/plain")
    with tempfile.TemporaryDirectory() as tmp:
        run(env | {"FLEET_ARTIFACTS_DATA_DIR": tmp}, [small, large, logs])
    print(
        f"{'job':6} {'MiB':>5} {'zip MiB':>8} {'RSS before':>11} {'RSS peak':>9} {'growth':>7} "
        f"{'zip MiB/s':>10} {'content MiB/s':>14} {'zip/content':>12}"
    )
    for job in (small, large, logs):
        print(
            f"{job.name:6} {job.total // MiB:5d} {job.zip_bytes / MiB:8.1f} {job.before:10.1f}M "
            f"{job.peak:8.1f}M {job.peak - job.before:6.1f}M {job.zip_speed:10.1f} "
            f"{job.content_speed:14.1f} {job.zip_speed / job.content_speed:11.2f}x"
        )
    difference = (large.peak - large.before) - (small.peak - small.before)
    verdict = "within" if difference <= GOAL_MIB else "OVER"
    print(
        f"size ratio {large.total / small.total:.0f}x -> RSS growth {large.peak - large.before:.1f} MiB "
        f"vs {small.peak - small.before:.1f} MiB: difference {difference:+.1f} MiB "
        f"({verdict} the {GOAL_MIB} MiB goal)"
    )


if __name__ == "__main__":
    main()
