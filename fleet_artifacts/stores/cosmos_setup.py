"""Create the Cosmos DB database and pointer container, idempotently.

``fleet-artifacts cosmos-init`` runs ``fleet_artifacts.cosmos_init.cosmos_init(settings)``; the app runs
``ensure_database_and_container`` at start-up only when
``FLEET_ARTIFACTS_COSMOS_INIT_ON_START`` is true. Either way an existing
container is never changed, only checked: Cosmos cannot change a container's
partition key, and rewriting an indexing policy re-indexes the whole container,
which is an operator's decision, not a side effect of a restart.

Creating databases and containers is a control-plane operation. With a master
key (or the emulator) it works here; with Entra ID (``DefaultAzureCredential``)
Cosmos's data-plane RBAC refuses it (403): provision the container with
Bicep/Terraform/``az cosmosdb sql container create`` using the same settings as
``INDEXING_POLICY`` and ``PARTITION_KEY_PATH`` below.

Example:
    >>> print(await cosmos_init(load_settings(os.environ)))  # doctest: +SKIP
    database fleet-artifacts: created; container pointers: created (partition key /jobId)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from azure.cosmos import PartitionKey
from azure.cosmos.aio import CosmosClient
from azure.cosmos.exceptions import CosmosResourceExistsError

from fleet_artifacts.core.errors import Unavailable

PARTITION_KEY_PATH = "/jobId"

# The one sort order of ``list``: newest first, id as the tie-break.
# Cosmos serves a two-field ORDER BY only from a composite index with the same
# paths in the same (or exactly the reversed) directions.
LIST_ORDER: list[dict[str, str]] = [
    {"path": "/createdAt", "order": "descending"},
    {"path": "/id", "order": "descending"},
]

# Opt-in indexing: only the paths queries filter or sort on are indexed, so
# writes of the other fields (fileName, blobKey, sha256...) cost no index RUs.
# ``/tags/*`` covers ``c.tags[@key] = @value`` for any tag key.
INDEXING_POLICY: dict[str, Any] = {
    "indexingMode": "consistent",
    "automatic": True,
    "includedPaths": [
        {"path": "/jobId/?"},
        {"path": "/productId/?"},
        {"path": "/status/?"},
        {"path": "/kind/?"},
        {"path": "/runId/?"},
        {"path": "/createdAt/?"},
        {"path": "/expiresAt/?"},  # sweepers: expired artifacts and stale uploads
        {"path": "/tier/?"},  # sweepers: automatic tier moves by age
        {"path": "/restoredAt/?"},
        {"path": "/id/?"},
        {"path": "/tags/*"},
    ],
    "excludedPaths": [{"path": "/*"}],
    "compositeIndexes": [LIST_ORDER],
}

Outcome = Literal["created", "exists"]


def container_problem(props: Mapping[str, Any], database: str, container: str) -> str | None:
    """Say why an existing container cannot hold pointers, or return None if it can.

    Args:
        props: The container's properties as Cosmos returns them (``container.read()``).
        database: Database id, for the message.
        container: Container id, for the message.

    Returns:
        A message for operators, or None when the partition key is ``/jobId`` and
        the composite index that ``list`` sorts by exists.
    """
    name = f"container {database}/{container}"
    paths = list((props.get("partitionKey") or {}).get("paths") or [])
    if paths != [PARTITION_KEY_PATH]:
        return (
            f"{name} is partitioned by {', '.join(paths) or 'nothing'}, not {PARTITION_KEY_PATH}; "
            "a partition key cannot be changed: create a new container (and copy the items over) "
            "or point FLEET_ARTIFACTS_COSMOS_CONTAINER at one partitioned by /jobId"
        )
    wanted = [(entry["path"], entry["order"] == "descending") for entry in LIST_ORDER]
    flipped = [(path, not descending) for path, descending in wanted]  # Cosmos reads an index both ways
    for composite in (props.get("indexingPolicy") or {}).get("compositeIndexes") or []:
        have = [(str(e.get("path")), str(e.get("order", "")).lower() == "descending") for e in composite]
        if have in (wanted, flipped):
            return None
    return (
        f"{name} lacks the composite index [/createdAt DESC, /id DESC] that listing sorts by; "
        "add it to the container's indexing policy (see fleet_artifacts.stores.cosmos_setup.INDEXING_POLICY)"
    )


async def ensure_database_and_container(
    client: CosmosClient, database: str, container: str
) -> dict[str, Any]:
    """Create the database and the pointer container unless they exist.

    Each resource is created with one request; a 409 means it exists (perhaps
    created by a concurrent run), so running this twice, or from several
    replicas at once, is safe. New containers get the partition key
    ``/jobId``, per-item TTL enabled with no default (``default_ttl=-1``) and
    ``INDEXING_POLICY``. An existing container is checked, never modified.

    Args:
        client: An open ``azure.cosmos.aio.CosmosClient``.
        database: Database id.
        container: Container id.

    Returns:
        ``{"database": "created" | "exists", "container": "created" | "exists",
        "partitionKey": "/jobId"}``.

    Raises:
        Unavailable: The existing container is partitioned by another path, or
            lacks the composite index (see ``container_problem``). SDK errors
            (auth, network) propagate for the caller to translate.
    """
    db_outcome: Outcome = "created"
    try:
        db = await client.create_database(database)
    except CosmosResourceExistsError:
        db, db_outcome = client.get_database_client(database), "exists"
    coll_outcome: Outcome = "created"
    try:
        coll = await db.create_container(
            container,
            partition_key=PartitionKey(path=PARTITION_KEY_PATH),
            default_ttl=-1,
            indexing_policy=INDEXING_POLICY,
        )
    except CosmosResourceExistsError:
        coll, coll_outcome = db.get_container_client(container), "exists"
    if coll_outcome == "exists":
        problem = container_problem(await coll.read(), database, container)
        if problem is not None:
            raise Unavailable(problem)
    return {"database": db_outcome, "container": coll_outcome, "partitionKey": PARTITION_KEY_PATH}
