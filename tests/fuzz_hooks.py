"""Schemathesis hooks for ``tests/test_contract_fuzz.py``: stateful chains start with creates that work.

The document cannot say everything a create checks (an upload's query metadata must not
accompany a multipart body, a file name may not hold control characters, a share lives at
most MAX_SHARE_SECONDS, ...), so most generated creates are rightly refused with a 400 and a
chain would end at its first step. In the stateful phase only, the creates get a realistic
request; every later step is generated from the document, with the ids that the document's
links carry over from the earlier answers. The other phases keep fuzzing the creates.

Loaded by the schemathesis CLI through ``SCHEMATHESIS_HOOKS=tests.fuzz_hooks``.
"""

from __future__ import annotations

import re
from typing import Any

import schemathesis
from schemathesis.generation.meta import TestPhase

from fleet_artifacts.core.validation import ID_PATTERN

CHAIN_JOB = "fuzz-chain"
CHUNK = b"fuzzed session\n\n"  # the whole of every session the chains open
SHARES = (
    "POST /fleet/artifacts/{artifact_id}/shares",
    "POST /fleet/jobs/{job_id}/artifacts/{artifact_id}/shares",
)


@schemathesis.hook
def map_case(context: schemathesis.HookContext, case: schemathesis.Case[Any]) -> schemathesis.Case[Any]:
    """Make the creates valid in the stateful phase: a raw upload, a session and its chunk, a share."""
    if case.meta is None or case.meta.phase.name != TestPhase.STATEFUL:
        return case
    label = case.operation.label
    body = case.body if isinstance(case.body, dict) else {}
    if label == "POST /fleet/jobs/{job_id}/artifacts":
        case.media_type = "text/plain"
        case.body = b"fuzzed artifact\n"
        case.query = {"kind": "log", "fileName": "run.log"}
        case.headers.pop("Idempotency-Key", None)  # a key reused with other metadata is a 409
    elif label == "POST /uploads":
        job = body.get("jobId")  # a link's (the job of an earlier answer), else one of the chains' own
        job = job if isinstance(job, str) and re.fullmatch(ID_PATTERN, job) else CHAIN_JOB
        case.body = {"kind": "log", "fileName": "run.log", "jobId": job, "sizeBytes": len(CHUNK)}
        case.headers.pop("Idempotency-Key", None)
    elif label == "PATCH /uploads/{session_id}":
        # All of it in one chunk (a retry is welcome): complete then makes the artifact, 409 before.
        case.media_type = "application/octet-stream"
        case.body = CHUNK
        case.headers["Content-Range"] = f"bytes 0-{len(CHUNK) - 1}/{len(CHUNK)}"
    elif label in SHARES:
        case.body = {"expiresIn": 600, "disposition": body.get("disposition", "attachment")}
    return case
