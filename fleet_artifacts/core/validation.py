"""Input rules for everything that names a blob or travels into a header.

Identifiers become path segments of the blob key
(``fleet/<productId>/<jobId>/<id>-<kind>``), so they are held to a strict
alphabet: no separators, no ``..``, no control characters, bounded length.
``fileName`` only feeds Content-Disposition, yet it is held to the same
traversal rules so a careless consumer that writes it to disk stays safe.
"""

from __future__ import annotations

import mimetypes
import re
import unicodedata

from fleet_artifacts.core.errors import InvalidInput
from fleet_artifacts.core.models import ArtifactMeta, CheckedMeta

MAX_ID_LENGTH = 128
MAX_FILE_NAME_LENGTH = 255
MAX_TAGS = 10
MAX_TAG_KEY_LENGTH = 128
MAX_TAG_VALUE_LENGTH = 256
MAX_CONTENT_TYPE_LENGTH = 255

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# The same rule as one regular expression (no lookaround, for JSON Schema generators):
# alphanumerics, '_' and '-', with single dots between them; starts with a letter or digit.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+)*\.?$"
TAG_PATTERN = (
    r"^[A-Za-z0-9][A-Za-z0-9_+=-]*(?:\.[A-Za-z0-9_+=-]+)*\.?:[ -~]{0,256}$"  # a subset: ASCII values
)
_TAG_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=-]*")  # no ':', which splits tag=key:value
_CONTENT_TYPE = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*"
    # Quoted parameter values: printable ASCII only, since the type is sent back as a header.
    r"(\s*;\s*[A-Za-z0-9!#$&^_.+-]+=(\"[\x20\x21\x23-\x5b\x5d-\x7e]*\"|[A-Za-z0-9!#$&^_.+-]+))*"
)


# Control, format, surrogate (not encodable as UTF-8), private-use and unassigned
# code points, and line/paragraph separators: none belongs in a name or header.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def _has_control(value: str) -> bool:
    return any(unicodedata.category(ch) in _FORBIDDEN_CATEGORIES for ch in value)


def is_id(value: str) -> bool:
    """Whether ``value`` is a safe identifier: ``check_id`` without the error.

    >>> is_id("job-42"), is_id("../x")
    (True, False)
    """
    return 0 < len(value) <= MAX_ID_LENGTH and ".." not in value and _ID.fullmatch(value) is not None


def check_id(value: str, field: str) -> str:
    """Return ``value`` if it is a safe identifier, else raise InvalidInput.

    >>> check_id("job-42", "jobId")
    'job-42'
    """
    if is_id(value):
        return value
    if not value or len(value) > MAX_ID_LENGTH:
        raise InvalidInput(f"{field} must be 1 to {MAX_ID_LENGTH} characters", field=field)
    if ".." in value or not _ID.fullmatch(value):
        raise InvalidInput(
            f"{field} may hold only letters, digits, '.', '_' and '-', must start with a "
            "letter or digit, and may not contain '..'",
            field=field,
        )
    return value


def check_file_name(value: str) -> str:
    """Return ``value`` if it is a plain file name (no directories, no traversal)."""
    if not value or len(value) > MAX_FILE_NAME_LENGTH:
        raise InvalidInput(f"fileName must be 1 to {MAX_FILE_NAME_LENGTH} characters", field="fileName")
    if "/" in value or "\\" in value or ".." in value or _has_control(value):
        raise InvalidInput(
            "fileName may not contain path separators, '..' or control characters",
            field="fileName",
        )
    if value.strip() != value or not value.strip("."):
        raise InvalidInput("fileName may not start or end with spaces or be only dots", field="fileName")
    return value


def check_tags(tags: dict[str, str]) -> dict[str, str]:
    """Return ``tags`` if their count, keys and values are within bounds."""
    if len(tags) > MAX_TAGS:
        raise InvalidInput(f"at most {MAX_TAGS} tags are allowed", field="tags")
    for key, value in tags.items():
        if len(key) > MAX_TAG_KEY_LENGTH or ".." in key or not _TAG_KEY.fullmatch(key):
            raise InvalidInput(
                f"tag key {key[:40]!r} must be 1 to {MAX_TAG_KEY_LENGTH} characters of "
                "letters, digits and . _ + = -",
                field="tags",
            )
        if len(value) > MAX_TAG_VALUE_LENGTH or _has_control(value):
            raise InvalidInput(
                f"tag {key!r}: value must be at most {MAX_TAG_VALUE_LENGTH} characters "
                "without control characters",
                field="tags",
            )
    return tags


def parse_tag(pair: str) -> tuple[str, str]:
    """Split a ``key:value`` tag expression (query parameter or form field)."""
    key, sep, value = pair.partition(":")
    if not sep:
        raise InvalidInput(f"tag {pair[:40]!r} must be written key:value", field="tag")
    return key, value


def parse_tags(pairs: list[str]) -> dict[str, str]:
    """Build a tag map from repeated ``key:value`` expressions."""
    tags: dict[str, str] = {}
    for pair in pairs:
        key, value = parse_tag(pair)
        if key in tags:
            raise InvalidInput(f"tag {key!r} is given twice", field="tag")
        tags[key] = value
    return check_tags(tags)


# Python's built-in table only (no /etc/mime.types), so every machine guesses alike.
_MIME_TYPES = mimetypes.MimeTypes()
for _ext, _type in {
    ".log": "text/plain",
    ".out": "text/plain",
    ".ndjson": "application/x-ndjson",
    ".yaml": "application/yaml",
    ".yml": "application/yaml",
    ".md": "text/markdown",
}.items():
    _MIME_TYPES.add_type(_type, _ext)
_COMPRESSED = {"gzip": "application/gzip", "bzip2": "application/x-bzip2", "xz": "application/x-xz"}


def guess_content_type(file_name: str) -> str:
    """The media type a file name suggests, ``application/octet-stream`` when it suggests none.

    >>> guess_content_type("run.log"), guess_content_type("dist.tar.gz"), guess_content_type("LICENSE")
    ('text/plain', 'application/gzip', 'application/octet-stream')
    """
    media_type, encoding = _MIME_TYPES.guess_type(file_name, strict=False)
    if encoding is not None:  # a compressed file is served as what it is: compressed bytes
        return _COMPRESSED.get(encoding, "application/octet-stream")
    return media_type or "application/octet-stream"


def check_content_type(value: str) -> str:
    """Return ``value`` if it is a well-formed media type."""
    value = value.strip()
    if len(value) > MAX_CONTENT_TYPE_LENGTH or not _CONTENT_TYPE.fullmatch(value):
        raise InvalidInput(
            "contentType must be a media type such as 'text/plain; charset=utf-8'",
            field="contentType",
        )
    return value


def whole_number(value: str | None, field: str, unit: str, *, digits: int) -> int | None:
    """A count from a query string or form field (ASCII digits, at most ``digits``); None if absent.

    Bounds are the caller's; this refuses what is no number at all, naming ``field``.
    """
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > digits:
        raise InvalidInput(f"{field} must be a whole number of {unit}", field=field)
    return int(value)


def checked_meta(meta: ArtifactMeta) -> CheckedMeta:
    """Return the metadata of an upload with every field checked (InvalidInput on the first bad one).

    A content type left out is guessed from the file name.

    The result is a ``CheckedMeta`` whatever request struct carried it, so an
    idempotency fingerprint of it is the same on every create path.
    """
    file_name = check_file_name(meta.file_name)
    return CheckedMeta(
        kind=meta.kind,
        file_name=file_name,
        content_type=check_content_type(meta.content_type)
        if meta.content_type
        else guess_content_type(file_name),
        run_id=None if meta.run_id is None else check_id(meta.run_id, "runId"),
        tags=check_tags(meta.tags),
        retention_days=meta.retention_days,
        keep_forever=meta.keep_forever,
    )
