"""The OpenAPI document is the contract: schemathesis fuzzes every operation against a live server.

Positive and negative data, the coverage, fuzzing and stateful phases, and every response
check (server errors, undocumented statuses, content types, headers and bodies, ignored
auth, ...) within a bounded time. One check is left out, on purpose: "a schema-valid request
is accepted" (positive_data_acceptance). The document states the rules a JSON Schema can
(identifier patterns, enums, lengths); others it cannot (the query metadata of a raw upload
must not accompany a multipart body, a Content-Range must fit the session), so some
schema-valid requests are rightly refused with a documented 400.

Each failure this run found became a plain test too: OPTIONS lists every method
(test_api), ``missing`` ranges are documented as arrays, downloads as any content type.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fleet_artifacts.app import create_app
from tests.conftest import TOKEN_A, make_settings
from tests.servers import ThreadedServer

BUDGET_SECONDS = 120


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = make_settings(None, tmp_path_factory.mktemp("fuzz"), max_upload_bytes=str(1024 * 1024))
    server = ThreadedServer(create_app(settings)).start()
    yield server.url
    server.stop()


def test_every_operation_conforms_to_the_document(live: str, tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{live}/docs/openapi.json",
        "--header",
        f"Authorization: Bearer {TOKEN_A}",
        "--checks",
        "all",
        "--exclude-checks",
        "positive_data_acceptance",
        "--max-examples",
        "10",
        "--max-time",
        str(BUDGET_SECONDS),
        "--seed",
        "2",  # the same cases on every run: CI stays reproducible; change it to explore
        "--no-shrink",
        # GET /fleet/events long-polls up to wait=30 s when the feed is quiet: a slow answer by design.
        "--request-timeout",
        "40",
        "--max-response-time",
        "40",
        "--report-dir",
        str(tmp_path),
    ]
    run = subprocess.run(command, capture_output=True, text=True, timeout=BUDGET_SECONDS + 120)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "Tested: 45" in run.stdout, run.stdout[-3000:]  # every operation of the document


def test_options_lists_every_method_of_the_path(live: str) -> None:
    with httpx.Client(base_url=live) as client:
        assert client.options("/blobs/fleet/p/j/x-log").headers["allow"] == "GET, HEAD, OPTIONS, PUT"
        auth = {"Authorization": f"Bearer {TOKEN_A}"}
        # Guarded paths answer OPTIONS after the guard, which needs the token.
        for path, methods in {
            "/fleet/artifacts/x": "DELETE, GET, OPTIONS, PATCH",
            "/fleet/jobs/j/retention": "GET, OPTIONS, PUT",
            "/uploads/x": "DELETE, GET, OPTIONS, PATCH",
            "/fleet/jobs/j/artifacts": "DELETE, GET, OPTIONS, POST",
        }.items():
            assert client.options(path, headers=auth).headers["allow"] == methods, path
