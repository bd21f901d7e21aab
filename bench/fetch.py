"""The hot read path against a bare Litestar route serving the same bytes (issue 14).

For each backend, measures side by side in one run:

* pointer fetch ``GET /fleet/jobs/{job}/artifacts/{id}`` (the pointer and a freshly signed
  download URL), against a bare route answering one real answer of the service as a constant;
* list page ``GET /fleet/jobs/{job}/artifacts?limit=100``, against a bare route answering one
  real page the same way.

Backends: ``local`` (the embedded default: blobs in a local directory, pointers in SQLite) and
``azure`` (Azure Blob on an Azurite this script starts, account-key connection string, pointers
in SQLite; skipped with a message when Azurite is not installed in .tools/).

The service is the real ``fleet-artifacts serve`` process (``tests.servers.serve_process``):
logging at its default INFO level, access and audit lines written to a file (a pipe nobody
drains would fill and stall it), ``SWEEP_INTERVAL_SECONDS=0``. The bare app runs in a process
of its own under the uvicorn settings ``serve`` uses: the bounded httptools protocol of
``fleet_artifacts.serving``, loop auto (uvloop), no access log, log level info, one worker.
Before measuring, 120 small artifacts are uploaded into one job through the HTTP API (raw
upload form), and the bare app is checked to answer byte for byte what the service answered.

Load: a closed loop over 32 keep-alive connections, ``wrk -t1 --latency`` when it is on PATH,
else a small asyncio client (which may be the bottleneck; the report says so). Each window is
preceded by 1 s of warm-up, and after each the server is let go idle (it still finishes the
requests wrk dropped at its deadline, which must not be charged to the next window). Rounds
are interleaved (service and bare alternate which goes first) and the median of the rounds is
reported, since the machine is shared and single windows swing by tens of percent. Then the
ratios, with the issue's targets beside them: each round's ratio (service and bare side by
side, a second apart) and the median of those, which is what a target is checked against, and
the ratio of the two medians. When neighbours take the machine's CPU time in one round and not
in another, the ratio of medians can set one round's service against another round's bare
route; a round's own ratio cannot.

    .venv/bin/python bench/fetch.py [--rounds 5] [--seconds 6] [--backends local,azure] [--connections 32]

The default run takes about five minutes with both backends.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import importlib.metadata
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.servers import REPO, Azurite, azurite_binary, process_on_port, serve_process

TOKEN = "bench-token-0123456789abcdef"
AUTH = f"Authorization: Bearer {TOKEN}"
JOB = "nightly-42"
SEED = 120  # more than one page, so the list answer carries a continuation token like a real one
PAGE = 100
WARM_UP_SECONDS = 1
BACKENDS = ("local", "azure")
OPS = ("fetch", "list")
VARIANTS = ("service", "bare")
# Issue 14's targets: service req/s at least this share of the bare route's, fetch p99 at most this multiple.
FETCH_RATE_TARGET = 0.6
FETCH_P99_TARGET = 3.0
LIST_RATE_TARGET = 0.3


@dataclass(frozen=True)
class Sample:
    """One measured window."""

    rps: float
    p50_ms: float
    p99_ms: float
    errors: int  # non-2xx/3xx answers, socket errors and timeouts
    cpu_us: float = 0.0  # the server's CPU (all threads) per answered request in the window


@dataclass(frozen=True)
class Target:
    """One backend's service and bare app, and the two paths measured on both."""

    backend: str
    service: str  # base URL
    service_proc: subprocess.Popen[bytes]
    service_log: Path
    bare: str  # base URL
    bare_proc: subprocess.Popen[bytes]
    paths: dict[str, str]  # op -> path and query
    sizes: dict[str, int]  # op -> bytes of the answer


# ---------------------------------------------------------------------------------------------
# The bare app


def serve_bare(port: int, bodies_file: Path) -> None:
    """Child process: the two bare routes under the uvicorn settings of ``fleet-artifacts serve``."""
    import uvicorn
    from litestar import Litestar, get

    from fleet_artifacts.serving import bounded_protocol
    from fleet_artifacts.settings import Settings

    bodies: dict[str, dict[str, Any]] = msgspec.json.decode(bodies_file.read_bytes())
    pointer, page = bodies["fetch"], bodies["list"]

    # The same path templates as the service, so routing and path parameters cost both alike; async
    # like the service's handlers; a dict (not bytes), so it pays for encoding its answer as the service does.
    @get("/fleet/jobs/{job_id:str}/artifacts/{artifact_id:str}")
    async def fetch(job_id: str, artifact_id: str) -> dict[str, Any]:
        return pointer

    @get("/fleet/jobs/{job_id:str}/artifacts")
    async def listing(job_id: str) -> dict[str, Any]:
        return page

    # The service's defaults (the bench sets no head bounds), as cli.serve passes them.
    settings = Settings()
    config = uvicorn.Config(
        Litestar(route_handlers=[fetch, listing]),
        host="127.0.0.1",
        port=port,
        log_level="info",
        access_log=False,
        http=bounded_protocol(settings.max_header_bytes, settings.header_timeout_seconds),
    )
    uvicorn.Server(config).run()


@contextlib.contextmanager
def bare_process(bodies_file: Path, output: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The bare app in a process of its own (output to a file): its base URL and process."""
    argv = [sys.executable, __file__, "--serve-bare"]
    with process_on_port(lambda port: [*argv, str(port), str(bodies_file)], output=output) as served:
        yield served


# ---------------------------------------------------------------------------------------------
# Setting up one backend


def service_env(data_dir: Path, extra: dict[str, str]) -> dict[str, str]:
    """The service's environment: none of the caller's FLEET_ARTIFACTS_* (so LOG_LEVEL is the default)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_ARTIFACTS_")}
    return env | {
        "FLEET_ARTIFACTS_TOKENS": f"{TOKEN}:bench",
        "FLEET_ARTIFACTS_DATA_DIR": str(data_dir),
        "FLEET_ARTIFACTS_SWEEP_INTERVAL_SECONDS": "0",  # no sweeper waking up inside a window
        **extra,
    }


def seed(base: str) -> tuple[dict[str, str], dict[str, bytes]]:
    """Upload SEED small artifacts (raw upload form); the paths measured and one answer of each."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
        ids = []
        for i in range(SEED):
            created = client.post(
                f"/fleet/jobs/{JOB}/artifacts",
                params={
                    "kind": "log",
                    "fileName": f"build-{i:03d}.log",
                    "runId": "attempt-1",
                    "tag": "os:linux",
                },
                content=f"step {i} ok\n".encode() * 20,
                headers={"Content-Type": "text/plain"},
            )
            created.raise_for_status()
            ids.append(created.json()["id"])
        paths = {
            "fetch": f"/fleet/jobs/{JOB}/artifacts/{ids[-1]}",
            "list": f"/fleet/jobs/{JOB}/artifacts?limit={PAGE}",
        }
        answers = {}
        for op, path in paths.items():
            answer = client.get(path)
            answer.raise_for_status()
            answers[op] = answer.content
    assert len(msgspec.json.decode(answers["list"])["items"]) == PAGE
    return paths, answers


def check_bare(bare: str, paths: dict[str, str], answers: dict[str, bytes]) -> None:
    """The comparison means something only if the bare route answers the very same bytes."""
    with httpx.Client(base_url=bare, timeout=60) as client:
        for op, path in paths.items():
            got = client.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
            got.raise_for_status()
            if got.content != answers[op]:
                raise RuntimeError(f"the bare {op} route does not answer the service's bytes")


def start_backend(backend: str, tmp: Path, stack: contextlib.ExitStack) -> Target | None:
    """Start (on ``stack``) the service and the bare app of ``backend``, seeded; None if skipped."""
    extra: dict[str, str] = {}
    if backend == "azure":
        try:
            azurite_binary()
        except RuntimeError as exc:
            print(f"azure backend skipped: {exc}", flush=True)
            return None
        azurite = Azurite(tmp / "azurite").start()
        stack.callback(azurite.stop)
        extra = {
            "FLEET_ARTIFACTS_BLOB_BACKEND": "azure",
            "FLEET_ARTIFACTS_AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string,
        }
    log = tmp / f"{backend}-service.log"
    service, proc = stack.enter_context(serve_process(service_env(tmp / backend, extra), output=log))
    paths, answers = seed(service)
    bodies_file = tmp / f"{backend}-bodies.json"
    # Decoded and encoded again, key order kept: check_bare proves the bytes came out the same.
    bodies_file.write_bytes(msgspec.json.encode({op: msgspec.json.decode(b) for op, b in answers.items()}))
    bare, bare_proc = stack.enter_context(bare_process(bodies_file, tmp / f"{backend}-bare.log"))
    check_bare(bare, paths, answers)
    sizes = {op: len(body) for op, body in answers.items()}
    return Target(backend, service, proc, log, bare, bare_proc, paths, sizes)


# ---------------------------------------------------------------------------------------------
# Load


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def wrk(url: str, connections: int, seconds: int) -> Sample:
    """One closed-loop window of wrk, parsed."""
    out = subprocess.run(
        # --timeout 30s: wrk's default (2 s) drops slower answers from the latencies, and a slow
        # list page is exactly what must show in the p99.
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "30s", "--latency", "-H", AUTH, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
    latency = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.M))
    if rate is None or set(latency) != {"50", "99"}:
        raise RuntimeError(f"cannot read wrk's output:\n{out}")

    def ms(value: str) -> float:
        number = value.rstrip("usmh")
        return float(number) * _UNITS_MS[value[len(number) :]]

    socket_errors = re.search(r"^\s*Socket errors:(.*)$", out, re.M)
    errors = sum(int(n) for n in re.findall(r"\d+", socket_errors.group(1))) if socket_errors else 0
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors += int(non_2xx.group(1)) if non_2xx else 0
    return Sample(float(rate.group(1)), ms(latency["50"]), ms(latency["99"]), errors)


async def _python_load(url: str, connections: int, seconds: float) -> Sample:
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname, parts.port
    target = f"{parts.path}?{parts.query}" if parts.query else parts.path
    request = f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n{AUTH}\r\n\r\n".encode()
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def loop() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while time.perf_counter() < deadline:
                sent = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                if length is None:  # both services answer with a length; chunked would be a surprise
                    raise RuntimeError(f"no Content-Length in {head!r}")
                await reader.readexactly(int(length.group(1)))
                latencies.append(time.perf_counter() - sent)
                errors += not head.startswith((b"HTTP/1.1 2", b"HTTP/1.1 3"))
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    latencies.sort()

    def quantile(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000

    return Sample(len(latencies) / elapsed, quantile(0.5), quantile(0.99), errors)


def python_load(url: str, connections: int, seconds: int) -> Sample:
    """The fallback client: ``connections`` closed loops on uvloop, in this process."""
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_python_load(url, connections, seconds))


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def settle(pid: int, timeout: float = 60.0) -> None:
    """Wait until the server ``pid`` is idle (under 20% of a core over 100 ms).

    wrk stops at its deadline and drops its connections, but the server still finishes the
    requests it had in flight: for a slow list page that is up to a second or more of CPU,
    which must not be charged to the window that comes next.
    """
    deadline = time.monotonic() + timeout
    before = cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = cpu_seconds(pid)
        if now - before < 0.02:
            return
        before = now


def measure(url: str, pid: int, client: str, connections: int, seconds: int) -> Sample:
    """Warm up, then one measured window (fresh connections for both, as wrk makes them)."""
    load = wrk if client == "wrk" else python_load
    load(url, connections, WARM_UP_SECONDS)
    settle(pid)
    before = cpu_seconds(pid)
    sample = load(url, connections, seconds)
    settle(pid)  # the requests still in flight at the deadline count too: they were answered work
    used = cpu_seconds(pid) - before
    # CPU per request holds still when other work shares the cores, where req/s does not.
    return dataclasses.replace(sample, cpu_us=used / max(1.0, sample.rps * seconds) * 1e6)


# ---------------------------------------------------------------------------------------------
# Report


def machine() -> list[str]:
    """What the figures were measured on, and which code."""
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    versions = ", ".join(
        f"{name} {importlib.metadata.version(name)}" for name in ("litestar", "msgspec", "uvicorn", "uvloop")
    )

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "--short=12", "HEAD") or "unknown"
    changed = git("status", "--porcelain", "--", "fleet_artifacts").splitlines()
    dirty = f" + uncommitted changes in {len(changed)} file(s) of fleet_artifacts/" if changed else ""
    return [
        f"machine: nproc {len(os.sched_getaffinity(0))}, "
        f"{model.group(1) if model else platform.processor()}, Python {platform.python_version()}",
        f"         {versions}",
        f"commit:  {commit}{dirty} (as the servers loaded it at start)",
    ]


def report(target: Target, results: dict[tuple[str, str, str], list[Sample]]) -> None:
    """One backend's table of medians, then the ratios against the issue's targets."""

    def med(op: str, variant: str, field: str) -> float:
        return float(statistics.median(getattr(s, field) for s in results[target.backend, op, variant]))

    what = {"local": "local blob directory + SQLite", "azure": "Azure Blob on Azurite + SQLite"}
    print(f"\nbackend {target.backend} ({what[target.backend]})")
    print(f"  fetch: GET /fleet/jobs/{JOB}/artifacts/{{id}}, a {target.sizes['fetch']} B answer")
    print(f"  list:  GET /fleet/jobs/{JOB}/artifacts?limit={PAGE}, a {target.sizes['list']} B answer")
    print("  bare:  a bare Litestar route answering the same bytes, a constant")
    print(f"  {'variant':16} {'req/s':>8} {'p50 ms':>9} {'p99 ms':>9} {'CPU us/req':>11}")
    for op in OPS:
        for variant in VARIANTS:
            rps, p50, p99, cpu = (med(op, variant, field) for field in ("rps", "p50_ms", "p99_ms", "cpu_us"))
            print(f"  {variant:8}{op:8} {rps:8.0f} {p50:9.2f} {p99:9.2f} {cpu:11.0f}")
    errors = sum(s.errors for key, samples in results.items() if key[0] == target.backend for s in samples)
    if errors:
        print(f"  WARNING: {errors} errors (non-2xx answers, socket errors or timeouts) in these windows")
    # (what, op, field, target, whether the ratio must be at least the target rather than at most)
    checks = [
        ("fetch req/s ratio (service/bare)", "fetch", "rps", FETCH_RATE_TARGET, True),
        ("fetch p99 ratio (service/bare)", "fetch", "p99_ms", FETCH_P99_TARGET, False),
        ("list req/s ratio (service/bare)", "list", "rps", LIST_RATE_TARGET, True),
    ]
    for name, op, field, goal, at_least in checks:
        # The per-round ratios' range shows how far one round alone could have misled.
        pairs = zip(results[target.backend, op, "service"], results[target.backend, op, "bare"], strict=True)
        per_round = [getattr(s, field) / getattr(b, field) for s, b in pairs]
        ratio = statistics.median(per_round)
        met = ratio >= goal if at_least else ratio <= goal
        of_medians = med(op, "service", field) / med(op, "bare", field)
        wanted = f"{'>=' if at_least else '<='} {goal:g}x"
        print(
            f"  {name:33} {ratio:7.3f}x  target {wanted:7} {'met' if met else 'NOT met':7}  "
            f"(rounds: {min(per_round):.3f}x to {max(per_round):.3f}x; ratio of medians {of_medians:.3f}x)"
        )
    for op in OPS:  # what the req/s ratio would be if each server had a core of its own
        ratio = med(op, "bare", "cpu_us") / med(op, "service", "cpu_us")
        print(f"  {op + ' CPU ratio (bare/service us)':33} {ratio:7.3f}x  (server CPU per request)")
    # Evidence that the service logged as deployed (INFO: an access line per request, audit lines).
    with target.service_log.open("rb") as log:
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: log.read(1 << 20), b""))
    print(f"  service output: {lines} lines (banner, access and audit lines), written to a file")


# ---------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; the median is reported")
    parser.add_argument("--seconds", type=int, default=6, help="length of each measured window")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated: local,azure")
    parser.add_argument("--connections", type=int, default=32, help="keep-alive connections (closed loop)")
    parser.add_argument(
        "--client",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="load client: wrk if on PATH (auto), or the asyncio fallback",
    )
    parser.add_argument("--serve-bare", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        port, bodies_file = args.serve_bare
        serve_bare(int(port), Path(bodies_file))
        return
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if not backends or any(b not in BACKENDS for b in backends) or args.rounds < 1 or args.seconds < 1:
        parser.error(f"--backends takes some of {','.join(BACKENDS)}; --rounds and --seconds at least 1")
    client = args.client
    if client == "auto":
        client = "wrk" if shutil.which("wrk") else "python"
    if client == "wrk" and not shutil.which("wrk"):
        parser.error("wrk is not on PATH")

    print(
        f"hot read path, service vs bare route: median of {args.rounds} interleaved rounds of "
        f"{args.seconds} s ({WARM_UP_SECONDS} s warm-up each), {args.connections} keep-alive connections, "
        "closed loop"
    )
    if client == "wrk":
        version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split(" [")[0]
        print(f"client:  {version} -t1 --latency")
    else:
        print("client:  asyncio fallback (wrk not on PATH): it shares the CPUs and MAY BE THE BOTTLENECK;")
        print("         the bare route's figures, and so the ratios, are then lower bounds of the truth")
    for line in machine():
        print(line)
    print(
        f"seed:    {SEED} artifacts uploaded into job {JOB!r} per backend (raw upload, HTTP API)", flush=True
    )

    # A terminate unwinds like Ctrl-C, so the servers started below are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    with tempfile.TemporaryDirectory(prefix="fleet-fetch-bench-") as tmp, contextlib.ExitStack() as stack:
        targets = [t for b in backends if (t := start_backend(b, Path(tmp), stack)) is not None]
        results: dict[tuple[str, str, str], list[Sample]] = {
            (t.backend, op, variant): [] for t in targets for op in OPS for variant in VARIANTS
        }
        for round_no in range(args.rounds):
            # Alternate which goes first, so a drift in machine load within a round favours neither.
            order = VARIANTS if round_no % 2 == 0 else VARIANTS[::-1]
            for target in targets:
                progress = []
                for op in OPS:
                    for variant in order:
                        base, proc = (
                            (target.service, target.service_proc)
                            if variant == "service"
                            else (target.bare, target.bare_proc)
                        )
                        url = base + target.paths[op]
                        sample = measure(url, proc.pid, client, args.connections, args.seconds)
                        results[target.backend, op, variant].append(sample)
                        progress.append(f"{variant} {op} {sample.rps:.0f}/s")
                    if target.service_proc.poll() is not None:
                        tail = target.service_log.read_text(errors="replace")[-3000:]
                        raise RuntimeError(f"the {target.backend} service exited; its log ends:\n{tail}")
                    if target.bare_proc.poll() is not None:
                        raise RuntimeError(f"the {target.backend} bare app exited")
                print(
                    f"  round {round_no + 1}/{args.rounds} {target.backend}: {', '.join(progress)}",
                    file=sys.stderr,
                )
        for target in targets:
            report(target, results)


if __name__ == "__main__":
    main()
