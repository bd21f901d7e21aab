"""Readers for the three upload forms; each yields metadata and a byte stream.

The form is chosen by the request's Content-Type, and only by it:

- ``multipart/form-data``: metadata fields first, then one part named ``file``
  (the last part, as with S3 POST uploads), streamed as it arrives.
- ``application/vnd.fleet-artifact+json``: a JSON envelope with base64
  ``content``, for small payloads (bounded by ``MAX_ENVELOPE_BYTES``).
- anything else: the body *is* the artifact, streamed; its Content-Type is the
  artifact's (so a ``.json`` file uploads as-is), metadata in the query string.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator, Callable, Iterable, Mapping

import msgspec
from multipart import MultipartError, MultipartSegment, PushMultipartParser, parse_options_header

from fleet_artifacts.core.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from fleet_artifacts.core.models import ArtifactKind, ArtifactMeta, UploadEnvelope
from fleet_artifacts.core.validation import parse_tags, whole_number

ENVELOPE_MEDIA_TYPE = "application/vnd.fleet-artifact+json"
MULTIPART_MEDIA_TYPE = "multipart/form-data"
_FIELD_LIMIT = 16 * 1024
_SINGLE_FIELDS = {"kind", "runId", "fileName", "contentType", "retentionDays", "keepForever"}
_TAG_FIELDS = {"tag", "tags"}


FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
QUERY_FIELDS = ("kind", "fileName", "runId", "contentType", "tag", "retentionDays", "keepForever")


class QueryMeta(msgspec.Struct, frozen=True, kw_only=True):
    """Metadata a raw-body upload gives in its query string (None where absent)."""

    kind: str | None = None
    file_name: str | None = None
    run_id: str | None = None
    content_type: str | None = None
    tag: list[str] | None = None
    retention_days: str | None = None
    keep_forever: str | None = None

    def given(self) -> bool:
        """Whether any field was given."""
        return any(getattr(self, name) is not None for name in self.__struct_fields__)


def refuse_unknown_query(names: Iterable[str]) -> None:
    """InvalidInput naming the first query parameter the upload route does not read."""
    for name in names:
        if name not in QUERY_FIELDS:
            hint = " (tags are given as tag=key:value, repeated)" if name == "tags" else ""
            raise InvalidInput(
                f"unknown query parameter {name[:40]!r}{hint}; known: {', '.join(QUERY_FIELDS)}", field=name
            )


async def read_upload(
    stream: AsyncIterator[bytes],
    headers: Mapping[str, str],
    query: QueryMeta,
    *,
    max_envelope_bytes: int,
    check_size: Callable[[int], None],
) -> tuple[ArtifactMeta, AsyncIterator[bytes]]:
    """Read an upload in whichever form its Content-Type names: its metadata and its bytes.

    ``check_size`` refuses a declared or decoded size over the upload limit (PayloadTooLarge).
    """
    media_type = headers.get("content-type")
    essence = (media_type or "").split(";", 1)[0].strip().lower()
    if essence == FORM_MEDIA_TYPE:
        # What `curl -d` sends: a form encoding of the bytes, not the file. Storing it would keep
        # a mangled copy (curl -d even drops newlines) under the file's name.
        raise UnsupportedMediaType(
            f"{FORM_MEDIA_TYPE} is a form encoding, not a file: send the bytes as they are with "
            "their own type (curl --data-binary @FILE -H 'Content-Type: text/plain'), or as "
            "multipart/form-data (curl -F kind=log -F file=@FILE)"
        )
    if essence in (MULTIPART_MEDIA_TYPE, ENVELOPE_MEDIA_TYPE) and query.given():
        raise InvalidInput(f"with {essence}, metadata goes in the body, not the query string")
    if essence == MULTIPART_MEDIA_TYPE:
        return await read_multipart(stream, media_type or "")
    if essence == ENVELOPE_MEDIA_TYPE:
        meta, content = await read_envelope(stream, max_envelope_bytes=max_envelope_bytes)
        check_size(len(content))
        return meta, _once(content)
    if (length := headers.get("content-length")) and length.isdigit():
        check_size(int(length))  # before a byte is read: the client learns early
    meta = ArtifactMeta(
        kind=parse_kind(query.kind),
        file_name=query.file_name or "",
        content_type=query.content_type or media_type,  # neither: guessed from fileName
        run_id=query.run_id,
        tags=parse_tags(query.tag or []),
        retention_days=parse_days(query.retention_days),
        keep_forever=parse_flag(query.keep_forever, "keepForever"),
    )
    return meta, stream


async def _once(content: bytes) -> AsyncIterator[bytes]:
    yield content


async def read_bounded(stream: AsyncIterator[bytes], limit: int) -> bytes:
    """The whole body, or PayloadTooLarge(limit) as soon as it grows past ``limit``."""
    body = bytearray()
    async for chunk in stream:
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(limit)
    return bytes(body)


def parse_days(value: str | None) -> int | None:
    """``retentionDays`` from a query string or form field: a whole number of days, or None."""
    return whole_number(value, "retentionDays", "days", digits=6)


def parse_flag(value: str | None, field: str) -> bool:
    """A true/false query string or form field (absent: false)."""
    if value is None:
        return False
    if value.lower() not in ("true", "false"):
        raise InvalidInput(f"{field} must be true or false", field=field)
    return value.lower() == "true"


def parse_kind(value: str | None) -> ArtifactKind:
    """Return the artifact kind named by ``value``; InvalidInput if unknown or absent."""
    if not value:
        raise InvalidInput("kind is required", field="kind")
    try:
        return ArtifactKind(value)
    except ValueError:
        names = ", ".join(k.value for k in ArtifactKind)
        raise InvalidInput(f"kind must be one of: {names}", field="kind") from None


async def _events(
    stream: AsyncIterator[bytes], parser: PushMultipartParser
) -> AsyncIterator[MultipartSegment | bytes | None]:
    try:
        async for chunk in stream:
            if chunk:
                for event in parser.parse(chunk):
                    yield event
        for event in parser.parse(b""):
            yield event
    except MultipartError as exc:
        raise InvalidInput(f"malformed multipart body: {exc}") from exc


async def read_multipart(
    stream: AsyncIterator[bytes], content_type: str
) -> tuple[ArtifactMeta, AsyncIterator[bytes]]:
    """Read the metadata fields, stop at the ``file`` part and return its byte stream."""
    boundary = parse_options_header(content_type)[1].get("boundary")
    if not boundary:
        raise InvalidInput("multipart/form-data needs a boundary parameter")
    parser = PushMultipartParser(boundary, max_segment_count=64)
    events = _events(stream, parser)
    fields: dict[str, list[str]] = {}
    name: str | None = None
    value = bytearray()
    file_part: MultipartSegment | None = None
    async for event in events:
        if isinstance(event, MultipartSegment):
            if event.name == "file":
                file_part = event
                break
            if event.name not in _SINGLE_FIELDS | _TAG_FIELDS:
                raise InvalidInput(f"unknown form field {event.name[:40]!r}")
            name, value = event.name, bytearray()
        elif event is None:
            assert name is not None
            try:
                fields.setdefault(name, []).append(value.decode("utf-8"))
            except UnicodeDecodeError:
                raise InvalidInput(f"form field {name!r} is not UTF-8", field=name) from None
        else:
            value += event
            if len(value) > _FIELD_LIMIT:
                raise InvalidInput(f"form field {name!r} is too long", field=name)
    if file_part is None:
        raise InvalidInput("the multipart body has no part named 'file'", field="file")
    if "kind" not in fields:  # fields after the file part are never read: say so
        raise InvalidInput(
            "kind is required: send kind and the other fields before the file part", field="kind"
        )
    for key in _SINGLE_FIELDS & fields.keys():
        if len(fields[key]) > 1:
            raise InvalidInput(f"form field {key!r} is given more than once", field=key)

    def one(key: str) -> str | None:
        return fields[key][0] if key in fields else None

    meta = ArtifactMeta(
        kind=parse_kind(one("kind")),
        file_name=one("fileName") or file_part.filename or "",
        content_type=one("contentType") or file_part.content_type,  # neither: guessed from the name
        run_id=one("runId"),
        tags=parse_tags(fields.get("tag", []) + fields.get("tags", [])),
        retention_days=parse_days(one("retentionDays")),
        keep_forever=parse_flag(one("keepForever"), "keepForever"),
    )

    async def file_bytes() -> AsyncIterator[bytes]:
        async for event in events:
            if event is None:
                break
            assert not isinstance(event, MultipartSegment)
            yield bytes(event)
        # The upload commits only once the whole body proved well-formed.
        async for event in events:
            if isinstance(event, MultipartSegment):
                raise InvalidInput("the 'file' part must be the last part of the form")
        if not parser.closed:
            raise InvalidInput("the multipart body ended early")

    return meta, file_bytes()


async def read_envelope(
    stream: AsyncIterator[bytes], *, max_envelope_bytes: int
) -> tuple[ArtifactMeta, bytes]:
    """Read and decode a JSON envelope; the whole body is held, hence its small bound."""
    body = await read_bounded(stream, max_envelope_bytes)
    try:
        envelope = msgspec.json.decode(body, type=UploadEnvelope)
    except msgspec.ValidationError as exc:
        raise InvalidInput(f"invalid upload envelope: {exc}") from None
    except msgspec.DecodeError as exc:
        raise InvalidInput(f"the upload envelope is not valid JSON: {exc}") from None
    try:
        content = base64.b64decode(envelope.content, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("content must be standard base64", field="content") from None
    return envelope, content
