"""The audit trail of a real `serve` process.

One JSON line per signed URL and security event, and never a token, a signature or a signed
URL in the log.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx

from fleet_artifacts.core.access import digest_of
from tests.conftest import TOKEN_A
from tests.helpers import clean_env
from tests.servers import Azurite, free_port, wait_for_port

READER = "audit-reader-token-" + "7" * 16


def test_one_line_per_signed_url_and_security_event_and_no_secret(azurite: Azurite, tmp_path: Path) -> None:
    port = free_port()
    env = clean_env() | {
        "FLEET_ARTIFACTS_TOKENS": f"{TOKEN_A}:prod-a,sha256:{digest_of(READER)}:prod-a:read",
        "FLEET_ARTIFACTS_AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string,
        "FLEET_ARTIFACTS_BLOB_CONTAINER": "audit" + secrets.token_hex(4),
        "FLEET_ARTIFACTS_DATA_DIR": str(tmp_path),
        "FLEET_ARTIFACTS_SWEEP_INTERVAL_SECONDS": "0",
    }
    log_path = tmp_path / "serve.log"
    secrets_seen: set[str] = {TOKEN_A, READER}
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fleet_artifacts", "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_port(port, proc=proc)
            base = f"http://127.0.0.1:{port}"
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN_A}"}) as c:
                made = [
                    c.post(
                        "/fleet/jobs/j/artifacts", params={"kind": "log", "fileName": f"{n}"}, content=b"x"
                    )
                    for n in range(3)
                ]  # 3 URLs signed
                ids = [r.json()["id"] for r in made]
                items = c.get("/fleet/jobs/j/artifacts").json()["items"]  # 3 more
                share = c.post(f"/fleet/artifacts/{ids[0]}/shares", json={"expiresIn": 600}).json()
                followed = httpx.get(share["url"], follow_redirects=False)  # share.used + 1 signed
                start = {"kind": "build", "fileName": "b"}
                ticket = c.post("/fleet/jobs/j/artifacts/uploads", json=start).json()
                assert c.delete(f"/fleet/shares/{share['id']}").status_code == 204
                assert c.delete(f"/fleet/artifacts/{ids[1]}").status_code == 204
                reader = {"Authorization": f"Bearer {READER}"}
                assert httpx.delete(f"{base}/fleet/artifacts/{ids[2]}", headers=reader).status_code == 403
                unknown = {"Authorization": "Bearer nope"}
                assert httpx.get(f"{base}/fleet/jobs/j/artifacts", headers=unknown).status_code == 401
            urls = [item["downloadUrl"] for item in items]
            for url in [*urls, followed.headers["location"], ticket["uploadUrl"]]:
                secrets_seen.add(parse_qs(urlsplit(url).query)["sig"][0])
                secrets_seen.add(urlsplit(url).query)
            secrets_seen.add(share["url"].rsplit("/", 1)[1])
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    log = log_path.read_text(errors="replace")
    for secret in secrets_seen:
        assert secret not in log, "a secret reached the log"
    lines = [json.loads(line) for line in log.splitlines() if line.startswith('{"event"')]
    events = [line["event"] for line in lines]
    reads = [line for line in lines if line["event"] == "url.signed" and line["permission"] == "r"]
    assert len(reads) == 3 + 3 + 1
    assert events.count("url.signed") == 8  # and the direct upload's write URL (cw)
    for name in ("share.created", "share.used", "share.revoked", "artifact.deleted"):
        assert events.count(name) == 1, (name, events)
    refused = [line for line in lines if line["event"] == "token.refused"]
    assert [(r["status"], r.get("scope")) for r in refused] == [(403, "delete"), (401, None)]
    assert refused[0]["token"] == "sha256:" + digest_of(READER)[:12]
    admin = "sha256:" + digest_of(TOKEN_A)[:12]
    assert all(line["actor"] == admin for line in reads[:6])
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT.*", line["time"]) for line in lines)
