"""Time and identity: the default clock and id source, replaceable in tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime


def utcnow() -> datetime:
    """Timezone-aware current UTC time (the default clock)."""
    return datetime.now(UTC)


def new_id() -> str:
    """A fresh artifact id: 32 lowercase hex digits."""
    return uuid.uuid4().hex
