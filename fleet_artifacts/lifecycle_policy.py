"""The Azure Storage lifecycle-management policy equivalent to the service's lifecycle settings.

For operators who prefer Azure to move tiers (and to keep a second line of defence behind the
sweeper). Lifecycle policies are an account setting (ARM), not a data-plane call: this module
only builds the JSON; ``az storage account management-policy create --policy @file`` applies it.
"""

from __future__ import annotations

import json
from typing import Any

from fleet_artifacts.core.keys import BLOB_PREFIX
from fleet_artifacts.settings import Settings


def policy(settings: Settings) -> dict[str, Any]:
    """The policy: tier moves by age (those configured) and a delete of untagged-to-keep blobs.

    The delete comes a day after the longest retention an artifact can have, and only for
    blobs tagged ``keep == false`` (lifecycle filters can match tags, not exclude them, so
    the service writes ``keep`` on every blob), so it never removes what the sweeper keeps.
    """
    prefix = f"{settings.blob_container}/{BLOB_PREFIX}"
    base: dict[str, Any] = {}
    for action, days in (
        ("tierToCool", settings.cool_after_days),
        ("tierToCold", settings.cold_after_days),
        ("tierToArchive", settings.archive_after_days),
    ):
        if days is not None:
            base[action] = {"daysAfterCreationGreaterThan": days}
    rules: list[dict[str, Any]] = []
    if base:
        rules.append(
            _rule("fleet-artifacts-tiers", {"blobTypes": ["blockBlob"], "prefixMatch": [prefix]}, base)
        )
    rules.append(
        _rule(
            "fleet-artifacts-expiry-backstop",
            {
                "blobTypes": ["blockBlob"],
                "prefixMatch": [prefix],
                "blobIndexMatch": [{"name": "keep", "op": "==", "value": "false"}],
            },
            {"delete": {"daysAfterCreationGreaterThan": settings.max_retention_days + 1}},
        )
    )
    return {"rules": rules}


def _rule(name: str, filters: dict[str, Any], base_blob: dict[str, Any]) -> dict[str, Any]:
    return {
        "enabled": True,
        "name": name,
        "type": "Lifecycle",
        "definition": {"filters": filters, "actions": {"baseBlob": base_blob}},
    }


def policy_json(settings: Settings) -> str:
    """The policy as indented JSON."""
    return json.dumps(policy(settings), indent=2)
