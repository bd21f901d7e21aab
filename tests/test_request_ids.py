"""Request ids and the JSON log format, on a real `fleet-artifacts serve` process (local backend).

Every answer carries ``X-Request-ID`` (the client's when sane, else a new one); problem documents
quote it; with ``FLEET_ARTIFACTS_LOG_FORMAT=json`` every stderr line is one JSON object, and the
access and audit lines of a request name its id.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import TOKEN_A
from tests.helpers import clean_env
from tests.servers import serve_process

AUTH = {"Authorization": f"Bearer {TOKEN_A}"}


def env(data_dir: Path, log_format: str) -> dict[str, str]:
    return clean_env() | {
        "FLEET_ARTIFACTS_TOKENS": f"{TOKEN_A}:prod-a",
        "FLEET_ARTIFACTS_DATA_DIR": str(data_dir),
        "FLEET_ARTIFACTS_SWEEP_INTERVAL_SECONDS": "0",
        "FLEET_ARTIFACTS_LOG_FORMAT": log_format,
    }


@pytest.fixture(scope="module")
def json_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    data = tmp_path_factory.mktemp("json")
    log = data / "serve.log"
    with serve_process(env(data / "d", "json"), output=log) as (url, _):
        yield url, log


def lines(log: Path) -> list[dict[str, Any]]:
    """Every line the service wrote, each parsed as JSON (a line that is not JSON fails the test)."""
    text = log.read_text()
    parsed = []
    for line in text.splitlines():
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"not a JSON line: {line!r}\nin:\n{text}")
    return parsed


def written_once(log: Path, found: Callable[[list[dict[str, Any]]], bool]) -> list[dict[str, Any]]:
    """The log's lines once ``found`` holds of them: the access line is written after the answer is sent."""
    deadline = time.monotonic() + 10
    while not found(parsed := lines(log)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return parsed


def test_a_sane_request_id_is_echoed_and_written_with_the_access_and_audit_lines(
    json_service: tuple[str, Path],
) -> None:
    url, log = json_service
    with httpx.Client(base_url=url, headers=AUTH) as c:
        made = c.post(
            "/fleet/jobs/j-rid/artifacts",
            params={"kind": "log", "fileName": "a.log"},
            content=b"hello",
            headers={"X-Request-ID": "ci-run-42.step:7"},
        )
        assert made.status_code == 201, made.text
        assert made.headers["x-request-id"] == "ci-run-42.step:7"
        fetched = c.get(f"/fleet/jobs/j-rid/artifacts/{made.json()['id']}", params={"expiresIn": "60"})
    rid = fetched.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{24}", rid), rid  # none sent: a new one
    written = written_once(
        log, lambda parsed: any(line.get("requestId") == rid for line in parsed if "route" in line)
    )
    access = [line for line in written if line.get("logger") == "fleet_artifacts.access"]
    mine = [line for line in access if line.get("requestId") == rid]
    assert len(mine) == 1, access
    line = mine[0]
    assert line["route"] == "/fleet/jobs/{job_id}/artifacts/{artifact_id}"
    assert (line["method"], line["status"], line["product"], line["level"]) == ("GET", 200, "prod-a", "INFO")
    assert isinstance(line["durationMs"], float) and line["durationMs"] >= 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"]), line["time"]
    assert "expiresIn" not in json.dumps(access)  # never a query string
    audits = [line for line in written if line.get("event") == "url.signed" and line.get("requestId") == rid]
    assert len(audits) == 1 and audits[0]["artifactId"] == made.json()["id"], written
    created = [line for line in written if line.get("event") == "url.signed"]
    assert any(a.get("requestId") == "ci-run-42.step:7" for a in created), created


@pytest.mark.parametrize("sent", ["has spaces", "x" * 129, 'quote"d', "ünïcode"])
def test_an_insane_request_id_is_replaced(json_service: tuple[str, Path], sent: str) -> None:
    url, _ = json_service
    r = httpx.get(f"{url}/health", headers={b"X-Request-ID": sent.encode()})
    assert r.status_code == 200
    assert re.fullmatch(r"[0-9a-f]{24}", r.headers["x-request-id"]), r.headers["x-request-id"]


def test_problem_documents_quote_the_request_id(json_service: tuple[str, Path]) -> None:
    url, log = json_service
    missing = httpx.get(f"{url}/fleet/jobs/j-rid/artifacts/nope", headers={**AUTH, "X-Request-ID": "r-404"})
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")
    assert missing.json()["requestId"] == "r-404"
    refused = httpx.get(f"{url}/fleet/jobs/j/artifacts", headers={"X-Request-ID": "r-401"})
    assert (refused.status_code, refused.json()["requestId"]) == (401, "r-401")
    no_route = httpx.get(f"{url}/no/such/route")
    assert no_route.status_code == 404
    assert no_route.json()["requestId"] == no_route.headers["x-request-id"]
    foreign = httpx.get(f"{url}/health", headers={"Host": "evil.example", "X-Request-ID": "r-host"})
    assert (foreign.status_code, foreign.json()["requestId"]) == (400, "r-host")
    written = written_once(log, lambda parsed: any(line.get("requestId") == "r-host" for line in parsed))
    refusals = [line for line in written if line.get("event") == "token.refused"]
    assert any(line.get("requestId") == "r-401" for line in refusals), refusals


def test_every_line_is_json_from_start_to_stop(tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    with serve_process(env(tmp_path / "d", "json"), output=log) as (url, _):
        assert httpx.get(f"{url}/health").status_code == 200
    written = lines(log)  # uvicorn's own start and stop lines included
    assert any(line.get("logger", "").startswith("uvicorn") for line in written), written
    records = [line for line in written if "event" not in line]  # audit lines have their own form
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in records), records


def test_text_format_stays_the_default_and_still_echoes_ids(tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    with serve_process(env(tmp_path / "d", "text"), output=log) as (url, _):
        r = httpx.get(f"{url}/health", headers={"X-Request-ID": "plain-1"})
        assert r.headers["x-request-id"] == "plain-1"
    access = [line for line in log.read_text().splitlines() if "fleet_artifacts.access" in line]
    assert len(access) == 1 and access[0].startswith("INFO - ") and access[0].endswith("ms"), access
