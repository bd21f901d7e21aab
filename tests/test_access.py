"""Scoped tokens over HTTP.

Every operation needs exactly its scope; hashed tokens; a tokens file that is re-read without a
restart; anonymous read; and `fleet-artifacts token new`.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fleet_artifacts.app import create_app
from fleet_artifacts.core.access import Scope, digest_of
from tests.conftest import TOKEN_A, make_settings
from tests.helpers import assert_problem, clean_env, upload_raw
from tests.lifecycle_kit import env_of
from tests.servers import Azurite, ThreadedServer

ONE_SCOPE = {scope: f"tok-{scope.value}-" + "0" * 16 for scope in Scope}
ADMIN = ONE_SCOPE[Scope.ADMIN]


@pytest.fixture(scope="module", params=["azure-sqlite", "local-sqlite", "azure-cosmos"])
def scoped(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server whose tokens each hold one scope (the reader's configured by its hash only)."""
    blobs, pointers = str(request.param).split("-")
    azurite = request.getfixturevalue("azurite") if blobs == "azure" else None
    cosmos = request.getfixturevalue("cosmos_gateway") if pointers == "cosmos" else None
    entries = [
        f"sha256:{digest_of(token)}:prod-a:{scope.value}"
        if scope is Scope.READ
        else f"{token}:prod-a:{scope.value}"
        for scope, token in ONE_SCOPE.items()
    ]
    settings = make_settings(
        azurite, tmp_path_factory.mktemp("scoped"), cosmos=cosmos, tokens=",".join(entries)
    )
    server = ThreadedServer(create_app(settings)).start()
    yield server.url
    server.stop()


def operations(url: str) -> list[tuple[str, str, list[dict[str, list[str]]] | None]]:
    """Every (method, path, security) of the OpenAPI document."""
    document = httpx.get(f"{url}/docs/openapi.json").json()
    return [
        (method.upper(), path, op.get("security"))
        for path, item in document["paths"].items()
        for method, op in item.items()
        if method in ("get", "head", "post", "put", "patch", "delete")
    ]


def concrete(path: str) -> str:
    """A path template with placeholder values (the guard answers before any lookup)."""
    return re.sub(r"\{[^}]+\}", "x1", path)


def test_every_operation_needs_exactly_its_scope(scoped: str) -> None:
    # The probes are anonymous; for the others the link, or the signature, is the capability.
    open_paths = {"/health", "/ready", "/blobs/{key}", "/s/{token}"}
    checked = 0
    with httpx.Client(base_url=scoped, timeout=30) as client:
        for method, path, security in operations(scoped):
            if path in open_paths:
                assert security is None, f"{method} {path} is anonymous and says so"
                continue
            assert security is not None and len(security) == 1, f"{method} {path} states no scope"
            [needed] = security[0]["bearer"]
            for scope, token in ONE_SCOPE.items():
                allowed = scope.value == needed or (needed == "share" and scope is Scope.ADMIN)
                r = client.request(
                    method, concrete(path), headers={"Authorization": f"Bearer {token}"}, content=b"{}"
                )
                if allowed:
                    assert r.status_code not in (401, 403), f"{scope} refused on {method} {path}: {r.text}"
                else:
                    assert r.status_code == 403, f"{scope} allowed on {method} {path}"
                    if method != "HEAD":
                        assert assert_problem(r, 403)["requiredScope"] == needed
            assert client.request(method, concrete(path)).status_code == 401
            checked += 1
    assert checked >= 28  # every guarded operation of the document was tried


def test_a_reader_reads_and_a_writer_writes_what_the_other_cannot(scoped: str) -> None:
    job = "job-" + secrets.token_hex(4)
    writer = httpx.Client(base_url=scoped, headers={"Authorization": f"Bearer {ONE_SCOPE[Scope.WRITE]}"})
    reader = httpx.Client(base_url=scoped, headers={"Authorization": f"Bearer {ONE_SCOPE[Scope.READ]}"})
    with writer, reader:
        made = upload_raw(writer, job, b"scoped")
        assert made.status_code == 201
        assert_problem(upload_raw(reader, job, b"nope"), 403)
        assert reader.get(f"/fleet/artifacts/{made.json()['id']}/content").content == b"scoped"
        assert_problem(writer.get(f"/fleet/artifacts/{made.json()['id']}"), 403)
        assert_problem(reader.delete(f"/fleet/artifacts/{made.json()['id']}"), 403)


def test_a_tokens_file_is_read_again_so_a_token_is_revoked_without_a_restart(
    azurite: Azurite, tmp_path: Path
) -> None:
    kept, revoked = "kept-token-" + "1" * 16, "revoked-token-" + "2" * 16
    tokens = tmp_path / "tokens"
    tokens.write_text(f"# fleet tokens\n{kept}:prod-a\nsha256:{digest_of(revoked)}:prod-a:read  # ci\n")
    settings = make_settings(None, tmp_path / "data", tokens_file=str(tokens))
    server = ThreadedServer(create_app(settings)).start()
    try:

        def status(token: str) -> int:
            return httpx.get(
                f"{server.url}/fleet/jobs/j/artifacts", headers={"Authorization": f"Bearer {token}"}
            ).status_code

        assert (status(kept), status(revoked)) == (200, 200)
        tokens.write_text(f"{kept}:prod-a\n")
        deadline = time.monotonic() + 10
        while status(revoked) != 401:
            assert time.monotonic() < deadline, "the revoked token still works"
            time.sleep(0.2)
        assert status(kept) == 200
        tokens.write_text("not a token line\n")  # a broken file keeps the tokens in force
        time.sleep(1.2)
        assert status(kept) == 200
    finally:
        server.stop()


def test_anonymous_requests_may_read_one_product_and_nothing_else(tmp_path: Path) -> None:
    settings = make_settings(None, tmp_path, anon_read_product="prod-a")
    server = ThreadedServer(create_app(settings)).start()
    try:
        with httpx.Client(base_url=server.url) as anonymous:
            assert anonymous.get("/fleet/jobs/j/artifacts").status_code == 200
            assert_problem(upload_raw(anonymous, "j", b"x"), 401)
            assert_problem(anonymous.delete("/fleet/jobs/j/artifacts"), 401)
    finally:
        server.stop()


def test_token_new_prints_a_token_once_and_the_hashed_line_that_configures_it(tmp_path: Path) -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "fleet_artifacts",
            "token",
            "new",
            "--product",
            "prod-a",
            "--scopes",
            "read+share",
        ],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    token = re.search(r"token:\s+(\S+)", run.stdout)[1]  # type: ignore[index]
    line = re.search(r"config:\s+(\S+)", run.stdout)[1]  # type: ignore[index]
    assert line == f"sha256:{digest_of(token)}:prod-a:read+share" and token not in line
    settings = make_settings(None, tmp_path, tokens=line)
    server = ThreadedServer(create_app(settings)).start()
    try:
        auth = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{server.url}/fleet/jobs/j/artifacts", headers=auth).status_code == 200
        assert httpx.delete(f"{server.url}/fleet/jobs/j/artifacts", headers=auth).status_code == 403
    finally:
        server.stop()
    bad = subprocess.run(
        [sys.executable, "-m", "fleet_artifacts", "token", "new", "--product", "p", "--scopes", "read+root"],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "unknown scope" in bad.stderr


def test_a_request_for_another_host_is_refused_so_no_url_follows_a_forged_host(tmp_path: Path) -> None:
    loopback = ThreadedServer(create_app(make_settings(None, tmp_path / "a"))).start()
    named = ThreadedServer(
        create_app(
            make_settings(None, tmp_path / "b", allowed_hosts="artifacts.example.com,*.ci.example.com")
        )
    ).start()
    try:
        auth = {"Authorization": f"Bearer {ONE_SCOPE[Scope.ADMIN]}"}
        for url, host, status in [
            (loopback.url, "evil.example.com", 400),
            (loopback.url, f"localhost:{loopback.port}", 401),  # allowed: then the token is checked
            (named.url, "artifacts.example.com", 401),
            (named.url, "runner-7.ci.example.com:443", 401),
            (named.url, "example.org", 400),
            (named.url, "ci.example.com.evil.org", 400),
        ]:
            r = httpx.get(f"{url}/fleet/jobs/j/artifacts", headers={**auth, "Host": host})
            assert r.status_code == status, (host, r.text)
            if status == 400:
                assert assert_problem(r, 400)["field"] == "Host"
    finally:
        loopback.stop()
        named.stop()
    refused = subprocess.run(
        [sys.executable, "-m", "fleet_artifacts", "serve", "--host", "0.0.0.0", "--port", "0"],
        env=clean_env() | {"FLEET_ARTIFACTS_DATA_DIR": str(tmp_path / "c")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2 and "FLEET_ARTIFACTS_ALLOWED_HOSTS" in refused.stderr


def test_cors_preflights_pass_for_allowed_origins_on_the_service_and_on_storage(
    azurite: Azurite, tmp_path: Path
) -> None:
    dash, other = "https://dash.example.com", "https://evil.example.net"
    settings = make_settings(azurite, tmp_path, cors_origins=dash)
    server = ThreadedServer(create_app(settings)).start()
    try:
        preflight = {
            "Access-Control-Request-Method": "PATCH",
            "Access-Control-Request-Headers": "authorization,if-match",
        }
        allowed = httpx.options(f"{server.url}/fleet/artifacts/x", headers={"Origin": dash, **preflight})
        assert allowed.status_code in (200, 204), allowed.text
        assert allowed.headers["access-control-allow-origin"] == dash
        assert "PATCH" in allowed.headers["access-control-allow-methods"]
        refused = httpx.options(f"{server.url}/fleet/artifacts/x", headers={"Origin": other, **preflight})
        assert "access-control-allow-origin" not in refused.headers
        token = {"Authorization": f"Bearer {TOKEN_A}"}
        made = upload_raw(httpx.Client(base_url=server.url, headers={**token, "Origin": dash}), "j", b"cors")
        assert made.status_code == 201 and made.headers["access-control-allow-origin"] == dash
        assert "ETag" in made.headers["access-control-expose-headers"]
        start = {"kind": "build", "fileName": "b"}
        ticket = httpx.post(f"{server.url}/fleet/jobs/j/artifacts/uploads", json=start, headers=token).json()
    finally:
        server.stop()

    def storage_preflight(origin: str) -> httpx.Response:
        return httpx.options(
            ticket["uploadUrl"],
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "PUT",
                "Access-Control-Request-Headers": "x-ms-blob-type,content-type",
            },
        )

    assert "access-control-allow-origin" not in storage_preflight(dash).headers  # no rules yet
    env = env_of(settings)
    printed = subprocess.run(
        [sys.executable, "-m", "fleet_artifacts", "storage-cors", "--origin", dash],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert printed.returncode == 0 and json.loads(printed.stdout)["cors"][0]["allowedOrigins"] == [dash]
    applied = subprocess.run(
        [sys.executable, "-m", "fleet_artifacts", "storage-cors", "--origin", dash, "--apply"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert applied.returncode == 0, applied.stderr
    ok = storage_preflight(dash)
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == dash
    assert "access-control-allow-origin" not in storage_preflight(other).headers
