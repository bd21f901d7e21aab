"""Idempotent creates: the same Idempotency-Key never makes two artifacts.

A worker that retries a timed-out upload sends the same ``Idempotency-Key``.
The first request *claims* the key (a record in the pointer store, in the
job's partition) before doing any work, and records the artifact it made; a
retry then replays that artifact instead of creating another. The key is
scoped to the product and the job, kept for the retention window, and bound
to the request's metadata: the same key with other metadata is a 409.

Claims are leases: a request that died holding one (a crashed replica) stops
blocking its key after ``lease``. If a lease is taken over while its first
holder is in fact still working, that holder loses the compare-and-swap when
it tries to record its artifact, removes what it made, and answers 409, so
the key still names exactly one artifact.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import TypeVar

import msgspec

from fleet_artifacts.core.errors import Conflict, InvalidInput, NotFound, PreconditionFailed
from fleet_artifacts.core.ports import IdempotencyRecord, PointerStore, StoredRecord

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_KEY_LENGTH = 255


class KeyInUse(Conflict):
    """Another request holding the same key is still at work; retry after a moment."""


def check_key(key: str) -> str:
    """Return ``key`` if it is 1-255 printable ASCII characters."""
    if not key or len(key) > MAX_KEY_LENGTH or not (key.isascii() and key.isprintable()):
        raise InvalidInput(
            f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable ASCII characters",
            field="Idempotency-Key",
        )
    return key


def fingerprint(operation: str, metadata: Mapping[str, object]) -> str:
    """A digest of what the request asks for, to tell a retry from a reuse of the key."""
    canonical = msgspec.json.encode({"op": operation, **metadata}, order="sorted")
    return hashlib.sha256(canonical).hexdigest()


class Idempotency:
    """Runs creates at most once per (product, job, key) within the retention window."""

    def __init__(
        self,
        pointers: PointerStore,
        *,
        retention: timedelta,
        lease: timedelta = timedelta(minutes=15),
        clock: Callable[[], datetime],
    ) -> None:
        """Keep records in ``pointers`` for ``retention``; a claim blocks its key for ``lease``."""
        self._pointers = pointers
        self._retention = retention
        self._lease = lease
        self._clock = clock

    @staticmethod
    def record_id(product_id: str, key: str) -> str:
        """Where the key's record lives within its job's partition."""
        return "idem-" + hashlib.sha256(f"{product_id}\0{key}".encode()).hexdigest()[:40]

    async def run(
        self,
        *,
        product_id: str,
        job_id: str,
        key: str | None,
        operation: str,
        request: Mapping[str, object],
        create: Callable[[], Awaitable[T]],
        created_id: Callable[[T], str],
        replay: Callable[[str], Awaitable[T]],
        undo: Callable[[T], Awaitable[None]],
    ) -> tuple[T, bool]:
        """Create once per ``key`` (or just create, without one); return ``(result, replayed)``.

        ``operation`` and ``request`` (what the client asked for) make the fingerprint that
        tells a retry from a reuse of the key. ``create`` does the work; ``created_id`` names
        what it made; ``replay`` fetches that again for a retry; ``undo`` removes what
        ``create`` made when the key turned out to belong to another request.
        """
        if key is None:
            return await create(), False
        digest = fingerprint(operation, request)
        record_id = self.record_id(product_id, check_key(key))
        now = self._clock()
        mine = IdempotencyRecord(
            id=record_id,
            job_id=job_id,
            fingerprint=digest,
            claimed_at=now,
            expires_at=now + self._retention,
        )
        etag = await self._claim(mine, digest)
        if isinstance(etag, StoredRecord):  # completed earlier: replay it
            assert etag.record.artifact_id is not None
            try:
                return await replay(etag.record.artifact_id), True
            except NotFound:
                raise Conflict("the artifact created with this Idempotency-Key has been deleted") from None
        try:
            result = await create()
        except BaseException:
            await self._pointers.delete_record(job_id, record_id, etag=etag)  # free the key for a retry
            raise
        done = msgspec.structs.replace(mine, artifact_id=created_id(result))
        try:
            await self._pointers.put_record(done, etag=etag)
        except (PreconditionFailed, NotFound):
            log.warning("lost the lease on idempotency key record %s; undoing the duplicate", record_id)
            await undo(result)
            raise KeyInUse(
                "another request with this Idempotency-Key took over; retry to get its result"
            ) from None
        except BaseException:
            # The artifact exists but the key does not name it, so a retry would make a second
            # one: remove it and free the key, then let the error speak (a 503, typically).
            try:
                await undo(result)
                await self._pointers.delete_record(job_id, record_id, etag=etag)
            except Exception:
                log.exception("could not undo the artifact of unrecorded idempotency key %s", record_id)
            raise
        return result, False

    async def _claim(
        self, mine: IdempotencyRecord, fingerprint: str
    ) -> str | StoredRecord[IdempotencyRecord]:
        for _ in range(3):
            found = await self._pointers.get_record(mine.job_id, mine.id, IdempotencyRecord)
            if found is None:
                try:
                    return await self._pointers.put_record(mine, etag=None)
                except Conflict:
                    continue  # a concurrent first request: look again
            record, now = found.record, self._clock()
            if record.expires_at <= now:
                pass  # past the retention window: the key is free again
            elif record.fingerprint != fingerprint:
                raise Conflict("this Idempotency-Key was used for a different request")
            elif record.artifact_id is not None:
                return found
            elif record.claimed_at + self._lease > now:
                raise KeyInUse("a request with this Idempotency-Key is still in progress")
            try:
                return await self._pointers.put_record(mine, etag=found.etag)  # take the key over
            except (PreconditionFailed, NotFound):
                continue
        raise KeyInUse("a request with this Idempotency-Key is still in progress")
