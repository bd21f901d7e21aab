"""The Python client against curl on the same routes: a 512 MiB upload and download.

Starts `fleet-artifacts serve` (local backend), then, interleaved and best of N each:

* upload, proxied raw body `POST /fleet/jobs/{job}/artifacts`: `curl --data-binary @file` vs
  `Client.upload(path, form="raw")` (which also computes the sha256 while reading and checks
  the service's);
* download through the signed URL: `curl -o` (and `curl -o && sha256sum`, which verifies as
  the client does) vs `Client.download` (sha256 checked while writing, in a second thread,
  then an atomic rename).

Stock httpx rows (file object body, bytes body, `iter_raw`) show what the client's transport
(``fleet_artifacts/client/transport.py``) changes.

    .venv/bin/python bench/client_vs_curl.py [--mib 512] [--rounds 3]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from fleet_artifacts.client import Client
from tests.servers import serve_process

TOKEN = "bench-token-0123456789abcdef"
MiB = 1024 * 1024


def best(runs: list[float]) -> float:
    return min(runs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--stock", action="store_true", help="also time stock httpx (slow: bytes body)")
    args = parser.parse_args()
    size = args.mib * MiB
    with tempfile.TemporaryDirectory(dir=Path(__file__).resolve().parent.parent) as tmp:
        source = Path(tmp) / "payload.bin"
        with source.open("wb") as out:
            block = secrets.token_bytes(MiB)
            for _ in range(args.mib):
                out.write(block)
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_ARTIFACTS_")}
        env |= {
            "FLEET_ARTIFACTS_TOKENS": f"{TOKEN}:bench",
            "FLEET_ARTIFACTS_LOG_LEVEL": "WARNING",
            "FLEET_ARTIFACTS_DATA_DIR": f"{tmp}/data",
            "FLEET_ARTIFACTS_SWEEP_INTERVAL_SECONDS": "0",
        }
        with serve_process(env) as (base, _):
            run(base, source, size, Path(tmp), args.rounds, args.stock)


def run(base: str, source: Path, size: int, tmp: Path, rounds: int, stock: bool) -> None:
    upload_url = f"{base}/fleet/jobs/bench/artifacts?kind=build&fileName=payload.bin"
    auth = f"Authorization: Bearer {TOKEN}"
    octets = {"Content-Type": "application/octet-stream", "Authorization": f"Bearer {TOKEN}"}
    fleet = Client(base, TOKEN, timeout=600)
    plain = httpx.Client(timeout=600)
    target = tmp / "copy.bin"
    pointer = fleet.upload(source, "bench", form="raw")

    def timed(action: Callable[[], object]) -> float:
        started = time.perf_counter()
        action()
        return size / MiB / (time.perf_counter() - started)

    def curl(*argv: str) -> None:
        subprocess.run(["curl", "-fsS", *argv], check=True, stdout=subprocess.DEVNULL)

    def curl_verified(url: str) -> None:
        # What a shell user does to check a download: curl alone verifies nothing.
        curl("-o", str(target), url)
        subprocess.run(["sha256sum", str(target)], check=True, stdout=subprocess.DEVNULL)

    def curl_piped(url: str) -> None:
        # The best verified baseline: curl writes and sha256sum hashes at once, in two processes.
        script = 'set -o pipefail; curl -sSf "$0" | tee "$1" | sha256sum >/dev/null'
        subprocess.run(["bash", "-c", script, url, str(target)], check=True)

    def fresh_url() -> str:
        url = fleet.get(pointer.id).download_url
        assert url
        return url

    def stock_download(url: str) -> None:
        with target.open("wb") as out, plain.stream("GET", url) as answer:
            for chunk in answer.iter_raw():
                out.write(chunk)

    def stock_upload(body: object) -> None:
        plain.post(upload_url, content=body, headers=octets).raise_for_status()  # type: ignore[arg-type]

    up: dict[str, list[float]] = {"curl --data-binary": [], "Client.upload": []}
    down: dict[str, list[float]] = {
        "curl -o": [],
        "curl -o && sha256sum": [],
        "curl | tee | sha256sum": [],
        "Client.download": [],
    }
    if stock:
        up |= {"httpx, file object": [], "httpx, bytes": []}
        down |= {"httpx, iter_raw": []}
    for _ in range(rounds):  # interleaved, so drift in machine load hits every row alike
        up["curl --data-binary"].append(
            timed(lambda: curl("-o", "/dev/null", "-X", "POST", upload_url, "-H", auth,
                               "-H", "Content-Type: application/octet-stream", "--data-binary", f"@{source}"))
        )  # fmt: skip
        up["Client.upload"].append(timed(lambda: fleet.upload(source, "bench", form="raw")))
        url = fresh_url()
        down["curl -o"].append(timed(partial(curl, "-o", str(target), url)))
        down["curl -o && sha256sum"].append(timed(partial(curl_verified, fresh_url())))
        down["curl | tee | sha256sum"].append(timed(partial(curl_piped, fresh_url())))
        fresh = fleet.get(pointer.id)
        down["Client.download"].append(timed(partial(fleet.download, fresh, target)))
        if stock:
            with source.open("rb") as file:
                up["httpx, file object"].append(timed(partial(stock_upload, file)))
            data = source.read_bytes()
            up["httpx, bytes"].append(timed(partial(stock_upload, data)))
            del data
            down["httpx, iter_raw"].append(timed(partial(stock_download, url)))
        fleet.delete_job("bench")  # keep the disk from filling; the pointer's artifact goes too
        pointer = fleet.upload(source, "bench", form="raw")
    # What one core hashes: a verified download cannot beat it, whoever verifies.
    block = secrets.token_bytes(64 * MiB)
    started = time.perf_counter()
    hashlib.sha256(block).hexdigest()
    ceiling = 64 / (time.perf_counter() - started)
    print(
        f"{size // MiB} MiB, best of {rounds}, local backend, same machine; sha256 alone: {ceiling:.0f} MiB/s"
    )
    for title, rows, reference in (("upload (proxied POST)", up, "curl --data-binary"),
                                   ("download (signed URL)", down, "curl -o")):  # fmt: skip
        print(f"  {title}")
        ref = best(rows[reference])
        for name, runs in rows.items():
            print(f"    {name:22} {best(runs):8.1f} MiB/s  {best(runs) / ref:5.2f}x curl")


if __name__ == "__main__":
    main()
