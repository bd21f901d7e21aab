"""Downloads through the proxy: is the server's memory flat with size, and how fast is Azure's?

Two parts, both in this one run (``--only rss`` or ``--only throughput`` runs one):

RSS: starts ``fleet-artifacts serve`` (local backend, and Azure on Azurite when Azurite is
installed in .tools/), uploads a ``--small-mib`` (16) and a ``--large-mib`` (256) MiB artifact,
then, from a fresh server process on the same data (so the uploads' buffers do not count),
downloads each through ``GET .../content`` while sampling the server's RSS, and prints the
figures and ratios. On Azure a download holds up to about five 8 MiB ranges at once
(``stores/azure_reads.py``), which a 16 MiB artifact never fills: ``--small-mib 256
--large-mib 1024`` shows whether the peak stays flat past that.

Throughput (Azure backend, one Azurite): one ``--throughput-mib`` (256) MiB artifact, read to
the end by every variant below, ``--rounds`` (5) rounds after one untimed warm-up round, the
variants interleaved in each round (their order rotates between rounds), medians printed:

* the service: ``GET /fleet/artifacts/{id}/content`` streamed by httpx with the project's client
  transport (``client/transport.py``: 1 MiB reads);
* the SDK's own ``BlobClient.download_blob().chunks()`` on the same blob from the same Azurite,
  sync and aio (SDK defaults: a 32 MiB first GET, then 4 MiB GETs one at a time). The better
  of the two medians is the baseline (1.00x); issue 14's target is service >= 0.9x of it;
* for scale: curl on a fresh SAS URL of the blob (one GET straight from Azurite), and curl on
  the service's ``/content`` (the same server path as the first row, a client that costs less).

Each row shows MiB/s, the ratio to the baseline and the CPU seconds of the client, the service
and Azurite; then the service/baseline ratio against the target, and the range of the ratio
over the rounds (the service against the better SDK client of the same round).

    .venv/bin/python bench/download.py [--small-mib 16] [--large-mib 256]
                                       [--throughput-mib 256] [--rounds 5] [--only rss|throughput]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from azure.storage.blob import BlobClient as SyncBlobClient
from azure.storage.blob import BlobServiceClient as SyncBlobServiceClient
from azure.storage.blob.aio import BlobClient, BlobServiceClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from fleet_artifacts.client.transport import BulkTransport
from tests.servers import Azurite, serve_process

TOKEN = "bench-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MiB = 1024 * 1024
TARGET = 0.9  # issue 14: /content on Azure >= 0.9x the SDK's own download_blob().chunks()
CONTAINER = "fleet-artifacts"  # the service's default BLOB_CONTAINER


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


class PeakSampler:
    """Samples a process's RSS every 20 ms until stopped; keeps the peak."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mib(self.pid))
            time.sleep(0.02)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mib(self.pid))


def payload(size: int) -> Iterator[bytes]:
    block = secrets.token_bytes(MiB)
    for _ in range(size // MiB):
        yield block


def measure(env: dict[str, str], sizes: list[int]) -> list[tuple[int, float, float, float]]:
    """Upload one artifact per size, then download each from a fresh server: (size, RSS before, peak, MiB/s).

    The uploads go through another server process on the same data: an upload buffers blocks
    (and glibc keeps what it freed), so a server that had received them would show the upload's
    peak, not the download's. A 1 MiB download first, unmeasured, pays for first-use costs.
    """
    rows = []
    with serve_process(env) as (base, _), httpx.Client(base_url=base, headers=AUTH, timeout=600) as client:
        ids = []
        for size in [MiB, *sizes]:
            created = client.post(
                "/fleet/jobs/bench/artifacts",
                params={"kind": "build", "fileName": "b.bin"},
                content=payload(size),
                headers={"Content-Type": "application/octet-stream"},
            )
            created.raise_for_status()
            ids.append(created.json()["id"])
    with serve_process(env) as (base, proc), httpx.Client(base_url=base, headers=AUTH, timeout=600) as client:
        for n, (artifact_id, size) in enumerate(zip(ids, [MiB, *sizes], strict=True)):
            before = rss_mib(proc.pid)
            started = time.perf_counter()
            received = 0
            with (
                PeakSampler(proc.pid) as sampler,
                client.stream("GET", f"/fleet/artifacts/{artifact_id}/content") as r,
            ):
                for chunk in r.iter_raw(1024 * 1024):
                    received += len(chunk)
            assert received == size, (received, size)
            elapsed = time.perf_counter() - started
            if n:
                rows.append((size, before, sampler.peak, size / MiB / elapsed))
    return rows


# bench/upload.py has the same two helpers; it imports this module, so they cannot come from it.
def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of one process so far, all its threads (0 for None)."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    """CPU seconds of this process and its waited-for children (curl)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


@dataclass
class Sample:
    """One timed run (a download here, an upload in bench/upload.py): wall seconds and the CPU
    seconds of client, service and Azurite."""

    seconds: float
    client_cpu: float
    server_cpu: float
    azurite_cpu: float


@dataclass
class Variant:
    """One way to read the artifact to the end.

    ``prepare`` runs untimed and returns what ``run`` reads (a URL, or ""); ``run`` returns the
    number of bytes it received.
    """

    name: str
    run: Callable[[str], int]
    via_service: bool
    prepare: Callable[[], str] = str


def timed(variant: Variant, size: int, server: int, azurite: int | None) -> Sample:
    """Run one download, checking its size; wall time and everybody's CPU."""
    prepared = variant.prepare()
    cpu0, srv0, az0 = own_cpu(), cpu_seconds(server), cpu_seconds(azurite)
    started = time.perf_counter()
    received = variant.run(prepared)
    seconds = time.perf_counter() - started
    assert received == size, (variant.name, received, size)
    return Sample(seconds, own_cpu() - cpu0, cpu_seconds(server) - srv0, cpu_seconds(azurite) - az0)


def variants_for(
    client: httpx.Client,
    base: str,
    artifact_id: str,
    sdk: tuple[SyncBlobClient, BlobClient],
    loop: asyncio.AbstractEventLoop,
) -> list[Variant]:
    """Every way of reading the artifact (``sdk``: sync and aio clients of its blob, ``loop``'s)."""
    sync_blob, aio_blob = sdk
    path = f"/fleet/artifacts/{artifact_id}/content"

    def service(_: str) -> int:
        received = 0
        with client.stream("GET", path) as r:
            r.raise_for_status()
            for chunk in r.iter_raw():
                received += len(chunk)
        return received

    def sdk_sync(_: str) -> int:
        return sum(len(chunk) for chunk in sync_blob.download_blob().chunks())

    async def aio_chunks() -> int:
        downloader = await aio_blob.download_blob()
        return sum([len(chunk) async for chunk in downloader.chunks()])

    def curl(url: str, *headers: str) -> int:
        out = subprocess.run(
            ["curl", "-fsS", "-o", "/dev/null", "-w", "%{size_download}", *headers, url],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        return int(out.stdout)

    def sas_url() -> str:  # a pointer fetch signs a fresh one (untimed)
        r = client.get(f"/fleet/artifacts/{artifact_id}")
        r.raise_for_status()
        return str(r.json()["downloadUrl"])

    found = [
        Variant("service /content, httpx + client transport", service, True),
        Variant("SDK sync download_blob().chunks()", sdk_sync, False),
        Variant("SDK aio download_blob().chunks()", lambda _: loop.run_until_complete(aio_chunks()), False),
    ]
    if shutil.which("curl"):
        found.append(Variant("curl on a fresh SAS URL (no service)", curl, False, sas_url))
        found.append(
            Variant(
                "service /content, curl",
                lambda _: curl(f"{base}{path}", "-H", f"Authorization: Bearer {TOKEN}"),
                True,
            )
        )
    return found


def rotated(items: list[Variant], turn: int) -> list[Variant]:
    """``items`` started at ``turn``: each variant takes every position in turn."""
    turn %= len(items)
    return items[turn:] + items[:turn]


def throughput(env: dict[str, str], azurite: Azurite, size: int, rounds: int) -> None:
    """Every variant reads one ``size``-byte artifact, ``rounds`` interleaved rounds; prints medians."""
    loop = asyncio.new_event_loop()

    async def aio_service() -> BlobServiceClient:
        return BlobServiceClient.from_connection_string(azurite.connection_string)

    with (
        serve_process(env) as (base, proc),
        httpx.Client(base_url=base, transport=BulkTransport(), headers=AUTH, timeout=600) as client,
        SyncBlobServiceClient.from_connection_string(azurite.connection_string) as sync_service,
        contextlib.closing(loop),
    ):
        aio = loop.run_until_complete(aio_service())  # SDK clients made once: their connections kept
        created = client.post(
            "/fleet/jobs/bench/artifacts",
            params={"kind": "build", "fileName": "t.bin"},
            content=payload(size),
            headers={"Content-Type": "application/octet-stream"},
        )
        created.raise_for_status()
        artifact_id, key = created.json()["id"], created.json()["blobKey"]
        blobs = (sync_service.get_blob_client(CONTAINER, key), aio.get_blob_client(CONTAINER, key))
        variants = variants_for(client, base, artifact_id, blobs, loop)
        az_pid = azurite.proc.pid if azurite.proc else None
        for variant in variants:  # warm-up: connections, imports, Azurite's file in page cache
            timed(variant, size, proc.pid, az_pid)
        results: dict[str, list[Sample]] = {v.name: [] for v in variants}
        for turn in range(rounds):  # interleaved: drift in machine load hits every variant alike
            for variant in rotated(variants, turn):
                time.sleep(0.5)  # let the previous variant's sockets and Azurite settle
                results[variant.name].append(timed(variant, size, proc.pid, az_pid))
        loop.run_until_complete(aio.close())

    def median(name: str, field: str) -> float:
        return statistics.median(float(getattr(s, field)) for s in results[name])

    speed = {name: size / MiB / median(name, "seconds") for name in results}
    sdk = [v.name for v in variants if v.name.startswith("SDK")]
    best = max(sdk, key=lambda name: speed[name])
    baseline, ours = speed[best], variants[0].name
    print(
        f"\n/content on the Azure backend (one Azurite): {size // MiB} MiB, median of {rounds}"
        " interleaved rounds after a warm-up"
    )
    print(f"  baseline: {best}, {baseline:.1f} MiB/s (SDK defaults: 32 MiB first GET, then 4 MiB)")
    head = f"{'MiB/s':>7} {'ratio':>6}   CPU s: {'client':>6} {'service':>7} {'azurite':>7}"
    print(f"  {'variant':48} {head}")
    for variant in variants:
        name = variant.name
        served = f"{median(name, 'server_cpu'):7.2f}" if variant.via_service else f"{'-':>7}"
        cpu = f"{median(name, 'client_cpu'):6.2f} {served} {median(name, 'azurite_cpu'):7.2f}"
        print(f"  {name:48} {speed[name]:7.1f} {speed[name] / baseline:5.2f}x          {cpu}")
    per_round = [
        results[ours][turn].seconds ** -1 / max(results[name][turn].seconds ** -1 for name in sdk)
        for turn in range(rounds)
    ]
    ratio = speed[ours] / baseline
    verdict = "met" if ratio >= TARGET else "NOT met"
    print(
        f"  service / best SDK: {ratio:.2f}x (target >= {TARGET}x: {verdict}); per round (vs the better"
        f" SDK client of that round) {min(per_round):.2f}x-{max(per_round):.2f}x"
    )
    spread = {
        name: (max(s.seconds for s in samples) / min(s.seconds for s in samples) - 1) * 100
        for name, samples in results.items()
    }
    shown = ", ".join(f"{v:.0f}%" for v in spread.values())
    print(f"  noise (rows above), slowest/fastest round - 1: {shown}")


def rss_part(backends: list[tuple[str, dict[str, str]]], sizes: list[int]) -> None:
    """Peak RSS of the server while it serves a small and a large download, per backend."""
    print(f"{'backend':8} {'size MiB':>9} {'RSS before':>11} {'RSS peak':>9} {'growth':>7} {'MiB/s':>7}")
    for name, env in backends:
        rows = measure(env, sizes)
        for size, before, peak, speed in rows:
            growth = peak - before
            print(f"{name:8} {size // MiB:9d} {before:10.1f}M {peak:8.1f}M {growth:6.1f}M {speed:7.1f}")
        (_, b_small, p_small, _), (_, b_large, p_large, _) = rows
        growth_small, growth_large = p_small - b_small, p_large - b_large
        ratio = p_large / p_small
        print(
            f"{name:8} size ratio {sizes[1] / sizes[0]:.0f}x -> peak RSS ratio {ratio:.3f}x, "
            f"growth {growth_large:.1f} MiB vs {growth_small:.1f} MiB"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--small-mib", type=int, default=16)
    parser.add_argument("--large-mib", type=int, default=256)
    parser.add_argument("--throughput-mib", type=int, default=256, help="size of the throughput artifact")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds of the throughput part")
    parser.add_argument("--only", choices=("rss", "throughput"), help="run one part")
    args = parser.parse_args()
    sizes = [args.small_mib * MiB, args.large_mib * MiB]
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_ARTIFACTS_")}
    base_env |= {
        "FLEET_ARTIFACTS_TOKENS": f"{TOKEN}:bench",
        "FLEET_ARTIFACTS_LOG_LEVEL": "WARNING",
        "FLEET_ARTIFACTS_SWEEP_INTERVAL_SECONDS": "0",
    }
    with tempfile.TemporaryDirectory() as tmp:
        backends: list[tuple[str, dict[str, str]]] = [
            ("local", base_env | {"FLEET_ARTIFACTS_DATA_DIR": f"{tmp}/local"}),
        ]
        azurite = None
        try:
            azurite = Azurite(Path(tmp) / "azurite").start()
            backends.append(
                (
                    "azure",
                    base_env
                    | {
                        "FLEET_ARTIFACTS_DATA_DIR": f"{tmp}/azure",
                        "FLEET_ARTIFACTS_AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string,
                    },
                )
            )
        except RuntimeError as exc:
            if args.only == "throughput":
                raise
            print(f"(azure backend skipped: {exc})")
        try:
            if args.only != "throughput":
                rss_part(backends, sizes)
            if args.only != "rss" and azurite is not None:
                env = backends[-1][1] | {"FLEET_ARTIFACTS_DATA_DIR": f"{tmp}/azure-throughput"}
                throughput(env, azurite, args.throughput_mib * MiB, args.rounds)
        finally:
            if azurite is not None:
                azurite.stop()


if __name__ == "__main__":
    main()
