"""The local backend's temp files: how they are named, and the sweep of those a killed write left.

Every write spools into ``.tmp-<uuid hex>`` beside its target (a blob's bytes, its sidecar, a
staged block), then renames it into place; a write that fails or is cancelled removes it. Only
a process killed mid-write leaves one behind. No key can name one (``local_files.check_key``
refuses the prefix), so every file under the blob root is a blob, a sidecar or a temp, and
neither the listing of committed blobs nor a read ever takes a temp for a blob.

A write in flight grows its temp at least every ``local_files.FLUSH_BYTES`` it receives, and
renames it within moments of its last byte, so the temp's mtime is when its writer last showed
life: the sweep removes only temps untouched since a cutoff that the caller puts far behind any
pause of a live write. If one were removed anyway (a client silent for longer than that, then
sending again), its write fails at the rename (``commit_files`` looks for the temp before it
touches the sidecar) and commits nothing; no blob is ever hurt.
"""

from __future__ import annotations

import logging
import os
import stat
import uuid
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

log = logging.getLogger(__name__)

TEMP_PREFIX = ".tmp-"


def temp_name() -> str:
    """A fresh temp file name: unique, so parallel writes to one target never share a file."""
    return f"{TEMP_PREFIX}{uuid.uuid4().hex}"


def temp_beside(target: Path) -> Path:
    """A fresh temp file name in ``target``'s directory (hidden from listings by its prefix)."""
    return target.with_name(temp_name())


def is_temp(name: str) -> bool:
    """Whether a file name is a temp's (no blob, sidecar or staged block is named so)."""
    return name.startswith(TEMP_PREFIX)


def sweep_temps(base: Path, roots: Sequence[Path], *, older_than: datetime, dry_run: bool) -> list[str]:
    """Remove the temp files under ``roots`` last modified before ``older_than``.

    Returns their paths relative to ``base`` (``blobs/fleet/…/.tmp-…``), those removed by this
    call only: a temp another sweep removed first, or that its write renamed meanwhile, is
    skipped. Symlinks are neither followed nor removed. A temp that cannot be removed is
    logged and left to the next sweep.
    """
    cutoff = older_than.timestamp()
    removed: list[str] = []
    for root in roots:
        for directory, _, names in os.walk(root):  # a missing root (no staging yet) yields nothing
            for name in names:
                if not is_temp(name):
                    continue
                path = Path(directory, name)
                try:
                    status = path.lstat()
                    if not stat.S_ISREG(status.st_mode) or status.st_mtime >= cutoff:
                        continue
                    if not dry_run:
                        path.unlink()
                except FileNotFoundError:
                    continue  # renamed into place or removed by another sweep since the walk saw it
                except OSError as exc:
                    log.warning("could not remove temp file %s: %s", path, exc.strerror or exc)
                    continue
                removed.append(path.relative_to(base).as_posix())
    return removed
