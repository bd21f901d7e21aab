"""Upload throughput and server memory, measured against one Azurite in one run.

Prints MiB/s for the raw azure-storage-blob SDK (`upload_blob(max_concurrency=4)`,
the ceiling) and for a proxied upload through `fleet-artifacts serve`, the ratio of
each to the raw SDK, a direct-to-blob upload (start, the SDK writing to the returned
URL, finalize with the service verifying the digest when the blob is at most
VERIFY_MAX_BYTES), and the server's peak RSS while it receives a 64 MiB and a
1 GiB proxied upload.

    .venv/bin/python bench/upload.py [--mib 256] [--large-mib 1024] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from azure.storage.blob.aio import BlobClient, BlobServiceClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.download import PeakSampler, rss_mib
from tests.servers import Azurite, serve_process

TOKEN = "bench-token-0123456789abcdef"
MiB = 1024 * 1024
BLOCK = secrets.token_bytes(MiB)


def payload(size: int) -> Iterator[bytes]:
    for _ in range(size // MiB):
        yield BLOCK


async def raw_sdk(connection_string: str, size: int) -> float:
    async with BlobServiceClient.from_connection_string(connection_string) as svc:
        container = svc.get_container_client("bench-raw")
        if not await container.exists():
            await container.create_container()
        data = b"".join(payload(size))
        started = time.perf_counter()
        await container.upload_blob(f"raw-{secrets.token_hex(4)}", data, max_concurrency=4, overwrite=True)
        return size / MiB / (time.perf_counter() - started)


async def direct(client: httpx.Client, size: int) -> float:
    """Start, write with the SDK straight to Blob (4 blocks in flight), finalize: all timed."""
    data = b"".join(payload(size))
    digest = hashlib.sha256(data).hexdigest()  # a worker knows its file's digest; not timed
    started = time.perf_counter()
    ticket = client.post("/fleet/jobs/bench/artifacts/uploads", json={"kind": "build", "fileName": "d.bin"})
    ticket.raise_for_status()
    async with BlobClient.from_blob_url(ticket.json()["uploadUrl"]) as blob:
        await blob.upload_blob(data, overwrite=True, max_concurrency=4)
    done = client.post(
        f"/fleet/jobs/bench/artifacts/{ticket.json()['id']}/finalize",
        json={"sizeBytes": size, "sha256": digest},
    )
    done.raise_for_status()
    return size / MiB / (time.perf_counter() - started)


def proxied(client: httpx.Client, size: int) -> float:
    started = time.perf_counter()
    r = client.post(
        "/fleet/jobs/bench/artifacts",
        params={"kind": "build", "fileName": "b.bin"},
        content=payload(size),
        headers={"Content-Type": "application/octet-stream"},
    )
    r.raise_for_status()
    assert r.json()["sizeBytes"] == size
    return size / MiB / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=256, help="size of the throughput uploads")
    parser.add_argument("--large-mib", type=int, default=1024, help="size of the large RSS upload")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        azurite = Azurite(Path(tmp) / "azurite").start()
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_ARTIFACTS_")}
        env |= {
            "FLEET_ARTIFACTS_TOKENS": f"{TOKEN}:bench",
            "FLEET_ARTIFACTS_LOG_LEVEL": "WARNING",
            "FLEET_ARTIFACTS_DATA_DIR": f"{tmp}/data",
            "FLEET_ARTIFACTS_AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string,
        }
        size = args.mib * MiB
        raw, prox, dire = [], [], []
        auth = {"Authorization": f"Bearer {TOKEN}"}
        try:
            with (
                serve_process(env) as (base, proc),
                httpx.Client(base_url=base, timeout=900, headers=auth) as client,
            ):
                for _ in range(args.rounds):  # interleaved, so drift in machine load hits both alike
                    raw.append(asyncio.run(raw_sdk(azurite.connection_string, size)))
                    prox.append(proxied(client, size))
                    dire.append(asyncio.run(direct(client, size)))
                raw_s, prox_s, dire_s = (
                    statistics.median(raw),
                    statistics.median(prox),
                    statistics.median(dire),
                )
                print(f"upload of {args.mib} MiB, median of {args.rounds} rounds, same Azurite:")
                print(f"  raw SDK upload_blob(max_concurrency=4) {raw_s:8.1f} MiB/s   1.00x")
                print(f"  proxied through the service            {prox_s:8.1f} MiB/s   {prox_s / raw_s:.2f}x")
                print(f"  direct to blob (start+SDK+finalize)    {dire_s:8.1f} MiB/s   {dire_s / raw_s:.2f}x")
                peaks = []
                for mib in (64, args.large_mib):
                    before = rss_mib(proc.pid)
                    with PeakSampler(proc.pid) as sampler:
                        proxied(client, mib * MiB)
                    peaks.append((mib, before, sampler.peak))
                print("server RSS while receiving a proxied upload:")
                for mib, before, peak in peaks:
                    print(f"  {mib:5d} MiB: before {before:6.1f} MiB, peak {peak:6.1f} MiB")
                (_, _, p64), (_, _, plarge) = peaks
                print(
                    f"  RSS({args.large_mib} MiB) - RSS(64 MiB) = {plarge - p64:.1f} MiB (target <= 64 MiB)"
                )
        finally:
            azurite.stop()


if __name__ == "__main__":
    main()
