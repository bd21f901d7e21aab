"""What a browser may be shown of one artifact: an image, the end of a text, pretty JSON, or nothing.

A preview never runs what it shows: images are only ever used as ``<img>`` (so even SVG runs no
script), and text is returned as a string for the page to escape. Text is read from its end (a
ranged read of the last ``TAIL_BYTES``), since the end of a log is where a failure is.

Example:
    >>> preview_kind("image/svg+xml"), preview_kind("text/x-log; charset=utf-8"), preview_kind("a/b")
    ('image', 'text', 'none')
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Literal

import msgspec

from fleet_artifacts.core.kernel import Kernel
from fleet_artifacts.core.models import ArtifactOut

PreviewKind = Literal["image", "text", "json", "none"]
TAIL_BYTES = 64 * 1024
# JSON is parsed whole to be pretty-printed; past this it is shown as text, from its end.
MAX_JSON_BYTES = 1024 * 1024
# Printed JSON is longer than its file (indentation); past this it is shown as text too.
MAX_PRETTY_CHARS = 2 * MAX_JSON_BYTES
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "image/svg+xml"})
JSON_TYPES = frozenset({"application/json", "application/x-ndjson", "application/problem+json"})
TEXT_TYPES = frozenset({"application/xml", "application/x-yaml", "application/yaml", "application/toml"})
# Terminal escape sequences: CSI (colours, cursor moves), OSC (titles, links, clipboard) and
# the two-character ones; then any C0/C1 control character but tab, newline and carriage return.
_ESCAPE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b\n]*(?:\x07|\x1b\\)?|\x1b[@-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_CONTINUATION = bytes(range(0x80, 0xC0))  # bytes inside a UTF-8 sequence, never at its start


class Preview(msgspec.Struct, frozen=True, kw_only=True):
    """An artifact (with a fresh inline-where-safe URL) and what of it a page may show."""

    artifact: ArtifactOut
    kind: PreviewKind
    text: str | None = None  # text: its last TAIL_BYTES from a whole line, decoded; json: pretty-printed
    truncated: bool = False  # text: the file is longer than what ``text`` holds


def preview_kind(content_type: str) -> PreviewKind:
    """How a content type is previewed (by its essence, parameters ignored)."""
    essence = content_type.split(";", 1)[0].strip().lower()
    if essence in IMAGE_TYPES:
        return "image"
    if essence in JSON_TYPES or essence.endswith("+json"):
        return "json"
    if essence.startswith("text/") or essence in TEXT_TYPES or essence.endswith("+xml"):
        return "text"
    return "none"


async def preview(kernel: Kernel, product_id: str, artifact_id: str, job_id: str | None = None) -> Preview:
    """The preview of a visible artifact of ``product_id`` (NotFound otherwise).

    An artifact whose bytes are offline (archived, restoring) previews as ``none``, with the
    reason on ``artifact.reason``.
    """
    stored = await kernel.visible(product_id, artifact_id, job_id)
    artifact = await kernel.present(stored, disposition="inline")
    kind = preview_kind(artifact.content_type)
    if artifact.download_url is None or kind in ("image", "none"):
        return Preview(artifact=artifact, kind="none" if artifact.download_url is None else kind)
    size = artifact.size_bytes
    if kind == "json" and size <= MAX_JSON_BYTES:
        whole = await _read(kernel, artifact.blob_key, 0, size)
        # Parsing and printing a megabyte takes tens of milliseconds: off the event loop.
        pretty = await asyncio.to_thread(pretty_json, whole)
        if pretty is not None:
            return Preview(artifact=artifact, kind="json", text=pretty)
        # Not valid JSON after all, or too long once printed: its end, as any text.
        cut = len(whole) > TAIL_BYTES
        return Preview(
            artifact=artifact, kind="text", text=tail_text(whole[-TAIL_BYTES - 1 :], cut=cut), truncated=cut
        )
    offset = max(0, size - TAIL_BYTES)
    # One byte before the tail too: whether the tail begins a line (see ``tail_text``).
    start = max(0, offset - 1)
    data = await _read(kernel, artifact.blob_key, start, size - start)
    return Preview(artifact=artifact, kind="text", text=tail_text(data, cut=offset > 0), truncated=offset > 0)


def pretty_json(data: bytes) -> str | None:
    r"""``data`` pretty-printed, or None if it is not JSON or prints past ``MAX_PRETTY_CHARS``.

    Example:
        >>> pretty_json(b'{"a": [1]}')
        '{\n  "a": [\n    1\n  ]\n}'
        >>> pretty_json(b"[" * 300 + b"0," * 4000 + b"0" + b"]" * 300) is None
        True
    """
    try:
        parsed = json.loads(data)
        printed: list[str] = []
        length = 0
        # Printed chunk by chunk and stopped at the bound: each line is indented by its depth,
        # so a megabyte nested 900 deep would print as a gigabyte (and block for seconds).
        for chunk in json.JSONEncoder(indent=2, ensure_ascii=False).iterencode(parsed):
            length += len(chunk)
            if length > MAX_PRETTY_CHARS:
                return None
            printed.append(chunk)
    except (ValueError, RecursionError):
        return None
    # A lone surrogate ("\ud800" in the file) cannot be written as UTF-8: the page would fail
    # to encode. It is shown as the escape the file had.
    return "".join(printed).encode("utf-8", "backslashreplace").decode("utf-8")


def tail_text(data: bytes, *, cut: bool) -> str:
    r"""The end of a text for a page: from its first whole line, terminal escapes taken out.

    ``cut``: ``data`` starts one byte before the tail proper, inside the file; that byte tells
    whether the tail begins a line (it is a newline) or cuts one (its rest is dropped).

    Example:
        >>> tail_text(b"ne 1\nline 2\n", cut=True), tail_text(b"\nline 2\n", cut=True)
        ('line 2\n', 'line 2\n')
        >>> tail_text(b"one long line\n", cut=True)
        'ne long line\n'
        >>> tail_text(b"\x1b[31mred\x1b[0m \x07bell\n", cut=False) == "red \ufffdbell\n"
        True
    """
    if cut:
        _, newline, rest = data.partition(b"\n")
        # No line starts in the tail (one line longer than it, perhaps ending in a newline):
        # that line's end, from its first whole character, rather than nothing.
        data = rest if newline and rest else data[1:].lstrip(_CONTINUATION)
    text = data.decode("utf-8", errors="replace")
    # A log's colours and cursor moves are noise on a page, and pasted from it into a terminal
    # an escape sequence would act there; other control characters are shown as U+FFFD.
    return _CONTROL.sub("\ufffd", _ESCAPE.sub("", text))


async def _read(kernel: Kernel, key: str, offset: int, length: int) -> bytes:
    if length <= 0:
        return b""
    # One ranged read of the store (a Range GET on Azure): never the whole of a large log.
    return b"".join([chunk async for chunk in kernel.blobs.read(key, offset=offset, length=length)])
