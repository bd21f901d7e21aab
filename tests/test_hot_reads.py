"""The hot read path (routes/hot.py) answers plain pointer fetches exactly as the router does.

A request with an ``Origin`` header always goes through the router (with no CORS configured the
router's answer does not depend on it), so each request below is sent twice to one real server,
with and without ``Origin``, and the two answers are compared: status, headers, body. What may
differ is only what differs between any two requests: the request id, and a signed URL's expiry
and signature when the two fall in different seconds.

Then, in-process, that the hot path is taken at all: the router behind it is an ASGI app that
fails the test if it is called for a plain fetch.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fleet_artifacts.app import create_app
from fleet_artifacts.routes.hot import FETCH_KEYS, LIST_KEYS, hot_reads, plain
from tests.conftest import TOKEN_A, TOKEN_B, make_settings
from tests.servers import ThreadedServer

READ_ONLY = "token-read-only-" + "2" * 16
WRITE_ONLY = "token-write-only-" + "3" * 16
UNSTABLE = {"x-request-id", "date", "server"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedServer]:
    """The app on its default local backend, with read-only and write-only tokens besides A and B."""
    settings = make_settings(
        None,
        tmp_path_factory.mktemp("hot"),
        tokens=f"{TOKEN_A}:prod-a,{TOKEN_B}:prod-b,{READ_ONLY}:prod-a:read,{WRITE_ONLY}:prod-a:write",
    )
    srv = ThreadedServer(create_app(settings)).start()
    yield srv
    srv.stop()


def _comparable(response: httpx.Response) -> tuple[int, dict[str, str], Any]:
    headers = {k: v for k, v in response.headers.items() if k not in UNSTABLE}
    headers.pop("content-length", None)  # compared through the body (a URL's length may differ)
    body: Any = response.json() if response.content else None
    if isinstance(body, dict):
        body.pop("requestId", None)
        for item in [body, *body.get("items", ())]:
            _unsecond(item)
    return response.status_code, headers, body


def _unsecond(item: dict[str, Any]) -> None:
    """A pointer's signed URL without its expiry and signature, which change with the second."""
    if isinstance(item.get("downloadUrl"), str):
        url = urllib.parse.urlsplit(item["downloadUrl"])
        query = {k: v for k, v in urllib.parse.parse_qsl(url.query) if k not in ("se", "sig")}
        item["downloadUrl"] = (url.scheme, url.netloc, url.path, sorted(query.items()))
        item["downloadUrlExpiresAt"] = item["downloadUrlExpiresAt"][:16]  # the minute, not the second


def _upload(http: httpx.Client, job: str, name: str) -> dict[str, Any]:
    answer = http.post(
        f"/fleet/jobs/{job}/artifacts",
        params={"fileName": name, "kind": "log"},
        content=b"hot " * 100,
        headers={"Content-Type": "text/plain"},
    )
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


def test_plaines_answer_as_the_router_does(server: ThreadedServer) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        a = {"Authorization": f"Bearer {TOKEN_A}"}
        job = "job-" + secrets.token_hex(4)
        with httpx.Client(base_url=server.url, headers=a, timeout=30) as uploader:
            first = _upload(uploader, job, "one.log")
            archived = _upload(uploader, job, "two.log")
            archiving = uploader.post(f"/fleet/jobs/{job}/artifacts/{archived['id']}/archive")
            assert archiving.status_code == 200, archiving.text
        aid = first["id"]
        reader = {"Authorization": f"Bearer {READ_ONLY}"}
        cases: list[tuple[str, dict[str, str]]] = [
            (f"/fleet/jobs/{job}/artifacts/{aid}", a),
            (f"/fleet/artifacts/{aid}", a),
            (f"/fleet/jobs/{job}/artifacts/{aid}?disposition=inline", a),
            (f"/fleet/jobs/{job}/artifacts/{aid}?expiresIn=60&disposition=attachment", a),
            (f"/fleet/artifacts/{aid}?expiresIn=120", reader),
            (f"/fleet/jobs/{job}/artifacts/{archived['id']}", a),  # archived: no download URL
            (f"/fleet/jobs/{job}/artifacts/{aid}?expiresIn=0", a),  # 400, named expiresIn
            (f"/fleet/jobs/{job}/artifacts/{aid}?expiresIn=999999999", a),  # 400, beyond the maximum
            (f"/fleet/jobs/{job}/artifacts/{'0' * 32}", a),  # 404
            (f"/fleet/jobs/other-job/artifacts/{aid}", a),  # 404: not in that job
            (f"/fleet/artifacts/{aid}", {"Authorization": f"Bearer {TOKEN_B}"}),  # 404: another product's
            (f"/fleet/artifacts/{aid}", {}),  # 401
            (f"/fleet/artifacts/{aid}", {"Authorization": "Bearer not-a-token-at-all-000"}),  # 401
            (f"/fleet/artifacts/{aid}", {"Authorization": "Basic dXNlcjpwYXNz"}),  # 401
            (f"/fleet/artifacts/{aid}", {"Authorization": f"Bearer {WRITE_ONLY}"}),  # 403, names the scope
            (f"/fleet/jobs/{job}/artifacts", a),  # list pages from here on
            (f"/fleet/jobs/{job}/artifacts?limit=1&kind=log&expiresIn=60", a),
            (f"/fleet/jobs/{job}/artifacts?limit=1&continuationToken={{token}}", a),  # the next page
            (f"/fleet/jobs/{job}/artifacts?status=ARCHIVED&runId=none.1", reader),
            (f"/fleet/jobs/{job}/artifacts?tag=os:linux&tag=arch:x86-64", a),  # an empty page
            (f"/fleet/jobs/{job}/artifacts?continuationToken=bm9wZQ", a),  # 400: not a token of ours
            (f"/fleet/jobs/{job}/artifacts?tag=nocolon", a),  # 400, named tag
            (f"/fleet/jobs/{job}/artifacts?runId=.dot", a),  # 400, named runId
            (f"/fleet/jobs/{job}/artifacts", {"Authorization": f"Bearer {WRITE_ONLY}"}),  # 403
        ]
        token = http.get(f"/fleet/jobs/{job}/artifacts?limit=1", headers=a).json()["continuationToken"]
        cases = [(path.replace("{token}", token), headers) for path, headers in cases]
        statuses = []
        for path, headers in cases:
            assert plain(*_split(path)) is not None, path  # each case takes the hot path
            hot = http.get(path, headers=headers)
            routed = http.get(path, headers={**headers, "Origin": "http://dashboard.example"})
            assert _comparable(hot) == _comparable(routed), path
            statuses.append(hot.status_code)
        fetches = [200] * 6 + [400, 400, 404, 404, 404, 401, 401, 401, 403]
        assert statuses == fetches + [200] * 5 + [400] * 3 + [403]
        # The hot answer's URL downloads the bytes (its signature is good, not only its shape).
        url = http.get(f"/fleet/artifacts/{aid}", headers=a).json()["downloadUrl"]
        assert http.get(url).content == b"hot " * 100


def test_odd_requests_go_to_the_router(server: ThreadedServer) -> None:
    """What the hot path leaves alone still gets the router's answer (and parameter problems)."""
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {TOKEN_A}"}, timeout=30
    ) as http:
        job = "job-" + secrets.token_hex(4)
        aid = _upload(http, job, "odd.log")["id"]
        base = f"/fleet/jobs/{job}/artifacts/{aid}"
        odd = {
            f"{base}?disposition=sideways": 400,  # not a disposition
            f"{base}?disposition=inline&disposition=inline": 200,  # a repeat
            f"{base}?expiresIn=%36%30": 200,  # escapes
            f"{base}?unknown=1": 200,  # a parameter no fetch has
            f"{base}?expiresIn=": 400,  # empty
            f"{base}/": 200,  # a trailing slash
            f"/fleet/jobs/{job}/artifacts?limit=0": 400,  # out of range: the router's parameter problem
            f"/fleet/jobs/{job}/artifacts?limit=ten": 400,
            f"/fleet/jobs/{job}/artifacts?kind=movie": 400,
            f"/fleet/jobs/{job}/artifacts?status=GONE": 400,
            f"/fleet/jobs/{job}/artifacts?tag=os%3Alinux": 200,  # an escape
            f"/fleet/jobs/{job}/artifacts?limit=1&limit=2": 200,  # a repeat
            "/fleet/jobs/bad..id/artifacts/x": 400,  # an id the service refuses, with its field
        }
        for path, status in odd.items():
            assert plain(*_split(path)) is None, path
            answer = http.get(path)
            assert answer.status_code == status, (path, answer.text)
            if status == 400:
                assert answer.headers["content-type"] == "application/problem+json"


def test_what_the_router_judges_otherwise_goes_to_it(server: ThreadedServer) -> None:
    """Requests found in review to differ: each answered as the router answers it."""
    a = {"Authorization": f"Bearer {TOKEN_A}"}
    with httpx.Client(base_url=server.url, timeout=30) as http:
        job = "job-" + secrets.token_hex(4)
        with httpx.Client(base_url=server.url, headers=a, timeout=30) as uploader:
            aid = _upload(uploader, job, "review.log")["id"]
        # Two Authorization headers: the first decides, as the router's check reads it (B: not found).
        both = [("Authorization", f"Bearer {TOKEN_B}"), ("Authorization", f"Bearer {TOKEN_A}")]
        assert http.get(f"/fleet/artifacts/{aid}", headers=both).status_code == 404
        assert http.get(f"/fleet/artifacts/{aid}", headers=both[::-1]).status_code == 200
        # A limit msgspec refuses: a leading zero, and more digits than int() takes.
        for limit in ("007", "0" * 4400 + "5"):
            assert plain(f"/fleet/jobs/{job}/artifacts", f"limit={limit}".encode()) is None
            answer = http.get(f"/fleet/jobs/{job}/artifacts?limit={limit}", headers=a)
            assert answer.status_code == 400, answer.text[:200]
        # Another route's literal segment where a fetch has its id: that route's 405, before any token.
        answer = http.get(f"/fleet/jobs/{job}/artifacts/uploads")
        assert answer.status_code == 405 and "POST" in answer.headers["allow"]


def test_the_hot_path_reads_every_parameter_the_router_declares(tmp_path: Path) -> None:
    """Its key sets are the router's query parameters: one added to a fetch or list is learnt here too.

    A parameter the hot path does not know sends the request to the router (correct, only slower);
    a parameter it knows that the router no longer declares would be answered here and nowhere else.
    """
    schema = create_app(make_settings(None, tmp_path)).openapi_schema.to_schema()
    declared: dict[str, set[str]] = {}
    for path_item in schema["paths"].values():
        get = path_item.get("get") or {}
        names = {p["name"] for p in get.get("parameters", []) if p["in"] == "query"}
        declared[get.get("operationId", "")] = names
    assert declared["getJobArtifact"] == declared["getArtifact"] == set(FETCH_KEYS)
    assert declared["listArtifacts"] == set(LIST_KEYS)


def test_a_malformed_host_is_refused(tmp_path: Path) -> None:
    """``evil.com/x.example.com`` ends like a subdomain, but is no host: 400, never in a URL."""
    settings = make_settings(None, tmp_path, allowed_hosts="*.example.com")
    srv = ThreadedServer(create_app(settings)).start()
    try:
        with httpx.Client(base_url=srv.url, timeout=30) as http:
            for host in ("evil.com/x.example.com", "evil.com?.example.com", "user@x.example.com"):
                answer = http.get(
                    f"/fleet/artifacts/{'0' * 32}",
                    headers={"Host": host, "Authorization": f"Bearer {TOKEN_A}"},
                )
                assert answer.status_code == 400, (host, answer.text)
            good = http.get(
                f"/fleet/artifacts/{'0' * 32}",
                headers={"Host": "x.example.com", "Authorization": f"Bearer {TOKEN_A}"},
            )
            assert good.status_code == 404
    finally:
        srv.stop()


def _split(path: str) -> tuple[str, bytes]:
    url = urllib.parse.urlsplit(path)
    return urllib.parse.unquote(url.path), url.query.encode()


async def _asgi(
    app: Any,
    path: str,
    headers: list[tuple[bytes, bytes]],
    *,
    method: str = "GET",
    query: bytes = b"",
    body: bytes = b"",
) -> tuple[int, bytes]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", b"localhost"), *headers],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


@contextlib.asynccontextmanager
async def _lifespan(app: Any) -> AsyncIterator[None]:
    """Run the app's ASGI lifespan (its stores open) around the block."""
    events: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    started, stopped = asyncio.Event(), asyncio.Event()

    async def receive() -> dict[str, str]:
        return await events.get()

    async def send(message: dict[str, Any]) -> None:
        {"lifespan.startup.complete": started, "lifespan.shutdown.complete": stopped}.get(
            message["type"], asyncio.Event()
        ).set()

    task = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)
    )
    await events.put({"type": "lifespan.startup"})
    await asyncio.wait_for(started.wait(), 30)
    try:
        yield
    finally:
        await events.put({"type": "lifespan.shutdown"})
        await asyncio.wait_for(stopped.wait(), 30)
        await task


def test_the_hot_path_answers_without_the_router(tmp_path: Path) -> None:
    """Behind ``hot_reads``, a stand-in router that answers 599 shows which requests reached it."""

    async def run() -> None:
        litestar = create_app(make_settings(None, tmp_path))
        reached: list[str] = []

        async def router(scope: Any, receive: Any, send: Any) -> None:  # stands in for the real one
            reached.append(scope["path"])
            await send({"type": "http.response.start", "status": 599, "headers": []})
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        hot = hot_reads(router, litestar)
        auth = [(b"authorization", f"Bearer {TOKEN_A}".encode())]
        async with _lifespan(litestar):
            status, body = await _asgi(  # through the whole app, as served
                litestar,
                "/fleet/jobs/job-1/artifacts",
                [*auth, (b"content-type", b"text/plain")],
                method="POST",
                query=b"fileName=a.log&kind=log",
                body=b"in process",
            )
            assert status == 201, body
            aid = json.loads(body)["id"]
            status, body = await _asgi(hot, f"/fleet/jobs/job-1/artifacts/{aid}", auth)
            assert status == 200 and json.loads(body)["downloadUrl"].startswith("http://localhost/blobs/")
            status, body = await _asgi(hot, f"/fleet/jobs/job-1/artifacts/{'0' * 32}", auth)
            assert status == 404 and json.loads(body)["type"].endswith("/not-found")
            status, body = await _asgi(hot, f"/fleet/artifacts/{aid}", [])
            assert status == 401 and json.loads(body)["type"].endswith("/unauthenticated")
            assert reached == []  # all three answered in front of the router
            status, _ = await _asgi(hot, f"/fleet/artifacts/{aid}", [*auth, (b"origin", b"http://x")])
            assert (status, reached) == (599, [f"/fleet/artifacts/{aid}"])
            status, body = await _asgi(hot, "/fleet/jobs/job-1/artifacts", auth)  # a list page: here too
            assert status == 200 and [item["id"] for item in json.loads(body)["items"]] == [aid]
            assert len(reached) == 1
            status, _ = await _asgi(hot, "/fleet/jobs/job-1/artifacts/x/content", auth)  # not a hot path
            assert status == 599 and reached[-1] == "/fleet/jobs/job-1/artifacts/x/content"

    asyncio.run(run())
