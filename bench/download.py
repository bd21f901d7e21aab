"""Server memory while downloading through the proxy: is it flat regardless of size?

Starts `fleet-artifacts serve` (local backend, and Azure on Azurite when Azurite is
installed in .tools/), uploads a small and a large artifact, downloads each through
`GET .../content` while sampling the server's RSS, and prints the figures and ratios
measured in this one run.

    .venv/bin/python bench/download.py [--small-mib 16] [--large-mib 256]
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.servers import Azurite, serve_process

TOKEN = "bench-token-0123456789abcdef"
MiB = 1024 * 1024


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
    rows = []
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with serve_process(env) as (base, proc), httpx.Client(base_url=base, headers=auth, timeout=600) as client:
        for size in sizes:
            created = client.post(
                "/fleet/jobs/bench/artifacts",
                params={"kind": "build", "fileName": "b.bin"},
                content=payload(size),
                headers={"Content-Type": "application/octet-stream"},
            )
            created.raise_for_status()
            before = rss_mib(proc.pid)
            started = time.perf_counter()
            received = 0
            with (
                PeakSampler(proc.pid) as sampler,
                client.stream("GET", f"/fleet/artifacts/{created.json()['id']}/content") as r,
            ):
                for chunk in r.iter_raw(1024 * 1024):
                    received += len(chunk)
            assert received == size, (received, size)
            elapsed = time.perf_counter() - started
            rows.append((size, before, sampler.peak, size / MiB / elapsed))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small-mib", type=int, default=16)
    parser.add_argument("--large-mib", type=int, default=256)
    args = parser.parse_args()
    sizes = [args.small_mib * MiB, args.large_mib * MiB]
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_ARTIFACTS_")}
    base_env |= {"FLEET_ARTIFACTS_TOKENS": f"{TOKEN}:bench", "FLEET_ARTIFACTS_LOG_LEVEL": "WARNING"}
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
            print(f"(azure backend skipped: {exc})")
        try:
            print(
                f"{'backend':8} {'size MiB':>9} {'RSS before':>11} {'RSS peak':>9} {'growth':>7} {'MiB/s':>7}"
            )
            for name, env in backends:
                rows = measure(env, sizes)
                for size, before, peak, speed in rows:
                    growth = peak - before
                    print(
                        f"{name:8} {size // MiB:9d} {before:10.1f}M {peak:8.1f}M {growth:6.1f}M {speed:7.1f}"
                    )
                (_, b_small, p_small, _), (_, b_large, p_large, _) = rows
                growth_small, growth_large = p_small - b_small, p_large - b_large
                ratio = p_large / p_small
                print(
                    f"{name:8} size ratio {sizes[1] / sizes[0]:.0f}x -> peak RSS ratio {ratio:.3f}x, "
                    f"growth {growth_large:.1f} MiB vs {growth_small:.1f} MiB"
                )
        finally:
            if azurite is not None:
                azurite.stop()


if __name__ == "__main__":
    main()
