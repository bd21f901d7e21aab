"""Shared by the lifecycle tests: a movable clock, a server per backend variant, `gc` as a process."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from fleet_artifacts.app import create_app, open_stores
from fleet_artifacts.core.clock import utcnow
from fleet_artifacts.core.ports import BlobInfo
from fleet_artifacts.settings import Settings
from tests.conftest import TOKEN_A, make_settings
from tests.helpers import clean_env
from tests.servers import ThreadedServer

VARIANTS = ["azure-sqlite", "local-sqlite", "azure-cosmos"]
DAY = timedelta(days=1)


class Clock:
    """The server's clock: real time moved by ``offset`` (artifacts made in the past expire now)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return utcnow() + self.offset


@dataclass
class World:
    """One backend variant: its settings, a server on a movable clock, and a client as product A."""

    settings: Settings
    server: ThreadedServer
    clock: Clock
    client: httpx.Client

    def ago(self, days: float) -> None:
        """Make the server's clock read ``days`` ago (0: now)."""
        self.clock.offset = -timedelta(days=days)


def make_world(request: pytest.FixtureRequest, tmp: Path, **overrides: str) -> Iterator[World]:
    """A server for ``request.param`` (a VARIANTS entry) with the lifecycle settings ``overrides``."""
    blobs, pointers = str(request.param).split("-")
    azurite = request.getfixturevalue("azurite") if blobs == "azure" else None
    cosmos = request.getfixturevalue("cosmos_gateway") if pointers == "cosmos" else None
    settings = make_settings(azurite, tmp, cosmos=cosmos, **overrides)
    clock = Clock()
    server = ThreadedServer(create_app(settings, clock=clock)).start()
    client = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKEN_A}"}, timeout=60)
    try:
        yield World(settings, server, clock, client)
    finally:
        client.close()
        server.stop()


def env_of(settings: Settings) -> dict[str, str]:
    """The FLEET_ARTIFACTS_* environment that loads ``settings`` (for a CLI process)."""
    env = clean_env()
    for name, value in msgspec.structs.asdict(settings).items():
        if value is None:
            continue
        if name == "tokens":  # configured again by hash: the secrets themselves are not kept
            value = ",".join(
                f"sha256:{t.digest}:{t.product}:{'+'.join(sorted(s.value for s in t.scopes))}" for t in value
            )
        elif isinstance(value, bool):
            value = str(value).lower()
        elif isinstance(value, tuple):  # comma-separated lists (hosts, origins)
            if not value:
                continue
            value = ",".join(value)
        env[f"FLEET_ARTIFACTS_{name.upper()}"] = str(value)
    return env


def gc(settings: Settings, *args: str) -> list[str]:
    """Run ``fleet-artifacts gc ARGS`` against the settings' stores; its output lines (exit 0 asserted)."""
    run = subprocess.run(
        [sys.executable, "-m", "fleet_artifacts", "gc", *args],
        env=env_of(settings),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    return run.stdout.splitlines()


def gc_items(lines: list[str], step: str) -> set[str]:
    """The items a gc output names for ``step`` (``<step> <item>`` lines)."""
    return {line[len(step) + 1 :] for line in lines if line.startswith(step + " ")}


async def blob_info(settings: Settings, key: str) -> BlobInfo | None:
    """A blob's properties (tier included), read behind the service's back."""
    async with open_stores(settings) as (blobs, _):
        return await blobs.info(key)


async def blob_tags(settings: Settings, key: str) -> dict[str, str]:
    """A blob's index tags, read behind the service's back."""
    async with open_stores(settings) as (blobs, _):
        return await blobs.get_tags(key)


def when(value: Any) -> datetime:
    """A timestamp from a JSON answer."""
    return datetime.fromisoformat(str(value))
