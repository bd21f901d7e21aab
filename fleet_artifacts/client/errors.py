"""The client's errors: every failure is a ``FleetError`` carrying a problem document.

Messages name the service's origin and the route's path at most: never a token, and
never a signed URL's query string (the signature is a credential too).
"""

from __future__ import annotations

import httpx
import msgspec

from fleet_artifacts.client.models import Problem

_STANDARD = {"type", "title", "status", "detail", "instance", "field"}


class FleetError(Exception):
    """A request failed: ``problem`` is the service's problem document (or one made for it).

    Attributes:
        problem: the RFC 9457 document (``status`` 0 when no HTTP answer came at all).
    """

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        super().__init__(self.message)

    @property
    def status(self) -> int:
        """HTTP status of the answer (0: no answer, e.g. connection refused)."""
        return self.problem.status

    @property
    def title(self) -> str:
        """Short summary of the problem type."""
        return self.problem.title

    @property
    def detail(self) -> str:
        """What went wrong with this request."""
        return self.problem.detail

    @property
    def type(self) -> str:
        """The problem type URI."""
        return self.problem.type

    @property
    def message(self) -> str:
        """One line for people: status, title and detail."""
        head = f"{self.status} {self.title}" if self.status else self.title
        return f"{head}: {self.detail}" if self.detail else head


class FleetConnectionError(FleetError):
    """No answer: the service could not be reached, or the connection broke (after retries)."""


class DigestMismatch(FleetError):
    """Bytes received or stored do not have the sha256 they should (nothing was kept)."""


def safe_location(url: httpx.URL | str) -> str:
    """``scheme://host:port/path`` of ``url``: no query string, so no signature."""
    parsed = httpx.URL(str(url))
    return str(parsed.copy_with(query=None, fragment=None, username=None, password=None))


def problem_of(response: httpx.Response) -> Problem:
    """The problem document of an error answer; one made from the status when the body is none."""
    body = response.content
    if body and response.headers.get("content-type", "").split(";")[0].strip().endswith("json"):
        try:
            raw = msgspec.json.decode(body)
        except msgspec.DecodeError:
            raw = None
        if isinstance(raw, dict):
            extra = {k: v for k, v in raw.items() if k not in _STANDARD}
            try:
                problem = msgspec.convert(
                    {k: v for k, v in raw.items() if k in _STANDARD}, Problem, strict=False
                )
            except msgspec.ValidationError:
                pass
            else:
                problem.extra = extra
                problem.status = problem.status or response.status_code
                return problem
    text = body[:200].decode("utf-8", "replace").strip() if body else ""
    return Problem(
        status=response.status_code,
        title=response.reason_phrase or "HTTP error",
        detail=text or f"{response.request.method} {safe_location(response.request.url)} failed",
    )


def connection_problem(origin: str, exc: Exception) -> Problem:
    """A problem document for a request that got no answer."""
    reason = str(exc) or type(exc).__name__
    return Problem(
        type="about:blank",
        title="connection failed",
        status=0,
        detail=f"cannot reach {safe_location(origin)}: {reason}",
    )
