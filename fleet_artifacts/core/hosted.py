"""The port of a blob store whose signed URLs this service serves itself (the local backend)."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterable, Awaitable, Callable, Mapping

from fleet_artifacts.core.ports import BlobStore, BlobWritten

# Asked at the moment a write through a signed URL would land: may it still?
MayCommit = Callable[[], Awaitable[bool]]


class HostedBlobStore(BlobStore):
    """A BlobStore whose signed URLs this service serves itself (the local backend).

    Its ``sign_read_url`` and ``sign_write_url`` return root-relative URLs under the
    prefix the app gave it; ``routes/`` serves them (GET, HEAD, and the block-blob
    PUT protocol that the Azure SDK speaks) and anchors them to the public base URL.
    """

    @abc.abstractmethod
    def verify_url(self, key: str, needed: str, query: Mapping[str, str], *, now: float) -> dict[str, str]:
        """Check that a signed URL's ``query`` grants ``needed`` on ``key`` at ``now`` (Unix seconds).

        Returns the signed parameters (``rscd``, ``rsct``, ``sp``, ``se``); SignatureRejected if
        the URL was not signed here, was altered, lacks the permission or expired; InvalidInput
        if ``key`` cannot name a blob of this store.
        """

    @abc.abstractmethod
    async def stage_block(
        self, key: str, block_id: bytes, chunks: AsyncIterable[bytes], *, limit: int, declared: int | None
    ) -> None:
        """Put Block: stage ``chunks`` as block ``block_id`` of ``key``; a later stage of the id wins.

        InvalidInput if the id's base64 length differs from the other staged ids'; Conflict past
        MAX_STAGED_BLOCKS ids; PayloadTooLarge(MAX_BLOCK_BYTES) for a block past that, and
        PayloadTooLarge(limit) when the staged blocks (other ids) plus this one (``declared``, or
        what arrives) exceed ``limit``. Nothing is staged under the id when it raises.
        """

    @abc.abstractmethod
    async def put_blob(
        self, key: str, chunks: AsyncIterable[bytes], *, content_type: str, limit: int, may_commit: MayCommit
    ) -> BlobWritten:
        """Put Blob through a write URL: ``write``, then drop what was staged, as Azure does.

        The bytes become the blob only if, at the moment they would, ``key`` is not sealed and
        ``may_commit()`` (asked then, excluding ``seal`` meanwhile) still says yes; otherwise
        SignatureRejected and nothing changes.
        """

    @abc.abstractmethod
    async def commit_block_list(
        self,
        key: str,
        entries: list[tuple[str, bytes]],
        *,
        content_type: str,
        limit: int,
        may_commit: MayCommit,
    ) -> BlobWritten:
        """Put Block List: commit the staged blocks named by ``entries`` in order, then drop all staged.

        ``entries`` are (``Latest`` | ``Uncommitted`` | ``Committed``, block id). InvalidInput for
        ``Committed`` (no committed blocks are kept) or an id not staged; PayloadTooLarge(limit)
        when the blocks add up past ``limit`` (nothing committed then). Committed only while
        unsealed and ``may_commit()``, as ``put_blob``.
        """
