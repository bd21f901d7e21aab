"""``fleet-artifacts cosmos-init``: create the Cosmos DB database and pointer container if missing.

A thin entry point over ``fleet_artifacts.stores.cosmos_setup`` (where the partition key,
the indexing policy and the checks of an existing container are defined), kept under
this module name for users who call it from Python.

Example:
    >>> print(await cosmos_init(load_settings(os.environ)))  # doctest: +SKIP
    database fleet-artifacts: created; container pointers: created (partition key /jobId)
"""

from __future__ import annotations

from fleet_artifacts.settings import Settings
from fleet_artifacts.stores.cosmos import CosmosPointerStore
from fleet_artifacts.stores.cosmos_setup import (
    INDEXING_POLICY,
    PARTITION_KEY_PATH,
    ensure_database_and_container,
)

__all__ = ["INDEXING_POLICY", "PARTITION_KEY_PATH", "cosmos_init", "ensure_database_and_container"]


async def cosmos_init(settings: Settings) -> str:
    """Create the configured database and container; return a one-line summary.

    Opens its own client from ``settings`` (key or Entra ID, as the service
    would) and closes it before returning.

    Args:
        settings: Uses ``cosmos_endpoint``, ``cosmos_key``, ``cosmos_database``,
            ``cosmos_container`` and ``azure_retry_total``.

    Returns:
        For example ``database fleet-artifacts: exists; container pointers:
        created (partition key /jobId)``.

    Raises:
        SettingsError: ``FLEET_ARTIFACTS_COSMOS_ENDPOINT`` is not set.
        Unavailable: Cosmos DB is unreachable, refused the credentials, or the
            existing container is unusable; the message says which.
    """
    store = CosmosPointerStore.from_settings(settings)
    try:
        report = await store.initialise()
    finally:
        await store.close()
    return (
        f"database {settings.cosmos_database}: {report['database']}; "
        f"container {settings.cosmos_container}: {report['container']} "
        f"(partition key {report['partitionKey']})"
    )
