"""Prometheus metrics: off by default (no route, no wrapper); on, what a scrape of a real server shows."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.routes import HTTPRoute
from prometheus_client.parser import text_string_to_metric_families

from fleet_artifacts.app import create_app
from fleet_artifacts.routes.metrics import DOWNLOAD_ROUTES, UNMATCHED, UPLOAD_ROUTES, Metrics, counting
from fleet_artifacts.settings import SettingsError, load_settings
from tests.conftest import TOKEN_A, make_settings
from tests.helpers import clean_env
from tests.servers import serve_process

METRICS_TOKEN = "scrape-" + secrets.token_hex(12)
AUTH = {"Authorization": f"Bearer {TOKEN_A}"}
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def env_of(data_dir: Path, **extra: str) -> dict[str, str]:
    env = clean_env()
    env |= {
        "FLEET_ARTIFACTS_TOKENS": f"{TOKEN_A}:prod-a",
        "FLEET_ARTIFACTS_DATA_DIR": str(data_dir),
        "FLEET_ARTIFACTS_SWEEP_INTERVAL_SECONDS": "0",
        **{f"FLEET_ARTIFACTS_{k}": v for k, v in extra.items()},
    }
    return env


@pytest.fixture(scope="module")
def metered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = env_of(tmp_path_factory.mktemp("metrics"), METRICS="true", METRICS_TOKEN=METRICS_TOKEN)
    with serve_process(env) as (url, _):
        yield url


def scrape(url: str) -> tuple[Samples, str]:
    r = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples, r.text


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


def test_off_by_default_there_is_no_metrics_route(tmp_path: Path) -> None:
    with serve_process(env_of(tmp_path)) as (url, _):
        assert httpx.get(f"{url}/health").status_code == 200
        r = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert r.status_code == 404


def test_the_metrics_token_is_needed_when_set(metered: str) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}, AUTH):
        r = httpx.get(f"{metered}/metrics", headers=headers)
        assert r.status_code == 401, headers
        assert r.headers["content-type"].startswith("application/problem+json")
    scrape(metered)


def test_requests_bytes_signed_urls_and_durations_are_counted(metered: str) -> None:
    job = "metrics-" + secrets.token_hex(4)
    sizes = [3000, 70_000]
    before, _ = scrape(metered)
    with httpx.Client(base_url=metered, headers=AUTH, timeout=30) as c:
        ids = []
        for size in sizes:
            r = c.post(
                f"/fleet/jobs/{job}/artifacts",
                data={"kind": "build"},
                files={"file": ("out.bin", secrets.token_bytes(size), "application/octet-stream")},
            )
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
        fetched = c.get(f"/fleet/artifacts/{ids[1]}")
        assert fetched.status_code == 200
        assert c.get(f"/no/such/{ids[0]}").status_code == 404
        blob = httpx.get(fetched.json()["downloadUrl"], timeout=30)
        assert blob.status_code == 200 and len(blob.content) == sizes[1]
    after, text = scrape(metered)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    requests = "fleet_artifacts_requests_total"
    upload_route = "/fleet/jobs/{job_id}/artifacts"
    assert delta(requests, route=upload_route, method="POST", status="201") == 2
    assert delta(requests, route="/fleet/artifacts/{artifact_id}", method="GET", status="200") == 1
    assert delta(requests, route=UNMATCHED, method="GET", status="404") == 1
    assert delta(requests, route="/blobs/{key}", method="GET", status="200") == 1
    # The first scrape is counted too, once it ended; the second is still being served.
    assert delta(requests, route="/metrics", method="GET", status="200") == 1
    assert total(after, requests) - total(before, requests) == 6

    assert delta("fleet_artifacts_received_bytes_total", route=upload_route) >= sum(sizes)
    assert delta("fleet_artifacts_sent_bytes_total", route="/blobs/{key}") >= sizes[1]
    assert delta("fleet_artifacts_signed_urls_total", permission="r") >= 1

    # Every answered request has its duration observed, once.
    assert total(after, "fleet_artifacts_request_duration_seconds_count") == total(after, requests)
    counted = value(
        after, "fleet_artifacts_request_duration_seconds_count", route=upload_route, method="POST"
    )
    assert counted == value(after, requests, route=upload_route, method="POST", status="201")

    # Only this scrape is in flight; no upload or download is.
    assert value(after, "fleet_artifacts_requests_in_flight") == 1
    assert value(after, "fleet_artifacts_transfers_in_flight", kind="upload") == 0
    assert value(after, "fleet_artifacts_transfers_in_flight", kind="download") == 0

    # Label values are templates: no id, job or raw path in any of them.
    for raw in (job, *ids, "/no/such"):
        assert raw not in text


def test_the_transfer_routes_are_real_routes(tmp_path: Path) -> None:
    app = create_app(make_settings(None, tmp_path, METRICS="true"))
    served = {
        (str(getattr(m, "value", m)), route.path_format)
        for route in app.routes
        if isinstance(route, HTTPRoute)
        for m in route.methods
    }
    assert served >= UPLOAD_ROUTES
    assert served >= {("GET", route) for route in DOWNLOAD_ROUTES}


def test_sweeps_are_counted_by_outcome_and_step() -> None:
    metrics = Metrics()
    metrics.swept_once({"expired": ["a", "b"], "tiers": []})
    metrics.swept_once({"expired": ["c"], "errors": ["orphans: down"]})
    assert metrics.sweeps.labels("ok")._value.get() == 1
    assert metrics.sweeps.labels("partial")._value.get() == 1
    assert metrics.swept.labels("expired")._value.get() == 3
    assert b'fleet_artifacts_swept_items_total{step="errors"}' not in metrics.exposition()


def test_two_apps_in_one_process_keep_their_own_registries(tmp_path: Path) -> None:
    one = create_app(make_settings(None, tmp_path / "one", METRICS="true"))
    two = create_app(make_settings(None, tmp_path / "two", METRICS="true"))
    assert one.state.metrics.registry is not two.state.metrics.registry
    assert create_app(make_settings(None, tmp_path / "off")).state.metrics is None


def test_a_metrics_token_needs_metrics_on() -> None:
    base = {"FLEET_ARTIFACTS_TOKENS": f"{TOKEN_A}:prod-a"}
    with pytest.raises(SettingsError, match="METRICS is not true"):
        load_settings({**base, "FLEET_ARTIFACTS_METRICS_TOKEN": METRICS_TOKEN})
    with pytest.raises(SettingsError, match="at least 16"):
        load_settings({**base, "FLEET_ARTIFACTS_METRICS": "true", "FLEET_ARTIFACTS_METRICS_TOKEN": "short"})
    settings = load_settings({**base, "FLEET_ARTIFACTS_METRICS": "yes"})
    assert settings.metrics and settings.metrics_token is None


async def test_backend_unavailable_problems_are_counted_by_route() -> None:
    """A 503 whose problem type is backend-unavailable counts; another 503 (a busy archive) does not."""
    metrics = Metrics()

    def answering(slug: str) -> Any:
        async def app(scope: Any, receive: Any, send: Any) -> None:
            scope["path_template"] = "/fleet/artifacts/{artifact_id}"
            await send({"type": "http.response.start", "status": 503, "headers": []})
            body = b'{"type":"https://fleet-artifacts.dev/problems/' + slug.encode() + b'","status":503}'
            await send({"type": "http.response.body", "body": body})

        return app

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        pass

    for slug in ("backend-unavailable", "backend-unavailable", "busy"):
        scope = {"type": "http", "method": "GET", "path": "/fleet/artifacts/a1", "headers": []}
        await counting(answering(slug), metrics)(scope, receive, send)  # type: ignore[arg-type]
    route = "/fleet/artifacts/{artifact_id}"
    assert metrics.backend_errors.labels(route, "unavailable")._value.get() == 2
    assert metrics.requests.labels(route, "GET", "503")._value.get() == 3
