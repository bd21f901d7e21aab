"""Share links over HTTP on every backend variant.

A link outlives every SAS it mints, and dies with a revoke, its expiry, or its artifact.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest

from fleet_artifacts.core.clock import utcnow
from tests.helpers import assert_problem, upload_raw
from tests.lifecycle_kit import VARIANTS, World, gc, gc_items, make_world, when


@pytest.fixture(scope="module", params=VARIANTS)
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """A server per variant whose signed URLs live one minute, and share links at most two days."""
    yield from make_world(
        request, tmp_path_factory.mktemp("shares"), sas_ttl_seconds="60", max_share_seconds=str(2 * 86400)
    )


@pytest.fixture
def w(world: World) -> Iterator[World]:
    """The module's world, its clock back at now after each test."""
    yield world
    world.ago(0)


def follow(url: str, method: str = "GET") -> httpx.Response:
    """Use a share link as anyone would: no token, redirects not followed."""
    return httpx.request(method, url, follow_redirects=False, timeout=30)


def test_a_share_link_outlives_every_signed_url_it_mints(w: World) -> None:
    c, job = w.client, "job-" + secrets.token_hex(4)
    data = secrets.token_bytes(2048)
    out = upload_raw(c, job, data, _ct="image/png", kind="screenshot", fileName="shot.png").json()
    where = f"/fleet/jobs/{job}/artifacts/{out['id']}/shares"
    made = c.post(where, json={"expiresIn": 86400, "disposition": "inline"})
    assert made.status_code == 201, made.text
    link = made.json()
    assert link["url"].startswith(w.server.url + "/s/") and link["artifactId"] == out["id"]
    secret = link["url"].rsplit(".", 1)[1]
    assert len(secret) >= 32 and secret not in link["id"]  # the id names the link, never its secret

    first = follow(link["url"])
    assert first.status_code == 302 and first.headers["cache-control"] == "no-store"
    assert httpx.get(first.headers["location"]).content == data
    assert follow(link["url"], "HEAD").status_code == 302
    locations = set()
    for hours in (1, 5, 23):  # many SAS lifetimes (60 s each) later, the link still works
        w.clock.offset = timedelta(hours=hours)
        again = follow(link["url"])
        assert again.status_code == 302
        locations.add(again.headers["location"])
    assert len(locations) == 3  # a fresh SAS every time
    w.ago(0)
    assert httpx.get(follow(link["url"]).headers["location"]).content == data

    [listed] = c.get(f"/fleet/artifacts/{out['id']}/shares").json()
    assert listed["id"] == link["id"] and listed["url"] is None
    assert c.delete(f"/fleet/shares/{link['id']}").status_code == 204
    assert_problem(follow(link["url"]), 404)
    assert_problem(c.delete(f"/fleet/shares/{link['id']}"), 404)
    assert c.get(f"/fleet/artifacts/{out['id']}/shares").json() == []


def test_a_link_dies_with_its_expiry_and_with_its_artifact(w: World) -> None:
    c, job = w.client, "job-" + secrets.token_hex(4)
    out = upload_raw(c, job, b"short-lived").json()
    short = c.post(f"/fleet/artifacts/{out['id']}/shares", json={"expiresIn": 3600}).json()
    long = c.post(f"/fleet/artifacts/{out['id']}/shares", json={"expiresIn": 7200}).json()
    w.clock.offset = timedelta(hours=1, seconds=1)
    assert_problem(follow(short["url"]), 404)
    assert follow(long["url"]).status_code == 302
    w.ago(0)
    assert c.post(f"/fleet/artifacts/{out['id']}/archive").status_code == 200
    assert_problem(follow(long["url"]), 409)  # archived: restore it first
    assert c.post(f"/fleet/artifacts/{out['id']}/restore").status_code == 200
    assert follow(long["url"]).status_code == 302
    assert c.delete(f"/fleet/jobs/{job}/artifacts/{out['id']}").status_code == 204
    assert_problem(follow(long["url"]), 404)


def test_share_requests_are_checked(w: World) -> None:
    c, job = w.client, "job-" + secrets.token_hex(4)
    out = upload_raw(c, job, b"x").json()
    where = f"/fleet/jobs/{job}/artifacts/{out['id']}/shares"
    bad_requests = [
        {"expiresIn": 0},
        {"expiresIn": 2 * 86400 + 1},
        {"expiresIn": "60"},
        {"expiresIn": 60, "disposition": "open"},
        {},
    ]
    for bad in bad_requests:
        assert_problem(c.post(where, json=bad), 400)
    assert c.get(where).json() == []  # nothing was made
    assert_problem(c.post(f"/fleet/jobs/{job}/artifacts/nope/shares", json={"expiresIn": 60}), 404)
    for forged in ("/s/x", "/s/" + "A" * 40, "/s/am9i." + "a" * 32):
        assert_problem(follow(w.server.url + forged), 404)


def test_the_sweep_drops_expired_links(w: World) -> None:
    c, job = w.client, "job-" + secrets.token_hex(4)
    out = upload_raw(c, job, b"swept links").json()
    w.ago(1)
    old = c.post(f"/fleet/artifacts/{out['id']}/shares", json={"expiresIn": 3600}).json()
    w.ago(0)
    live = c.post(f"/fleet/artifacts/{out['id']}/shares", json={"expiresIn": 3600}).json()
    dropped = gc_items(gc(w.settings, "--stale-uploads"), "shares")
    record = old["id"].split(".")[1]
    assert f"{job}/{record[:12]}" in dropped and live["id"].split(".")[1][:12] not in "".join(dropped)
    assert [link["id"] for link in c.get(f"/fleet/artifacts/{out['id']}/shares").json()] == [live["id"]]


def test_expires_in_sets_the_life_of_the_urls_in_an_answer_within_its_bound(w: World) -> None:
    c, job = w.client, "job-" + secrets.token_hex(4)
    out = upload_raw(c, job, b"timed").json()
    where = f"/fleet/jobs/{job}/artifacts/{out['id']}"

    def life(answer: dict[str, str]) -> float:
        return (when(answer["downloadUrlExpiresAt"]) - utcnow()).total_seconds()

    assert 50 < life(c.get(where).json()) <= 60  # the default here: SAS_TTL_SECONDS=60
    assert 3590 < life(c.get(where, params={"expiresIn": 3600}).json()) <= 3600
    [item] = c.get(f"/fleet/jobs/{job}/artifacts", params={"expiresIn": 7200}).json()["items"]
    assert 7190 < life(item) <= 7200
    redirect = c.get(where + "/content", params={"redirect": "true", "expiresIn": 300})
    assert redirect.status_code == 302 and httpx.get(redirect.headers["location"]).content == b"timed"
    for bad in ("0", "86401", "soon"):
        problem = assert_problem(c.get(where, params={"expiresIn": bad}), 400)
        assert problem["field"] == "expiresIn"
    too_long = c.get(f"/fleet/artifacts/{out['id']}", params={"expiresIn": "90000"})
    assert "86400" in str(assert_problem(too_long, 400)["detail"])  # the bound is named
