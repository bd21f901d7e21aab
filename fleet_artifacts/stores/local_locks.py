"""Per-key locks of the local blob backend, held across the processes that share its data dir.

A key's commit, deletion, seal and sidecar change run under its lock, so each sees the
others whole. The locks are striped over 256 files (``<data dir>/locks/<2 hex digits>``).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path


class KeyLocks:
    """Exclusive locks on blob keys: an asyncio lock in this process, a file lock across processes."""

    def __init__(self, lock_root: Path) -> None:
        """Keep the lock files in ``lock_root`` (created if missing)."""
        self.lock_root = lock_root
        self.lock_root.mkdir(exist_ok=True)
        self._stripe_locks: dict[tuple[int, str], asyncio.Lock] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        """An exclusive lock on ``key`` across processes sharing the data dir (striped over 256 files).

        Within this process an asyncio lock queues the waiters; across processes the file lock
        is polled without blocking, so no waiter ever holds one of the loop's worker threads
        (a blocking flock in ``to_thread`` let a burst of PUTs to one URL starve the pool the
        lock holder needs to finish). Not reentrant: never take it again while holding it.
        """
        stripe = hashlib.sha256(key.encode()).hexdigest()[:2]
        # One asyncio lock per stripe and event loop (a lock belongs to the loop that uses it).
        loop_key = (id(asyncio.get_running_loop()), stripe)
        async with self._stripe_locks.setdefault(loop_key, asyncio.Lock()):
            fd = os.open(self.lock_root / stripe, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:  # another process holds it: look again soon
                        await asyncio.sleep(0.005)
                yield
            finally:
                os.close(fd)  # closing the descriptor releases the lock
