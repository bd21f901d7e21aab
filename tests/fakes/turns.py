"""What every fake shares."""

from __future__ import annotations

import asyncio


async def turn() -> None:
    """Let other tasks run, as the I/O of a real adapter would."""
    await asyncio.sleep(0)
