"""Random session operation sequences (hypothesis) against the real service, checked against a model.

Invariants: a completed artifact is exactly the bytes the service accepted for each
range; a chunk is accepted iff it repeats a stored chunk with the same bytes or
touches no stored byte; an aborted session leaves no artifact and no blob.
"""

from __future__ import annotations

import asyncio
import secrets

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleet_artifacts.settings import Settings
from tests.helpers import blob_names


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_session_operations_keep_the_invariants(
    client: httpx.Client, settings: Settings, data: st.DataObject
) -> None:
    payload = data.draw(st.binary(min_size=1, max_size=3000), label="payload")
    total = len(payload)
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, total - 1)), max_size=4), label="cuts") - {total})
    segments = list(zip([0, *cuts], [*cuts, total], strict=True))
    job_id = "prop-" + secrets.token_hex(5)
    announce = data.draw(st.booleans(), label="announce size")
    body = {
        "jobId": job_id,
        "kind": "data",
        "fileName": "p.bin",
        **({"sizeBytes": total} if announce else {}),
    }
    session = client.post("/uploads", json=body).json()
    stored: dict[tuple[int, int], bytes] = {}  # (start, length) -> accepted bytes
    state = "open"

    for _ in range(data.draw(st.integers(1, 10), label="steps")):
        action = data.draw(
            st.sampled_from(["send", "send", "send", "send", "complete", "abort"]), label="action"
        )
        if action == "send":
            if data.draw(st.booleans(), label="segment"):
                start, end = data.draw(st.sampled_from(segments), label="range")
            else:
                start = data.draw(st.integers(0, total - 1), label="start")
                end = data.draw(st.integers(start + 1, total), label="end")
            chunk = payload[start:end]
            if data.draw(st.integers(0, 4), label="corrupt") == 0:
                chunk = bytes(b ^ 0x5A for b in chunk)
            r = client.patch(
                f"/uploads/{session['id']}",
                content=chunk,
                headers={"Content-Range": f"bytes {start}-{end - 1}/{total}"},
            )
            if state != "open":
                assert r.status_code == (409 if state == "completed" else 404), r.text
                continue
            exact = stored.get((start, end - start))
            overlaps = any(s < end and start < s + n for (s, n) in stored)
            if exact is not None:
                assert r.status_code == (200 if exact == chunk else 409), r.text
            elif overlaps:
                assert r.status_code == 409, r.text
            else:
                assert r.status_code == 200, r.text
                stored[(start, end - start)] = chunk
        elif action == "complete":
            r = client.post(f"/uploads/{session['id']}/complete")
            covered = sum(n for (_, n) in stored) == total
            if state == "completed":
                assert r.status_code == 201 and r.json()["id"] == session["artifactId"], r.text
            elif state == "aborted":
                assert r.status_code == 404, r.text
            elif covered:
                assert r.status_code == 201, r.text
                expected = b"".join(stored[key] for key in sorted(stored))
                assert r.json()["sizeBytes"] == total
                got = client.get(f"/fleet/artifacts/{r.json()['id']}/content").content
                assert got == expected  # never anything but the accepted bytes
                state = "completed"
            else:
                assert r.status_code == 409, r.text
        else:
            r = client.delete(f"/uploads/{session['id']}")
            assert r.status_code == (404 if state == "aborted" else 204), r.text
            if state == "completed":  # dropping a completed session keeps its artifact
                assert client.get(f"/fleet/artifacts/{session['artifactId']}").status_code == 200
            state = "aborted"

    completed_once = client.get(f"/fleet/artifacts/{session['artifactId']}").status_code == 200
    if not completed_once:
        client.delete(f"/uploads/{session['id']}")  # abort whatever is left
        assert client.get(f"/fleet/jobs/{job_id}/artifacts").json()["items"] == []
        assert asyncio.run(blob_names(settings, f"fleet/prod-a/{job_id}/")) == []
