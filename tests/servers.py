"""Real servers for the tests: Azurite (Node) and the app under uvicorn.

Everything binds to free loopback ports and is stopped by the fixture that
started it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import uvicorn

REPO = Path(__file__).resolve().parent.parent
AZURITE_ACCOUNT = "devstoreaccount1"
# Azurite's well-known development key, published in Microsoft's Azurite docs (test config only).
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def free_port() -> int:
    """Return a loopback TCP port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, timeout: float = 30.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Block until something accepts connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listened on 127.0.0.1:{port} within {timeout} s")


def azurite_binary() -> str:
    """Locate azurite-blob: $FLEET_ARTIFACTS_TEST_AZURITE_BIN, ./.tools, or PATH."""
    candidates = [
        os.environ.get("FLEET_ARTIFACTS_TEST_AZURITE_BIN", ""),
        str(REPO / ".tools" / "node_modules" / ".bin" / "azurite-blob"),
        shutil.which("azurite-blob") or "",
    ]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError(
        "azurite-blob not found: run ./scripts/test (it installs Azurite from npm into .tools/)"
    )


class Azurite:
    """An Azurite blob service on a free port with its own data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/{AZURITE_ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
            f"AccountKey={AZURITE_KEY};BlobEndpoint={self.endpoint};"
        )

    def start(self) -> Azurite:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = (self.data_dir / "azurite.log").open("wb")
        self.proc = subprocess.Popen(
            [
                azurite_binary(),
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                str(self.port),
                "--location",
                str(self.data_dir),
                "--skipApiVersionCheck",
                "--loose",
                "--silent",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_for_port(self.port, proc=self.proc)
        return self

    def start_again(self) -> Azurite:
        """Restart on the same port and data after ``stop`` (an outage that ends)."""
        return self.start()

    def stop(self, *, graceful: bool = False) -> None:
        """Stop Azurite; ``graceful`` flushes its metadata (about 10 s) for a restart on the same data."""
        if self.proc is not None and self.proc.poll() is None:
            if not graceful:
                self.proc.kill()
                self.proc.wait()
                return
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class ThreadedServer:
    """The app under a real uvicorn server in a background thread (real HTTP)."""

    def __init__(self, app: Any) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ThreadedServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("uvicorn stopped during start-up (see the log above)")
            if time.monotonic() > deadline:
                raise TimeoutError("uvicorn did not start within 30 s")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.sock.close()


@contextlib.contextmanager
def process_on_port(
    argv: Callable[[int], list[str]], *, env: dict[str, str] | None = None, output: Path | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A server process started by ``argv(port)`` on a free loopback port: its URL and process.

    Its stdout and stderr are discarded, or appended to the file ``output``: a file, not a pipe,
    since a pipe nobody drains fills and stalls the server. Stopped (SIGTERM, then SIGKILL after
    30 s) on the way out.
    """
    port = free_port()
    with contextlib.ExitStack() as stack:
        sink = subprocess.DEVNULL if output is None else stack.enter_context(output.open("ab"))
        proc = subprocess.Popen(argv(port), env=env, stdout=sink, stderr=sink)
        try:
            wait_for_port(port, proc=proc)
            yield f"http://127.0.0.1:{port}", proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def serve_process(
    env: dict[str, str], *, output: Path | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A real ``fleet-artifacts serve`` process on a free port: its URL and process.

    Its output (banner, access and audit lines) is discarded, or appended to ``output``.
    """
    argv = [sys.executable, "-m", "fleet_artifacts", "serve", "--port"]
    with process_on_port(lambda port: [*argv, str(port)], env=env, output=output) as served:
        yield served
