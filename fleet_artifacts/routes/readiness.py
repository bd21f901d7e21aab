"""``GET /ready``: the readiness probe, anonymous like ``/health``.

``/health`` says the process answers HTTP (liveness: restart it if not); ``/ready`` says whether
it can serve now, both stores answering their checks (``core.readiness``), so a load balancer
sends it traffic. The app keeps the ``Readiness`` beside the ``Services`` (``app.state.readiness``).
"""

from __future__ import annotations

from typing import Any

from litestar import Response, get
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec

from fleet_artifacts.core.readiness import Readiness, ReadyOut
from fleet_artifacts.routes.deps import AnyRequest
from fleet_artifacts.routes.problems import PROBLEM_JSON, Problem, problem

RETRY_AFTER = 5  # seconds: about how often a probe asks anyway
_NO_STORE = {"Cache-Control": "no-store"}  # an answer about now, never one to keep


class NotReady(Problem, kw_only=True):
    """The 503 problem document of ``/ready``: what each dependency's check said."""

    checks: dict[str, str]


DESCRIPTION = """Readiness, no token: Blob Storage and the pointer store each answer a cheap
check (nothing is written) within `FLEET_ARTIFACTS_READY_TIMEOUT_SECONDS` (2 s), run at once, so
the answer comes within about that long. 200 when both do; otherwise 503 with `Retry-After` and
a problem whose `detail` names each failing dependency and why (`blobs: timed out after 2 s`),
its `checks` what each said. Concurrent probes share one run, and an answer serves the probes of
the next second. `/health` is the liveness probe: it touches no dependency."""


def readiness_of(state: State) -> Readiness:
    """The ``Readiness`` of a running app."""
    readiness = state.readiness
    assert isinstance(readiness, Readiness)
    return readiness


@get(
    "/ready",
    operation_id="readiness",
    tags=["health"],
    responses={
        200: ResponseSpec(
            data_container=ReadyOut, description="both stores answered their checks", generate_examples=False
        ),
        503: ResponseSpec(
            data_container=NotReady,
            description="a store failed its check or did not answer in time; retry after Retry-After",
            media_type=PROBLEM_JSON,
            generate_examples=False,
        ),
    },
    description=DESCRIPTION,
)
async def ready(request: AnyRequest) -> Response[Any]:
    """Anonymous readiness probe."""
    out = await readiness_of(request.app.state).check()
    if out.ready:
        return Response(out, headers=_NO_STORE)
    headers = {"Retry-After": str(RETRY_AFTER), **_NO_STORE}
    return problem(
        503, out.detail(), slug="not-ready", instance=request.url.path, headers=headers, checks=out.checks
    )
