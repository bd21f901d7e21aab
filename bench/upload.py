"""Upload speed through the service against the raw Azure SDK on one Azurite, and small uploads.

Large mode: one payload of ``--mib`` (512) MiB, uploaded ``--rounds`` (3) times by every
variant below, the variants interleaved in each round (their order rotates between rounds),
medians printed:

* the raw azure-storage-blob SDK on the same Azurite: sync ``BlobClient.upload_blob`` with
  ``max_concurrency=4`` and the aio ``BlobClient.upload_blob`` with the same concurrency (SDK
  defaults otherwise). The better of the two medians is the baseline (1.00x);
* a proxied raw ``POST /fleet/jobs/{job}/artifacts`` to ``fleet-artifacts serve`` (Azure backend,
  same Azurite), sent by httpx with the project's client transport (``client/transport.py``,
  bytes body) and by ``curl --data-binary @file``; with ``--stock`` also by a stock
  ``httpx.Client`` with a bytes body;
* a direct-to-blob upload (start, the aio SDK writing to ``uploadUrl``, finalize).

Each row shows MiB/s, the ratio to the baseline, and the CPU seconds the client, the service
and Azurite spent on it: a sender whose own CPU is close to the wall time is the bottleneck,
not the service. Then the service's peak RSS while it receives a 64 MiB and a ``--large-mib``
(1024) MiB proxied upload.

Small mode: ``--count`` (100) x 1 MiB distinct files uploaded one after another, per variant,
``--small-rounds`` (5) interleaved rounds after a warm-up: the service on the local backend (raw
body and multipart with ``DURABILITY=power``, the default; raw body with ``DURABILITY=process``,
no fsync), the service on the Azure backend (Azurite), and the raw sync SDK ``upload_blob`` of
each file to the same Azurite.
Prints ms per upload, the service's CPU per upload and ratios. After each round every variant
deletes what it uploaded (untimed; ``--keep-files`` keeps it): on this VM a write into fresh page
cache costs more than the service does, for every writer alike (see ``bench/peers.py``).

    .venv/bin/python bench/upload.py [--mode both|large|small] [--mib 512] [--large-mib 1024]
                                     [--rounds 3] [--count 100] [--small-rounds 5] [--keep-files]
                                     [--stock]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

import httpx
from azure.storage.blob import BlobServiceClient as SyncBlobServiceClient
from azure.storage.blob.aio import BlobClient, BlobServiceClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.download import PeakSampler, Sample, cpu_seconds, own_cpu, rss_mib
from fleet_artifacts.client.transport import BulkTransport
from tests.servers import Azurite, serve_process

TOKEN = "bench-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MiB = 1024 * 1024
BLOCK = secrets.token_bytes(MiB)
SDK_CONCURRENCY = 4
T = TypeVar("T")


def base_env(data_dir: Path) -> dict[str, str]:
    """The environment of a benchmarked ``fleet-artifacts serve``: one token, quiet logs, no sweeper."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_ARTIFACTS_")}
    return env | {
        "FLEET_ARTIFACTS_TOKENS": f"{TOKEN}:bench",
        "FLEET_ARTIFACTS_LOG_LEVEL": "WARNING",
        "FLEET_ARTIFACTS_DATA_DIR": str(data_dir),
        "FLEET_ARTIFACTS_SWEEP_INTERVAL_SECONDS": "0",
    }


def timed(action: Callable[[], object], server: int | None, azurite: int | None) -> Sample:
    """Run ``action`` once, measuring wall time and everybody's CPU."""
    cpu0, srv0, az0 = own_cpu(), cpu_seconds(server), cpu_seconds(azurite)
    started = time.perf_counter()
    action()
    seconds = time.perf_counter() - started
    return Sample(seconds, own_cpu() - cpu0, cpu_seconds(server) - srv0, cpu_seconds(azurite) - az0)


def median_of(samples: list[Sample], field: str) -> float:
    """The median of one field over samples."""
    return statistics.median(float(getattr(s, field)) for s in samples)


def payload(size: int) -> Iterator[bytes]:
    """``size`` bytes (a whole number of MiB) as 1 MiB chunks."""
    for _ in range(size // MiB):
        yield BLOCK


def bulk_client(base: str) -> httpx.Client:
    """An httpx client to the service with the project's bulk transport (no per-send copies)."""
    return httpx.Client(base_url=base, transport=BulkTransport(), headers=AUTH, timeout=900)


def proxied(
    client: httpx.Client, body: bytes | Iterator[bytes], size: int, name: str = "b.bin", job: str = "bench"
) -> str:
    """One raw-body upload through the service; the new artifact's id."""
    r = client.post(
        f"/fleet/jobs/{job}/artifacts",
        params={"kind": "build", "fileName": name},
        content=body,
        headers={"Content-Type": "application/octet-stream"},
    )
    r.raise_for_status()
    assert r.json()["sizeBytes"] == size
    return str(r.json()["id"])


def multipart(client: httpx.Client, data: bytes, name: str, job: str = "bench") -> str:
    """One multipart upload through the service (metadata fields first, then the file part)."""
    r = client.post(
        f"/fleet/jobs/{job}/artifacts",
        data={"kind": "build"},
        files={"file": (name, data, "application/octet-stream")},
    )
    r.raise_for_status()
    return str(r.json()["id"])


Action = tuple[Callable[[], object], Callable[[], object]]  # what is timed, what cleans up after it


def sdk_sync(connection_string: str, data: bytes) -> Action:
    """Sync ``upload_blob(max_concurrency=4)`` of ``data`` to a fresh blob (client made untimed)."""
    service = SyncBlobServiceClient.from_connection_string(connection_string)
    blob = service.get_blob_client("bench-raw", f"sync-{secrets.token_hex(4)}")

    return lambda: blob.upload_blob(data, max_concurrency=SDK_CONCURRENCY, overwrite=True), service.close


def sdk_aio(connection_string: str, data: bytes) -> Action:
    """Aio ``upload_blob(max_concurrency=4)`` of ``data`` to a fresh blob (client made in an untimed step)."""
    loop = asyncio.new_event_loop()

    async def make() -> BlobServiceClient:
        return BlobServiceClient.from_connection_string(connection_string)

    service = loop.run_until_complete(make())
    blob = service.get_blob_client("bench-raw", f"aio-{secrets.token_hex(4)}")

    def upload() -> None:
        loop.run_until_complete(blob.upload_blob(data, max_concurrency=SDK_CONCURRENCY, overwrite=True))

    def cleanup() -> None:
        loop.run_until_complete(service.close())
        loop.close()

    return upload, cleanup


async def direct(client: httpx.Client, data: bytes) -> str:
    """Start, write with the aio SDK straight to Blob (4 blocks in flight), finalize; the artifact's id."""
    digest = hashlib.sha256(data).hexdigest()  # a worker knows its file's digest
    ticket = client.post("/fleet/jobs/bench/artifacts/uploads", json={"kind": "build", "fileName": "d.bin"})
    ticket.raise_for_status()
    async with BlobClient.from_blob_url(ticket.json()["uploadUrl"]) as blob:
        await blob.upload_blob(data, overwrite=True, max_concurrency=SDK_CONCURRENCY)
    done = client.post(
        f"/fleet/jobs/bench/artifacts/{ticket.json()['id']}/finalize",
        json={"sizeBytes": len(data), "sha256": digest},
    )
    done.raise_for_status()
    return str(ticket.json()["id"])


def rotated(items: list[T], turn: int) -> list[T]:
    """``items`` started at ``turn``: each variant takes every position in turn."""
    turn %= len(items)
    return items[turn:] + items[:turn]


def run_large(args: argparse.Namespace, tmp: Path, azurite: Azurite) -> None:
    """Large mode: SDK sync/aio vs proxied (two or three senders) vs direct, then RSS."""
    size = args.mib * MiB
    data = b"".join(payload(size))
    source = tmp / "payload.bin"
    source.write_bytes(data)
    conn = azurite.connection_string
    env = base_env(tmp / "large-data") | {"FLEET_ARTIFACTS_AZURE_STORAGE_CONNECTION_STRING": conn}
    with SyncBlobServiceClient.from_connection_string(conn) as service:
        if not service.get_container_client("bench-raw").exists():
            service.create_container("bench-raw")
    with serve_process(env) as (base, proc), bulk_client(base) as client:
        stock = httpx.Client(base_url=base, headers=AUTH, timeout=900)
        url = f"{base}/fleet/jobs/bench/artifacts?kind=build&fileName=c.bin"

        def drop(artifact_id: str) -> None:  # the RSS uploads are not kept
            client.delete(f"/fleet/artifacts/{artifact_id}").raise_for_status()

        def service_upload(send: Callable[[], str]) -> Action:
            return send, lambda: None

        def curl() -> str:
            out = subprocess.run(
                ["curl", "-fsS", "-X", "POST", url, "-H", f"Authorization: Bearer {TOKEN}",
                 "-H", "Content-Type: application/octet-stream", "--data-binary", f"@{source}"],
                check=True, capture_output=True,
            )  # fmt: skip
            return str(json.loads(out.stdout)["id"])

        variants: dict[str, Callable[[], Action]] = {
            "SDK sync upload_blob(max_concurrency=4)": lambda: sdk_sync(conn, data),
            "SDK aio upload_blob(max_concurrency=4)": lambda: sdk_aio(conn, data),
            "proxied, httpx + client transport (bytes)": lambda: service_upload(
                lambda: proxied(client, data, size)
            ),
            "direct to blob (start + aio SDK + finalize)": lambda: service_upload(
                lambda: asyncio.run(direct(client, data))
            ),
        }
        if shutil.which("curl"):
            variants["proxied, curl --data-binary @file"] = lambda: service_upload(curl)
        if args.stock:
            variants["proxied, stock httpx (bytes)"] = lambda: service_upload(
                lambda: proxied(stock, data, size)
            )
        results: dict[str, list[Sample]] = {name: [] for name in variants}
        servers = {name: None if name.startswith("SDK") else proc.pid for name in variants}
        az_pid = azurite.proc.pid if azurite.proc else None
        for turn in range(args.rounds):  # interleaved: drift in machine load hits every variant alike
            for name in rotated(list(variants), turn):
                action, cleanup = variants[name]()  # clients made outside the timing
                time.sleep(1)  # let Azurite and the disk settle after the previous variant
                results[name].append(timed(action, servers[name], az_pid))
                cleanup()
        speed = {name: size / MiB / median_of(samples, "seconds") for name, samples in results.items()}
        baseline = max(speed[n] for n in speed if n.startswith("SDK"))
        print(f"upload of {args.mib} MiB to one Azurite, median of {args.rounds} interleaved rounds")
        print(f"  baseline: the better raw SDK client, {baseline:.1f} MiB/s (SDK defaults: 4 MiB blocks)")
        head = f"{'MiB/s':>7} {'ratio':>6}   CPU s: {'client':>6} {'service':>7} {'azurite':>7}"
        print(f"  {'variant':46} {head}")
        for name, samples in results.items():
            served = f"{median_of(samples, 'server_cpu'):7.2f}" if servers[name] else f"{'-':>7}"
            cpu = f"{median_of(samples, 'client_cpu'):6.2f} {served} {median_of(samples, 'azurite_cpu'):7.2f}"
            print(f"  {name:46} {speed[name]:7.1f} {speed[name] / baseline:5.2f}x          {cpu}")
        print(f"  (wall time of one upload: {size / MiB / baseline:.2f} s at the baseline)")
        stock.close()
        if args.large_mib:
            peaks = []
            for mib in (64, args.large_mib):
                before = rss_mib(proc.pid)
                with PeakSampler(proc.pid) as sampler:
                    drop(proxied(client, payload(mib * MiB), mib * MiB))
                peaks.append((mib, before, sampler.peak))
            print("service RSS while receiving a proxied upload (chunked 1 MiB writes):")
            for mib, before, peak in peaks:
                print(f"  {mib:5d} MiB: before {before:6.1f} MiB, peak {peak:6.1f} MiB")
            (_, _, p64), (_, _, plarge) = peaks
            print(f"  RSS({args.large_mib} MiB) - RSS(64 MiB) = {plarge - p64:.1f} MiB (target <= 64 MiB)")


def drop_job(client: httpx.Client, job: str) -> None:
    """Delete a job's artifacts at once (pointers and blobs)."""
    client.delete(f"/fleet/jobs/{job}/artifacts", params={"purge": "true"}).raise_for_status()


@dataclass
class SmallVariant:
    """How one small-mode variant uploads file ``i`` into batch ``job``, and drops a batch."""

    upload: Callable[[str, int, bytes], object]
    drop: Callable[[str], object]
    pid: int | None  # the service's process, whose CPU is counted


def run_small(args: argparse.Namespace, tmp: Path, azurite: Azurite | None) -> None:
    """Small mode: ``count`` x 1 MiB sequential uploads per variant, interleaved rounds."""
    files = [secrets.token_bytes(MiB) for _ in range(args.count)]
    local_env = base_env(tmp / "small-local")
    process_env = base_env(tmp / "small-process") | {"FLEET_ARTIFACTS_DURABILITY": "process"}
    with (
        serve_process(local_env) as (local_base, local_proc),
        serve_process(process_env) as (process_base, process_proc),
        bulk_client(local_base) as local,
        bulk_client(process_base) as process,
        contextlib.ExitStack() as stack,
    ):
        variants = {
            "local, raw POST": SmallVariant(
                lambda job, i, f: proxied(local, f, MiB, f"f{i}.bin", job),
                partial(drop_job, local),
                local_proc.pid,
            ),
            "local, multipart POST": SmallVariant(
                lambda job, i, f: multipart(local, f, f"f{i}.bin", job),
                partial(drop_job, local),
                local_proc.pid,
            ),
            "local, raw POST, DURABILITY=process": SmallVariant(
                lambda job, i, f: proxied(process, f, MiB, f"f{i}.bin", job),
                partial(drop_job, process),
                process_proc.pid,
            ),
        }
        if azurite is not None:
            conn = azurite.connection_string
            azure_env = base_env(tmp / "small-azure") | {
                "FLEET_ARTIFACTS_AZURE_STORAGE_CONNECTION_STRING": conn
            }
            azure_base, azure_proc = stack.enter_context(serve_process(azure_env))
            azure = stack.enter_context(bulk_client(azure_base))
            sdk = stack.enter_context(SyncBlobServiceClient.from_connection_string(conn))
            container = sdk.get_container_client("bench-small")
            if not container.exists():
                container.create_container()

            def sdk_drop(job: str) -> None:
                for blob in list(container.list_blobs(name_starts_with=f"{job}/")):
                    container.delete_blob(blob.name)

            variants["azure (Azurite), raw POST"] = SmallVariant(
                lambda job, i, f: proxied(azure, f, MiB, f"f{i}.bin", job),
                partial(drop_job, azure),
                azure_proc.pid,
            )
            variants["SDK sync upload_blob, same Azurite"] = SmallVariant(
                lambda job, i, f: container.upload_blob(f"{job}/f{i}", f, overwrite=True), sdk_drop, None
            )
        az_pid = azurite.proc.pid if azurite is not None and azurite.proc is not None else None

        def batch(variant: SmallVariant, job: str, count: int) -> Callable[[], None]:
            def run() -> None:
                for i in range(count):
                    variant.upload(job, i, files[i % len(files)])

            return run

        for variant in variants.values():  # warm-up: imports, first pages, connections
            batch(variant, "small-warm", 20)()
            variant.drop("small-warm")
        results: dict[str, list[Sample]] = {name: [] for name in variants}
        for turn in range(args.small_rounds):
            for name in rotated(list(variants), turn):
                variant = variants[name]
                results[name].append(timed(batch(variant, f"small-{turn}", args.count), variant.pid, az_pid))
                if not args.keep_files:
                    variant.drop(f"small-{turn}")
        per = {name: 1000 * median_of(samples, "seconds") / args.count for name, samples in results.items()}
        print(
            f"{args.count} x 1 MiB uploaded one after another, median of {args.small_rounds} interleaved"
            " rounds (client: httpx + client transport, bytes body)"
        )
        print("  local backend, DURABILITY=power (default): fsyncs blob data, sidecar and directory per")
        print("  upload; SQLite WAL synchronous=FULL. DURABILITY=process: none of those fsyncs (NORMAL).")
        if not args.keep_files:
            print("  each round's uploads are deleted after it (untimed): writes reuse freed page cache")
        head = f"{'ms/upload':>9} {'MiB/s':>7}  {'service CPU ms/upload':>21}  {'Azurite':>7}"
        print(f"  {'variant':40} {head}")
        for name, samples in results.items():
            server = 1000 * median_of(samples, "server_cpu") / args.count
            az = 1000 * median_of(samples, "azurite_cpu") / args.count
            shown = f"{server:21.2f}" if variants[name].pid else f"{'-':>21}"
            print(f"  {name:40} {per[name]:9.2f} {1000 / per[name]:7.1f}  {shown}  {az:7.2f}")
        ref = per["local, raw POST"]
        process_ms = per["local, raw POST, DURABILITY=process"]
        print(f"  DURABILITY=process / power (local, raw): {process_ms / ref:.2f}x time")
        print(f"  multipart / raw (local): {per['local, multipart POST'] / ref:.2f}x time")
        if azurite is not None:
            sdk_ms = per["SDK sync upload_blob, same Azurite"]
            print(f"  azure service / raw SDK: {per['azure (Azurite), raw POST'] / sdk_ms:.2f}x time")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mode", choices=("both", "large", "small"), default="both")
    parser.add_argument("--mib", type=int, default=512, help="size of the large uploads")
    parser.add_argument("--large-mib", type=int, default=1024, help="size of the RSS upload (0: skip)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--count", type=int, default=100, help="files of 1 MiB per small-mode round")
    parser.add_argument("--small-rounds", type=int, default=5, help="rounds of the small mode")
    parser.add_argument("--keep-files", action="store_true", help="small mode: keep every round's uploads")
    parser.add_argument("--stock", action="store_true", help="also send with a stock httpx client (slow)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        azurite: Azurite | None = None
        try:
            try:
                azurite = Azurite(tmp / "azurite").start()
            except RuntimeError as exc:
                if args.mode != "small":
                    raise
                print(f"(Azure variants skipped: {exc})")
            if args.mode in ("both", "small"):
                run_small(args, tmp, azurite)
            if args.mode in ("both", "large"):
                assert azurite is not None
                run_large(args, tmp, azurite)
        finally:
            if azurite is not None:
                azurite.stop()


if __name__ == "__main__":
    main()
