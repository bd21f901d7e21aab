"""A job's artifacts as the entries of one archive: which, in what order, under which names.

``JobArchives.open`` lists the job (the caller's product; narrowed by kind and runId) through
the pointer store's pages and keeps what a reader may download: ACTIVE and not past
``expiresAt`` (a RESTORING one whose blob is back counts, as ``Kernel.visible`` settles it).
ARCHIVED and RESTORING ones are counted as skipped: their bytes are offline. Nothing matching
is NotFound (as a missing artifact's download is); only offline ones is Archived (409, as the
content proxy answers for one).

``Archive.entries`` then yields one ``ArchiveEntry`` per artifact, oldest first (createdAt,
then id), each reading its blob only when the archive writer gets to it: memory stays flat
whatever the job's size. The entry's name is the fileName made safe to extract (no path, no
device name) and unique within the archive (``report (2).txt``). A blob that is gone (a
concurrent delete) or offline when its turn comes is skipped before its entry starts; one that
fails or changes length part-way raises, so the writer stops and the transfer is cut short:
never a complete-looking archive with a wrong entry. The zip format itself is the HTTP
layer's business (``routes/archive.py``); nothing here knows it.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from datetime import datetime

import msgspec

from fleet_artifacts.core.errors import Archived, NotFound
from fleet_artifacts.core.kernel import Kernel
from fleet_artifacts.core.models import VISIBLE, ArtifactKind, ArtifactStatus, Pointer
from fleet_artifacts.core.ports import ListQuery
from fleet_artifacts.core.validation import check_id

log = logging.getLogger(__name__)

_PAGE = 1000  # pointers per listing page (the largest page the API itself serves)

# Media types worth deflating: text and uncompressed structured data. Everything else (images,
# video, audio, archives, PDF, office documents, and application/octet-stream, which is mostly
# build output that is compressed already) is stored: deflating it costs CPU for nothing.
_COMPRESSIBLE_TYPES = frozenset(
    {
        "application/json",
        "application/x-ndjson",
        "application/xml",
        "application/javascript",
        "application/ecmascript",
        "application/x-javascript",
        "application/yaml",
        "application/x-yaml",
        "application/toml",
        "application/sql",
        "application/csv",
        "application/x-sh",
        "application/x-tar",
        "application/x-ipynb+json",
        "application/x-junit",
        "image/svg+xml",
        "image/bmp",
    }
)

# Characters no extractor may take as a path (``/``, ``\``), control characters (NUL among
# them), and those Windows refuses in a file name: each becomes ``_``.
_UNSAFE = re.compile(r'[\x00-\x1f\x7f/\\<>:"|?*]')
_DEVICE_NAMES = frozenset(
    {"CON", "PRN", "AUX", "NUL"} | {f"{port}{n}" for port in ("COM", "LPT") for n in range(1, 10)}
)
_DOUBLE_SUFFIXES = (".tar.gz", ".tar.bz2", ".tar.xz", ".tar.zst")


class ArchiveBroken(Exception):
    """An entry's bytes could not be read whole once the archive was under way.

    Deliberately not an ``ArtifactError``: it never becomes a status (the answer has
    started); it stops the archive writer so the client sees a failed transfer.
    """


class ArchiveEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One file of the archive: its name, time, size, whether to compress it, and its bytes."""

    name: str
    modified_at: datetime  # the artifact's createdAt
    size_bytes: int
    compress: bool
    chunks: AsyncIterator[bytes]  # the blob, read as the writer pulls it; checked to be size_bytes long


class Member(msgspec.Struct, frozen=True, kw_only=True):
    """An artifact the archive will hold, under the name it gets there."""

    name: str
    pointer: Pointer


def compressible(content_type: str) -> bool:
    """Whether an artifact of this media type is worth deflating (text and uncompressed data).

    >>> compressible("text/plain; charset=utf-8"), compressible("application/vnd.api+json")
    (True, True)
    >>> compressible("image/png"), compressible("application/gzip"), compressible("application/octet-stream")
    (False, False, False)
    """
    media = content_type.split(";", 1)[0].strip().lower()
    return media.startswith("text/") or media.endswith(("+json", "+xml")) or media in _COMPRESSIBLE_TYPES


def safe_name(file_name: str) -> str:
    r"""A file name that extracts as one file in the target directory, on any system.

    Separators, control characters and Windows' reserved characters become ``_``; trailing
    dots and spaces go (Windows drops them); a Windows device name gets a ``_`` prefix; what
    is left of a name of only dots is ``_``. Upload validation refuses most of these already;
    this holds for any stored name, whatever let it in.

    >>> safe_name("../../etc/passwd"), safe_name("a\\b.txt"), safe_name(".."), safe_name("con.log")
    ('.._.._etc_passwd', 'a_b.txt', '_', '_con.log')
    """
    name = _UNSAFE.sub("_", file_name).strip(" ").rstrip(". ")
    if not name:
        return "_"
    if name.split(".", 1)[0].upper() in _DEVICE_NAMES:
        name = "_" + name
    return name


def _split_suffix(name: str) -> tuple[str, str]:
    lowered = name.lower()
    for suffix in _DOUBLE_SUFFIXES:
        if lowered.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)], name[-len(suffix) :]
    dot = name.rfind(".")
    return (name[:dot], name[dot:]) if dot > 0 else (name, "")


def unique_names(names: Iterable[str]) -> list[str]:
    """Each name made unique, in order: a repeat gets `` (2)``, `` (3)``... before its suffix.

    Compared case-insensitively, so no entry overwrites another when extracted on a
    case-insensitive file system (Windows, macOS).

    >>> unique_names(["report.txt", "Report.txt", "report.txt", "dist.tar.gz", "dist.tar.gz"])
    ['report.txt', 'Report (2).txt', 'report (3).txt', 'dist.tar.gz', 'dist (2).tar.gz']
    """
    taken: set[str] = set()
    unique: list[str] = []
    for name in names:
        candidate, stem, suffix, n = name, "", "", 1
        while candidate.casefold() in taken:
            if n == 1:
                stem, suffix = _split_suffix(name)
            n += 1
            candidate = f"{stem} ({n}){suffix}"
        taken.add(candidate.casefold())
        unique.append(candidate)
    return unique


class Archive:
    """The artifacts one archive holds (planned, no byte read yet) and how many were left out."""

    def __init__(self, kernel: Kernel, job_id: str, members: list[Member], skipped: int) -> None:
        """An archive of ``members``, in order; ``skipped`` matching artifacts were offline."""
        self.kernel = kernel
        self.job_id = job_id
        self.members = members
        self.skipped = skipped

    async def entries(self) -> AsyncGenerator[ArchiveEntry, None]:
        """One entry per member, its blob opened only when the writer asks for the next entry.

        A blob found gone or offline then (a concurrent delete or archive) is skipped and
        logged: the entry has not started, so the archive stays whole without it.
        """
        current: AsyncGenerator[bytes, None] | None = None
        try:
            for member in self.members:
                pointer = member.pointer
                reader = self.kernel.blobs.read(pointer.blob_key)
                try:
                    # The first chunk now: a missing or offline blob is known before its entry begins.
                    first = await anext(reader, b"")
                except (NotFound, Archived) as exc:
                    log.warning(
                        "archive of job %s: %s (%s) skipped: %s",
                        self.job_id,
                        member.name,
                        pointer.id,
                        exc.detail,
                    )
                    await _close(reader)
                    continue
                current = _exact(reader, first, pointer.size_bytes, member.name)
                yield ArchiveEntry(
                    name=member.name,
                    modified_at=pointer.created_at,
                    size_bytes=pointer.size_bytes,
                    compress=compressible(pointer.content_type),
                    chunks=current,
                )
        finally:
            # An archive abandoned part-way (the client left) releases the blob it was reading.
            if current is not None:
                await _close(current)


async def _exact(
    reader: AsyncIterator[bytes], first: bytes, size: int, name: str
) -> AsyncGenerator[bytes, None]:
    """``first`` and the rest of ``reader``: exactly ``size`` bytes, else ArchiveBroken.

    The pointer's size is what the entry was announced with; a blob replaced or cut short
    since must not end as a valid entry with other bytes.
    """
    seen = len(first)
    try:
        if first:
            yield first
        async for chunk in reader:
            seen += len(chunk)
            if seen > size:
                break
            yield chunk
    except (NotFound, Archived) as exc:
        raise ArchiveBroken(f"{name}: its blob went away mid-entry ({exc.detail})") from exc
    finally:
        await _close(reader)
    if seen != size:
        raise ArchiveBroken(f"{name}: its blob holds {'more' if seen > size else seen} bytes, not {size}")


async def _close(iterator: AsyncIterator[bytes]) -> None:
    """Close an async generator now (its file or HTTP response), if it is one and not running."""
    if isinstance(iterator, AsyncGenerator):
        # "already running": the writer's thread is mid-read; the loop's finalizer closes it later.
        with contextlib.suppress(RuntimeError):
            await iterator.aclose()


class JobArchives:
    """Plan the archive of a job's artifacts (``open``); ``Archive.entries`` reads them."""

    def __init__(self, kernel: Kernel) -> None:
        """Archive artifacts through ``kernel`` (its stores, clock and visibility rules)."""
        self.kernel = kernel

    async def open(
        self, product_id: str, job_id: str, *, kind: ArtifactKind | None = None, run_id: str | None = None
    ) -> Archive:
        """The caller's readable artifacts of a job, oldest first, each under a safe, unique name.

        Raises NotFound if nothing matches (another product's job looks the same), Archived
        if every match is offline (ARCHIVED, or RESTORING and not back yet).
        """
        check_id(job_id, "jobId")
        if run_id is not None:
            check_id(run_id, "runId")
        now = self.kernel.now()
        query = ListQuery(
            job_id=job_id,
            product_id=product_id,
            kind=kind,
            run_id=run_id,
            statuses=tuple(VISIBLE),
            limit=_PAGE,
        )
        readable: list[Pointer] = []
        offline = 0
        while True:
            page = await self.kernel.pointers.list(query)
            for stored in page.items:
                if not stored.pointer.visible_at(now):
                    continue  # past expiresAt: hidden at once, before a sweep removes it
                if stored.pointer.status is ArtifactStatus.RESTORING:
                    stored = await self.kernel.settle_restore(stored)  # as Kernel.visible does
                if stored.pointer.status is ArtifactStatus.ACTIVE:
                    readable.append(stored.pointer)
                else:
                    offline += 1
            if page.continuation is None:
                break
            query = msgspec.structs.replace(query, continuation=page.continuation)
        if not readable:
            if offline:
                raise Archived(
                    f"all {offline} matching artifacts are archived: POST .../restore to read them again"
                )
            raise NotFound(f"job {job_id} has no artifacts to archive")
        readable.sort(key=lambda p: (p.created_at, p.id))
        names = unique_names(safe_name(p.file_name) for p in readable)
        members = [Member(name=name, pointer=p) for name, p in zip(names, readable, strict=True)]
        return Archive(self.kernel, job_id, members, offline)
