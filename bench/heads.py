"""What bounding the request head costs the hot read path: pointer fetches per second by HTTP protocol.

Serves the app (local backend, SQLite) under uvicorn three ways, in turn, each in a process
of its own: httptools as uvicorn ships it (no head bound), the bounded httptools protocol
the service runs (`fleet_artifacts.serving`), and h11 (bounded, pure Python). A client
process fetches one pointer (`GET /fleet/jobs/{job}/artifacts/{id}`, a fresh signed URL
each time) over one keep-alive connection; rounds are interleaved and the median kept.

    .venv/bin/python bench/heads.py [--requests 3000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.servers import free_port, wait_for_port

TOKEN = "bench-token-0123456789abcdef"
PROTOCOLS = ("httptools", "bounded", "h11")


def serve(protocol: str, port: int, data_dir: str) -> None:
    """Child process: the app under uvicorn with ``protocol``."""
    import uvicorn

    from fleet_artifacts.app import create_app
    from fleet_artifacts.serving import bounded_protocol
    from fleet_artifacts.settings import load_settings

    settings = load_settings(
        {
            "FLEET_ARTIFACTS_TOKENS": f"{TOKEN}:bench",
            "FLEET_ARTIFACTS_DATA_DIR": data_dir,
            "FLEET_ARTIFACTS_LOG_LEVEL": "WARNING",
        }
    )
    http = (
        bounded_protocol(settings.max_header_bytes, settings.header_timeout_seconds)
        if protocol == "bounded"
        else protocol
    )
    uvicorn.run(create_app(settings), port=port, log_level="warning", access_log=False, http=http)


def rate(protocol: str, data_dir: str, requests: int) -> float:
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--serve", protocol, str(port), data_dir])
    try:
        wait_for_port(port, proc=proc)
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {TOKEN}"}
        ) as c:
            r = c.post(
                "/fleet/jobs/bench/artifacts", params={"kind": "log", "fileName": "a.log"}, content=b"x"
            )
            path = f"/fleet/jobs/bench/artifacts/{r.json()['id']}"
            for _ in range(200):  # warm up
                c.get(path)
            started = time.perf_counter()
            for _ in range(requests):
                assert c.get(path).status_code == 200
            return requests / (time.perf_counter() - started)
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        protocol, port, data_dir = args.serve
        serve(protocol, int(port), data_dir)
        return
    results: dict[str, list[float]] = {p: [] for p in PROTOCOLS}
    with tempfile.TemporaryDirectory() as data_dir:
        for _ in range(args.rounds):
            for protocol in PROTOCOLS:
                results[protocol].append(rate(protocol, data_dir, args.requests))
    base = statistics.median(results["httptools"])
    rounds = f"median of {args.rounds} interleaved rounds of {args.requests}"
    print(f"pointer fetches/s, {rounds} (cpus: {os.cpu_count()})")
    for protocol in PROTOCOLS:
        median = statistics.median(results[protocol])
        print(f"  {protocol:10} {median:8.0f}/s  {median / base:5.2f}x of unbounded httptools")


if __name__ == "__main__":
    main()
