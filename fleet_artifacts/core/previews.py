"""What a browser may be shown of one artifact: an image, the end of a text, pretty JSON, or nothing.

A preview never runs what it shows: images are only ever used as ``<img>`` (so even SVG runs no
script), and text is returned as a string for the page to escape. Text is read from its end (a
ranged read of the last ``TAIL_BYTES``), since the end of a log is where a failure is.

Example:
    >>> preview_kind("image/svg+xml"), preview_kind("text/x-log; charset=utf-8"), preview_kind("a/b")
    ('image', 'text', 'none')
"""

from __future__ import annotations

import json
from typing import Literal

import msgspec

from fleet_artifacts.core.kernel import Kernel
from fleet_artifacts.core.models import ArtifactOut

PreviewKind = Literal["image", "text", "json", "none"]
TAIL_BYTES = 64 * 1024
# JSON is parsed whole to be pretty-printed; past this it is shown as text, from its end.
MAX_JSON_BYTES = 1024 * 1024
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "image/svg+xml"})
JSON_TYPES = frozenset({"application/json", "application/x-ndjson", "application/problem+json"})
TEXT_TYPES = frozenset({"application/xml", "application/x-yaml", "application/yaml", "application/toml"})


class Preview(msgspec.Struct, frozen=True, kw_only=True):
    """An artifact (with a fresh inline-where-safe URL) and what of it a page may show."""

    artifact: ArtifactOut
    kind: PreviewKind
    text: str | None = None  # text: its last TAIL_BYTES, decoded; json: pretty-printed
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
        try:
            pretty = json.dumps(json.loads(whole), indent=2, ensure_ascii=False)
        except (ValueError, RecursionError):
            pretty = None  # not valid JSON after all: shown as the text it is
        if pretty is not None:
            return Preview(artifact=artifact, kind="json", text=pretty)
        return Preview(artifact=artifact, kind="text", text=whole.decode("utf-8", errors="replace"))
    offset = max(0, size - TAIL_BYTES)
    data = await _read(kernel, artifact.blob_key, offset, size - offset)
    text = data.decode("utf-8", errors="replace")
    if offset:
        # The cut may fall inside a line (or a UTF-8 sequence): start at the next whole line.
        _, newline, rest = text.partition("\n")
        text = rest if newline else text
    return Preview(artifact=artifact, kind="text", text=text, truncated=offset > 0)


async def _read(kernel: Kernel, key: str, offset: int, length: int) -> bytes:
    if length <= 0:
        return b""
    # One ranged read of the store (a Range GET on Azure): never the whole of a large log.
    return b"".join([chunk async for chunk in kernel.blobs.read(key, offset=offset, length=length)])
