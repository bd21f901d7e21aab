"""This service against MLflow's artifact proxy: the same bytes through both, on this machine.

MLflow's artifact proxy is ``mlflow server --serve-artifacts`` with its artifacts in a local
directory (``--artifacts-destination``); it serves the REST routes of MLflow's
``mlflow_artifacts.proto``, which its ``mlflow-artifacts://`` client uses:
``PUT /api/2.0/mlflow-artifacts/artifacts/<path>`` (the request body is the file) and ``GET`` of
the same path (the file). It streams the body into a temp file beside the target and renames
it into place; it does not fsync. This service is ``fleet-artifacts serve`` on its default local
backend: a raw-body ``POST /fleet/jobs/{job}/artifacts`` and ``GET /fleet/artifacts/{id}/content``,
run twice side by side. With ``DURABILITY=power`` (the default) it fsyncs the blob, its sidecar
and the directory and commits the pointer to SQLite (WAL, synchronous=FULL) before it answers:
an acknowledged upload survives a power loss. With ``DURABILITY=process`` it fsyncs none of them
(SQLite WAL, synchronous=NORMAL) but still writes the bytes, renames them into place and commits
the pointer before it answers: an acknowledged upload survives a crash of the process (kill -9),
not a power loss, the promise MLflow's proxy keeps too (it writes and renames, without fsync).

Measured, for every server in turn (the order rotates between rounds), ``--rounds`` (5) rounds
after a warm-up, medians printed:

* ``--count`` (100) distinct 1 MiB files uploaded one after another, then downloaded one after
  another (read to the end, sizes checked);
* one ``--large-mib`` (256) MiB file uploaded, then downloaded;
* the server's CPU seconds for each, and its RSS (all its processes) idle and at its peak.

Two more servers give the scale (``--no-floor`` leaves them out), both ``FLOOR_APP``, a bare ASGI
app under the same uvicorn with no framework, database, auth or fsync:

* the floor: it stores a PUT body the way MLflow does and hashes it the way this service does;
* the transport: it reads a PUT body and drops it, and answers a GET with bytes from memory.
  What is left is what this client and uvicorn cost: no server on this stack answers faster.

Both run with glibc told to keep up to 8 MiB of freed memory (``MALLOC_TRIM_THRESHOLD_``, and
``MALLOC_MMAP_THRESHOLD_`` 4 MiB, above their largest buffers). Without it a bare app hands each
request's buffers back to the kernel and takes fresh, zeroed pages for the next body: on this VM
that was 1.2-1.7 ms per 1 MiB upload, a third of the floor's time. This service does not pay it
(its own allocations keep glibc's adaptive thresholds high), so the floor gets the same
advantage: the scale is the best a bare app does, not the convenient one. The report shows
minor page faults per small file, and the client's own CPU: every server pays the client's.

After each round every server deletes what it stored, through its own API (untimed), so each
round writes into page cache the kernel has just freed. On this 2-core VM taking fresh pages
costs more than the servers do (with ``--keep-files``, a 1 MiB write into new page cache took
2-4 ms, for every server alike), which would hide their differences; it is not what a
long-running server, whose page cache is full, sees.

Both get the same client: httpx with this project's client transport (``client/transport.py``:
no per-send copy of a bytes body, 1 MiB reads), bytes bodies. MLflow is installed on demand with
pip into its own virtualenv (``--mlflow-venv``, default ``.tools/mlflow-venv``) and runs with
``--workers 1`` (``--mlflow-workers``), as this service runs one process, and with its job runner
off (``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false``: eight more processes that serve no artifact
route); if it cannot be installed or started, the MLflow rows are skipped with the reason.

    .venv/bin/python bench/peers.py [--rounds 5] [--count 100] [--large-mib 256] [--keep-files]
                                    [--no-floor] [--mlflow-workers 1] [--mlflow-venv DIR] [--no-install]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.download import cpu_seconds
from bench.upload import AUTH, MiB, T, base_env, rotated
from fleet_artifacts.client.transport import BulkTransport
from tests.servers import REPO, free_port, process_on_port, serve_process, wait_for_port

MLFLOW_ROUTE = "/api/2.0/mlflow-artifacts/artifacts"

# The floor: a bare ASGI app under uvicorn (httptools, as both servers run) that stores a PUT body
# as MLflow does (temp file beside the target, rename; no fsync) and hashes it (sha256, in the
# writer thread) as this service does, serves GET in 1 MiB reads and DELETE of a directory. No
# framework, no database, no auth: what any Python server on this stack pays at least. Under
# /drop/ it is the transport alone: a PUT body is read and dropped, a GET of /drop/<size>/... is
# answered with <size> bytes from memory.
FLOOR_APP = """
import asyncio, hashlib, os, shutil, sys, uuid  # noqa: E401
import uvicorn

ROOT = sys.argv[2]
ZEROS = bytes(1 << 20)  # sent as it is, never copied


def start(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temp = f"{path}.{uuid.uuid4().hex}.tmp"
    return temp, open(temp, "xb")


def write(out, digest, parts):
    for part in parts:
        digest.update(part)
        out.write(part)


def finish(out, temp, path, digest, parts):
    write(out, digest, parts)
    out.close()
    os.replace(temp, path)
    return digest.hexdigest()


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = os.path.join(ROOT, scope["path"].strip("/").replace("..", "_"))
    status, body = 200, b""
    if scope["path"].startswith("/drop/"):
        await drop(scope, receive, send)
        return
    if scope["method"] == "PUT":
        temp, out = await asyncio.to_thread(start, path)
        digest, parts, pending = hashlib.sha256(), [], 0
        while True:
            message = await receive()
            parts.append(message.get("body", b""))
            pending += len(parts[-1])
            if not message.get("more_body"):
                break
            if pending >= 1 << 20:
                await asyncio.to_thread(write, out, digest, parts)
                parts, pending = [], 0
        body = (await asyncio.to_thread(finish, out, temp, path, digest, parts)).encode()
    elif scope["method"] == "DELETE":
        await asyncio.to_thread(shutil.rmtree, path, True)
    else:
        src = await asyncio.to_thread(open, path, "rb")
        size = os.fstat(src.fileno()).st_size
        headers = [(b"content-length", str(size).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        with src:
            while chunk := await asyncio.to_thread(src.read, 1 << 20):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def drop(scope, receive, send):
    size, more = 0, True
    while more:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    if scope["method"] == "GET":
        size = int(scope["path"].split("/")[2])
    headers = [(b"content-length", str(size if scope["method"] == "GET" else 1).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    if scope["method"] != "GET":
        await send({"type": "http.response.body", "body": b"1"})
        return
    while size:
        part = ZEROS if size >= len(ZEROS) else ZEROS[:size]
        size -= len(part)
        await send({"type": "http.response.body", "body": part, "more_body": size > 0})


uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", http="httptools")
"""
OCTETS = {"Content-Type": "application/octet-stream"}
# See the module's docstring: a bare app keeps its freed buffers instead of faulting in new pages.
# The threshold sits above the apps' largest buffers (1 MiB reads), which would else be mapped
# and unmapped, page by page, on every GET.
KEEP_FREED = {"MALLOC_TRIM_THRESHOLD_": str(8 << 20), "MALLOC_MMAP_THRESHOLD_": str(4 << 20)}


def tree(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        one = todo.pop()
        found.append(one)
        todo.extend(children.get(one, []))
    return found


def tree_rss_mib(pid: int) -> tuple[float, float]:
    """Resident memory of ``pid`` and its descendants, and of the largest of them, MiB."""
    sizes = [0]
    for one in tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{one}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    sizes.append(int(line.split()[1]))
    return sum(sizes) / 1024, max(sizes) / 1024


def tree_faults(pid: int) -> int:
    """Minor page faults of ``pid`` and its live descendants (each process's, all its threads)."""
    total = 0
    for one in tree(pid):
        with contextlib.suppress(OSError, IndexError, ValueError):
            total += int(Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()[7])
    return total


def tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and its live descendants."""
    total = 0.0
    for one in tree(pid):
        with contextlib.suppress(OSError):
            total += cpu_seconds(one)
    return total


class TreeSampler:
    """Samples the RSS of a process tree every 50 ms in a thread; keeps the peaks (all, largest process)."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self.peak_one, self._stop = pid, 0.0, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            total, largest = tree_rss_mib(self.pid)
            self.peak, self.peak_one = max(self.peak, total), max(self.peak_one, largest)
            time.sleep(0.05)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def ensure_mlflow(venv: Path, install: bool) -> Path | None:
    """The ``mlflow`` command of ``venv``, pip-installing MLflow there first if needed; None if impossible."""
    exe = venv / "bin" / "mlflow"
    if exe.exists():
        return exe
    if not install:
        print(f"MLflow skipped: {exe} does not exist (--no-install)")
        return None
    print(f"installing MLflow into {venv} (pip install mlflow; a few minutes, once) ...", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
        subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "mlflow"],
            check=True,
            capture_output=True,
            timeout=1800,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        tail = detail.decode(errors="replace").strip().splitlines()[-1:] if detail else []
        print(f"MLflow skipped: could not install it into {venv}: {exc} {' '.join(tail)}")
        return None
    return exe if exe.exists() else None


@contextlib.contextmanager
def mlflow_server(exe: Path, root: Path, workers: int) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``mlflow server --serve-artifacts`` on a free port (its own session, so all its processes stop)."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = (root / "mlflow.log").open("wb")
    proc = subprocess.Popen(
        [str(exe), "server", "--serve-artifacts", "--artifacts-destination", str(root / "artifacts"),
         "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--host", "127.0.0.1",
         "--port", str(port), "--workers", str(workers)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=root,
        # Its job runner (a scheduler and seven huey consumers, ~230 MB each) serves no artifact route.
        env=os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )  # fmt: skip
    try:
        wait_for_port(port, timeout=180, proc=proc)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while httpx.get(f"{base}/health", timeout=5).status_code != 200:
            if time.monotonic() > deadline:
                raise TimeoutError("MLflow did not answer /health")
            time.sleep(0.2)
        yield base, proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)  # the group of the session started above, and nothing else
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@contextlib.contextmanager
def floor_server(root: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``FLOOR_APP`` on a free port, storing under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "floor_app.py").write_text(FLOOR_APP)
    argv = [sys.executable, str(root / "floor_app.py")]
    env = os.environ | KEEP_FREED
    with process_on_port(lambda port: [*argv, str(port), str(root / "files")], env=env) as served:
        yield served


@dataclass
class Server:
    """One server under test: how to upload to it and download from it."""

    name: str
    pid: int
    client: httpx.Client
    upload: Callable[[httpx.Client, str, str, bytes], str]  # (client, batch, name, data) -> its reference
    download_path: Callable[[str], str]  # reference -> path to GET
    drop: Callable[[httpx.Client, str], object]  # (client, batch): delete what the batch stored
    idle_rss: tuple[float, float] = (0.0, 0.0)
    sampler: TreeSampler | None = None
    times: dict[str, list[float]] = field(default_factory=dict)
    cpu: dict[str, list[float]] = field(default_factory=dict)
    client_cpu: dict[str, list[float]] = field(default_factory=dict)  # the sending thread's CPU
    faults: dict[str, list[int]] = field(default_factory=dict)


def fleet_upload(client: httpx.Client, batch: str, name: str, data: bytes) -> str:
    """Raw-body upload to this service, into job ``batch``; the artifact id."""
    r = client.post(
        f"/fleet/jobs/{batch}/artifacts",
        params={"kind": "build", "fileName": name},
        content=data,
        headers=OCTETS,
    )
    r.raise_for_status()
    return str(r.json()["id"])


def fleet_drop(client: httpx.Client, batch: str) -> None:
    """Delete job ``batch`` at once (pointers and blobs)."""
    client.delete(f"/fleet/jobs/{batch}/artifacts", params={"purge": "true"}).raise_for_status()


def mlflow_upload(client: httpx.Client, batch: str, name: str, data: bytes) -> str:
    """PUT to MLflow's artifact proxy, under ``batch/``; the artifact path."""
    path = f"{batch}/{name}"
    client.put(f"{MLFLOW_ROUTE}/{path}", content=data, headers=OCTETS).raise_for_status()
    return path


def mlflow_drop(client: httpx.Client, batch: str) -> None:
    """DELETE MLflow's ``batch/`` directory of artifacts."""
    client.delete(f"{MLFLOW_ROUTE}/{batch}").raise_for_status()


def floor_upload(client: httpx.Client, batch: str, name: str, data: bytes) -> str:
    """PUT to the floor app under ``batch/``; the path."""
    client.put(f"/{batch}/{name}", content=data, headers=OCTETS).raise_for_status()
    return f"/{batch}/{name}"


def floor_drop(client: httpx.Client, batch: str) -> None:
    """DELETE the floor app's ``batch/`` directory."""
    client.delete(f"/{batch}").raise_for_status()


def transport_upload(client: httpx.Client, batch: str, name: str, data: bytes) -> str:
    """PUT to the floor app's /drop/ route (read and dropped); a path that GETs as many bytes."""
    client.put(f"/drop/{len(data)}/{batch}/{name}", content=data, headers=OCTETS).raise_for_status()
    return f"/drop/{len(data)}/{batch}/{name}"


def transport_forget(client: httpx.Client, batch: str) -> None:
    """Nothing was stored: nothing to delete."""


def download(client: httpx.Client, path: str, size: int) -> None:
    """GET ``path`` to the end, checking its size."""
    got = 0
    with client.stream("GET", path) as r:
        r.raise_for_status()
        for chunk in r.iter_raw():
            got += len(chunk)
    assert got == size, (path, got, size)


def run(servers: list[Server], files: list[bytes], large: bytes, rounds: int, keep: bool) -> None:
    """Every operation on every server in turn (rotating), ``rounds`` times; times and CPU kept per server.

    Unless ``keep``, what a round stored is deleted through each server's API after the round (untimed).
    """

    def timed(server: Server, op: str, work: Callable[[], T]) -> T:
        cpu0, faults0, client0 = tree_cpu(server.pid), tree_faults(server.pid), time.thread_time()
        started = time.perf_counter()
        result = work()
        server.times.setdefault(op, []).append(time.perf_counter() - started)
        server.client_cpu.setdefault(op, []).append(time.thread_time() - client0)
        server.cpu.setdefault(op, []).append(tree_cpu(server.pid) - cpu0)
        server.faults.setdefault(op, []).append(tree_faults(server.pid) - faults0)
        return result

    def small_up(server: Server, batch: str) -> list[str]:
        return [server.upload(server.client, batch, f"f{i}.bin", data) for i, data in enumerate(files)]

    def small_down(server: Server, refs: list[str]) -> None:
        for ref, data in zip(refs, files, strict=True):
            download(server.client, server.download_path(ref), len(data))

    def large_down(server: Server, ref: str) -> None:
        download(server.client, server.download_path(ref), len(large))

    for server in servers:  # warm-up: imports, first pages, connections
        for i, data in enumerate(files[:20]):
            ref = server.upload(server.client, "peers-warm", f"w{i}.bin", data)
            download(server.client, server.download_path(ref), len(data))
        server.drop(server.client, "peers-warm")
    for turn in range(rounds):
        order = rotated(servers, turn)
        batch = f"peers-{turn}"
        small = {s.name: timed(s, "small up", partial(small_up, s, batch)) for s in order}
        for s in order:
            timed(s, "small down", partial(small_down, s, small[s.name]))
        big = {
            s.name: timed(s, "large up", partial(s.upload, s.client, batch, "large.bin", large))
            for s in order
        }
        for s in order:
            timed(s, "large down", partial(large_down, s, big[s.name]))
        if not keep:
            for s in order:
                s.drop(s.client, batch)


def report(servers: list[Server], count: int, large_mib: int, rounds: int) -> None:
    """Medians per operation and server: time, server CPU, time ratio to MLflow; then RSS."""
    labels = {
        "small up": f"{count} x 1 MiB uploaded one after another",
        "small down": f"{count} x 1 MiB downloaded one after another",
        "large up": f"one {large_mib} MiB upload",
        "large down": f"one {large_mib} MiB download",
    }
    mlflow = next((s for s in servers if s.name == "MLflow"), None)
    width = max(len(s.name) for s in servers) + 2
    print(
        f"median of {rounds} interleaved rounds; wall seconds, server CPU seconds, time ratio to MLflow;"
        " for the small files also each one's wall ms, client CPU ms and server minor page faults"
    )
    for op, label in labels.items():
        print(f"{label}:")
        for s in servers:
            t, c = statistics.median(s.times[op]), statistics.median(s.cpu[op])
            ratio = f"{t / statistics.median(mlflow.times[op]):6.2f}x" if mlflow and s is not mlflow else ""
            each = ""
            if op.startswith("small"):
                mine, faults = statistics.median(s.client_cpu[op]), statistics.median(s.faults[op])
                per = 1000 / count
                each = f"  ({t * per:5.2f} ms; client {mine * per:4.2f}; {faults / count:5.0f} faults)"
            print(f"  {s.name:{width}} {t:8.3f} s   CPU {c:6.2f} s {ratio:>8}{each}")
    print("server RSS, idle after start / peak during the run (all its processes; the largest one):")
    for s in servers:
        peak = (0.0, 0.0) if s.sampler is None else (s.sampler.peak, s.sampler.peak_one)
        print(
            f"  {s.name:{width}} {s.idle_rss[0]:6.0f} / {peak[0]:6.0f} MiB;"
            f" largest process {s.idle_rss[1]:6.0f} / {peak[1]:6.0f} MiB"
        )
    print("DURABILITY=power (default): fsync of blob, sidecar, directory; SQLite synchronous=FULL")
    print("DURABILITY=process: no fsync, SQLite synchronous=NORMAL; an ack survives kill -9, not power loss")
    if mlflow is not None:
        print("target (issue 14): the 1 MiB uploads in <= 0.50x MLflow's time")
    print("floor: a bare ASGI app (no framework, database or fsync; sha256 in a thread), for scale")
    print("transport: the same app reading and dropping each body, answering GETs from memory")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--count", type=int, default=100, help="1 MiB files per round")
    parser.add_argument("--large-mib", type=int, default=256)
    parser.add_argument("--mlflow-workers", type=int, default=1)
    parser.add_argument("--mlflow-venv", type=Path, default=REPO / ".tools" / "mlflow-venv")
    parser.add_argument("--no-install", action="store_true", help="skip MLflow unless already installed")
    parser.add_argument("--keep-files", action="store_true", help="keep every round's files (see above)")
    parser.add_argument("--no-floor", action="store_true", help="leave out the bare-app floor and transport")
    args = parser.parse_args()
    exe = ensure_mlflow(args.mlflow_venv, not args.no_install)
    files = [secrets.token_bytes(MiB) for _ in range(args.count)]
    large = secrets.token_bytes(MiB) * args.large_mib
    with tempfile.TemporaryDirectory() as name, contextlib.ExitStack() as stack:
        tmp = Path(name)
        servers: list[Server] = []
        if exe is not None:
            try:
                base, proc = stack.enter_context(mlflow_server(exe, tmp / "mlflow", args.mlflow_workers))
            except (OSError, RuntimeError, TimeoutError, httpx.HTTPError) as exc:
                print(f"MLflow skipped: it did not start ({exc}); its log: {tmp / 'mlflow' / 'mlflow.log'}")
            else:
                client = stack.enter_context(
                    httpx.Client(base_url=base, transport=BulkTransport(), timeout=600)
                )
                servers.append(
                    Server(
                        "MLflow",
                        proc.pid,
                        client,
                        mlflow_upload,
                        lambda p: f"{MLFLOW_ROUTE}/{p}",
                        mlflow_drop,
                    )
                )
        variants = {
            "this service, DURABILITY=power": base_env(tmp / "fleet-power"),
            "this service, DURABILITY=process": base_env(tmp / "fleet-process")
            | {"FLEET_ARTIFACTS_DURABILITY": "process"},
        }
        for label, env in variants.items():
            base, proc = stack.enter_context(serve_process(env))
            client = stack.enter_context(
                httpx.Client(base_url=base, transport=BulkTransport(), headers=AUTH, timeout=600)
            )
            servers.append(
                Server(
                    label,
                    proc.pid,
                    client,
                    fleet_upload,
                    lambda i: f"/fleet/artifacts/{i}/content",
                    fleet_drop,
                )
            )
        if not args.no_floor:
            base, proc = stack.enter_context(floor_server(tmp / "floor"))
            client = stack.enter_context(httpx.Client(base_url=base, transport=BulkTransport(), timeout=600))
            servers.append(Server("floor: bare uvicorn app", proc.pid, client, floor_upload, str, floor_drop))
            base, proc = stack.enter_context(floor_server(tmp / "transport"))
            client = stack.enter_context(httpx.Client(base_url=base, transport=BulkTransport(), timeout=600))
            servers.append(
                Server("transport: reads, drops", proc.pid, client, transport_upload, str, transport_forget)
            )
        for server in servers:
            server.idle_rss = tree_rss_mib(server.pid)
            server.sampler = stack.enter_context(TreeSampler(server.pid))
        run(servers, files, large, args.rounds, args.keep_files)
        for server in servers:
            assert server.sampler is not None
            server.sampler.__exit__()
        report(servers, args.count, args.large_mib, args.rounds)


if __name__ == "__main__":
    main()
