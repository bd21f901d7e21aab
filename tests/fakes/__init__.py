"""In-memory fakes of the storage ports, held to the same contract suites as the real adapters.

``MemoryPointerStore`` mirrors ``SqlitePointerStore`` and ``MemoryBlobStore`` mirrors
``LocalBlobStore`` (a ``HostedBlobStore``: its signed URLs are served by the app's own
routes), so core tests can run without files, sockets or threads. Stored state is kept
as encoded bytes or immutable values: nothing a caller gets back aliases what is stored.

Each operation checks and changes the stored state in one step, with no ``await`` in between
(a body is streamed in before that step), so it is atomic under asyncio; it yields once to the
event loop first, so concurrent callers interleave between operations as on a real backend.

Their readiness ``check`` passes until a test tells its ``probe`` to fail or to stall.
"""

from tests.fakes.blobs import MemoryBlobStore
from tests.fakes.pointers import MemoryPointerStore

__all__ = ["MemoryBlobStore", "MemoryPointerStore"]
