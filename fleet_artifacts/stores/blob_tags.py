"""Azure's rules for blob index tags, checked before a request is sent or a tag is kept.

Every blob adapter holds tags to these rules: the local backend so that it refuses what
Azure would, the Azure adapter so that a bad tag set fails before the bytes of an upload
are staged (Azure checks ``x-ms-tags`` only at the commit, after the last block).

>>> check_tags({"os": "linux", "run": "attempt-1"})
{'os': 'linux', 'run': 'attempt-1'}
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from fleet_artifacts.core.errors import InvalidInput

MAX_TAGS = 10
MAX_TAG_KEY = 128
MAX_TAG_VALUE = 256
# Letters and digits are ASCII only: Azure refuses "é" in a tag.
_TAG_CHARS = re.compile(r"[a-zA-Z0-9 +\-./:=_]*")


def check_tags(tags: Mapping[str, str] | None) -> dict[str, str]:
    """Return ``tags`` as a plain dict (empty for None); InvalidInput if Azure would refuse them."""
    checked = dict(tags or {})
    if len(checked) > MAX_TAGS:
        raise InvalidInput(f"a blob carries at most {MAX_TAGS} index tags, not {len(checked)}", field="tags")
    for key, value in checked.items():
        if not 1 <= len(key) <= MAX_TAG_KEY or len(value) > MAX_TAG_VALUE:
            raise InvalidInput(
                f"index tag {key[:40]!r}: keys are 1-{MAX_TAG_KEY} characters, values 0-{MAX_TAG_VALUE}",
                field="tags",
            )
        if not _TAG_CHARS.fullmatch(key) or not _TAG_CHARS.fullmatch(value):
            raise InvalidInput(
                f"index tag {key[:40]!r}: only letters, digits, space and + - . / : = _ are allowed",
                field="tags",
            )
    return checked
