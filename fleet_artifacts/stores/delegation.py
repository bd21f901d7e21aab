"""A cache for Azure user delegation keys.

With Entra ID auth (an account URL and DefaultAzureCredential) a download SAS
is signed with a *user delegation key* fetched from the storage account. A key
is valid for at most seven days and each fetch is a network call, so the key is
fetched once, shared by every request, and refreshed well before it expires.
Every SAS is signed with a key that outlives it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Generic, TypeVar

from fleet_artifacts.core.clock import utcnow

KeyT = TypeVar("KeyT")

# Fetch(start, expiry) -> key; the Azure adapter passes
# BlobServiceClient.get_user_delegation_key.
Fetch = Callable[[datetime, datetime], Awaitable[KeyT]]


class DelegationKeyCache(Generic[KeyT]):
    """Hands out a delegation key valid past a requested instant.

    Example:
        >>> cache = DelegationKeyCache(service.get_user_delegation_key)  # doctest: +SKIP
        >>> key = await cache.key_valid_until(sas_expiry)               # doctest: +SKIP
    """

    def __init__(
        self,
        fetch: Fetch[KeyT],
        *,
        lifetime: timedelta = timedelta(hours=24),
        clock: Callable[[], datetime] = utcnow,
        backdate: timedelta = timedelta(minutes=15),
    ) -> None:
        if lifetime > timedelta(days=7):
            raise ValueError("Azure caps user delegation keys at seven days")
        self._fetch = fetch
        self._lifetime = lifetime
        self._clock = clock
        self._backdate = backdate
        self._key: KeyT | None = None
        self._expires_at: datetime | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0

    @property
    def expires_at(self) -> datetime | None:
        """Expiry of the cached key, if any."""
        return self._expires_at

    def cached(self, until: datetime) -> KeyT | None:
        """The cached key if it outlives ``until`` and is not due for refresh, else None.

        A caller signing on every request tries this before awaiting ``key_valid_until``.
        """
        # Refresh once less than half the lifetime is left, so a slow or failed
        # refresh never strands requests with a key about to lapse.
        if self._key is None or self._expires_at is None:
            return None
        if self._expires_at - self._lifetime / 2 <= self._clock() or self._expires_at <= until:
            return None
        return self._key

    async def key_valid_until(self, until: datetime) -> KeyT:
        """Return a key whose validity extends past ``until``, fetching if needed."""
        if (key := self.cached(until)) is not None:
            return key
        async with self._lock:  # one fetch at a time; waiters reuse its result
            if (key := self.cached(until)) is not None:
                return key
            now = self._clock()
            expires_at = max(now + self._lifetime, until + timedelta(minutes=5))
            if expires_at > now + timedelta(days=7):
                raise ValueError("a SAS cannot outlive a seven-day delegation key")
            key = await self._fetch(now - self._backdate, expires_at)
            self.fetches += 1
            self._key, self._expires_at = key, expires_at
            return key
