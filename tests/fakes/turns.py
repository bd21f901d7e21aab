"""What every fake shares."""

from __future__ import annotations

import asyncio


async def turn() -> None:
    """Let other tasks run, as the I/O of a real adapter would."""
    await asyncio.sleep(0)


class Probe:
    """A fake's readiness ``check``: it passes until a test says otherwise.

    ``error`` set: the check raises it (a backend that answers with a failure). ``stalled``: the
    check never answers (a backend that accepts the connection and goes quiet); the caller's
    deadline has to end it.
    """

    def __init__(self) -> None:
        self.error: Exception | None = None
        self.stalled = False

    async def check(self) -> None:
        """Pass, raise ``error``, or wait forever, as told."""
        await turn()
        if self.stalled:
            await asyncio.Event().wait()
        if self.error is not None:
            raise self.error
