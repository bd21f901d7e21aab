"""Readiness: can this replica serve now? Each store answers its cheap ``check`` within a deadline.

``GET /ready`` asks ``Readiness.check``; both checks run at once, each bounded by ``timeout``,
so the answer comes within about ``timeout`` whatever a backend does. Anyone may ask (the
probe needs no token), so concurrent asks share one run of the checks and an answer is reused
for ``reuse`` seconds: a flood of probes costs the backends at most one call each per interval.

A failing check is reported by its error's type and a short reason: the project's errors say
what failed in their own words (adapters keep secrets out of them); any other exception's
text could hold anything (a connection string, a signed URL), so only its type is told. URLs
and ``key=value`` secrets are scrubbed from what is kept all the same.

Example:
    >>> readiness = Readiness(blobs, pointers, timeout=2.0)  # doctest: +SKIP
    >>> (await readiness.check()).checks  # doctest: +SKIP
    {'blobs': 'ok', 'pointers': 'timed out after 2 s'}
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable

import msgspec

from fleet_artifacts.core.errors import ArtifactError
from fleet_artifacts.core.ports import BlobStore, PointerStore

log = logging.getLogger(__name__)

OK = "ok"
READY = "ready"
NOT_READY = "not ready"
REUSE_SECONDS = 1.0  # how long one run's answer serves later asks
MAX_REASON = 160
_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://\S+", re.IGNORECASE)
_SECRET = re.compile(
    r"\b(sig|accountkey|sharedaccesssignature|sharedaccesskey|key|token|password|secret)=[^;&\s]*",
    re.IGNORECASE,
)


class ReadyOut(msgspec.Struct, frozen=True):
    """The readiness answer: ``ready`` when every check says ``ok``, and what each one said."""

    status: str
    checks: dict[str, str]

    @property
    def ready(self) -> bool:
        """Whether every dependency answered ``ok``."""
        return self.status == READY

    def detail(self) -> str:
        """The failing dependencies and why, e.g. ``blobs: timed out after 2 s``."""
        return "; ".join(f"{name}: {said}" for name, said in self.checks.items() if said != OK)


def reason(exc: BaseException) -> str:
    """A short, secret-free account of a failed check: the error's type, and its detail if ours."""
    name = type(exc).__name__
    if not isinstance(exc, ArtifactError):
        return name  # a foreign exception's text is not ours to vet
    lines = exc.detail.strip().splitlines()
    text = _SECRET.sub(r"\1=…", _URL.sub("<url>", lines[0] if lines else ""))
    text = text if len(text) <= MAX_REASON else text[: MAX_REASON - 1] + "…"
    return f"{name}: {text}" if text else name


class Readiness:
    """The readiness probe's use case over the two stores."""

    def __init__(
        self, blobs: BlobStore, pointers: PointerStore, *, timeout: float, reuse: float = REUSE_SECONDS
    ) -> None:
        """Check ``blobs`` and ``pointers``, each within ``timeout`` s; an answer serves ``reuse`` s more."""
        self.timeout = timeout
        self._checks: dict[str, Callable[[], Awaitable[None]]] = {
            "blobs": blobs.check,
            "pointers": pointers.check,
        }
        self._reuse = reuse
        self._last: tuple[float, ReadyOut] | None = None
        self._running: asyncio.Task[ReadyOut] | None = None

    async def check(self) -> ReadyOut:
        """Whether both stores answer now (or did within the last ``reuse`` seconds)."""
        if self._last is not None and time.monotonic() - self._last[0] < self._reuse:
            return self._last[1]
        if self._running is None:
            self._running = asyncio.create_task(self._run())
        # Shielded: a caller that leaves (its client hung up) does not cancel the others' answer.
        return await asyncio.shield(self._running)

    async def _run(self) -> ReadyOut:
        try:
            said = await asyncio.gather(*(self._one(check) for check in self._checks.values()))
            checks = dict(zip(self._checks, said, strict=True))
            out = ReadyOut(status=READY if all(s == OK for s in said) else NOT_READY, checks=checks)
            if not out.ready:
                log.warning("not ready: %s", out.detail())
            self._last = (time.monotonic(), out)
            return out
        finally:
            self._running = None

    async def _one(self, check: Callable[[], Awaitable[None]]) -> str:
        try:
            await asyncio.wait_for(check(), self.timeout)
        except TimeoutError:
            return f"timed out after {self.timeout:g} s"
        except Exception as exc:  # any failure is an answer here, never a 500
            return reason(exc)
        return OK
