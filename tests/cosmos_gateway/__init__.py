"""A test-only Cosmos DB NoSQL gateway the real ``azure-cosmos`` SDK can talk to.

It exists because the official emulator needs Docker. It checks master-key
signatures, keys items by (partition key, id), enforces etags and TTL, and runs a
small SQL subset server-side; anything outside that subset fails loudly with
400/substatus 1004 instead of being approximated. It also serves atomic
transactional batches (``batch.py``) and the latest-version change feed with
per-container LSNs (``changefeed.py``, scoped by effective partition key via ``epk.py``).

Example:
    >>> with CosmosGateway() as gw:  # doctest: +SKIP
    ...     client = CosmosClient(gw.url, EMULATOR_KEY)
"""

from .auth import EMULATOR_KEY
from .errors import GatewayError
from .gateway import CosmosGateway, Fault
from .stats import GatewayStats, QueryRecord

__all__ = ["EMULATOR_KEY", "CosmosGateway", "Fault", "GatewayError", "GatewayStats", "QueryRecord"]
