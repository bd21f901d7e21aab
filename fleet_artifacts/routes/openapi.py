"""What the OpenAPI document says beyond what Litestar infers from the handlers' signatures.

Handlers that stream their body (uploads, session chunks, the signed PUT) declare no
``data``, so their request bodies are described here; every operation lists the problem
documents it can answer; identifiers carry the pattern the service enforces. The schema
of a Struct no handler takes as ``data`` (the upload envelope) comes from msgspec. The links
from an answer to the operations its ids address are in ``openapi_links``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, Operation, Reference, RequestBody, Schema
from litestar.openapi.spec.enums import OpenAPIFormat, OpenAPIType

from fleet_artifacts.core.models import ArtifactKind, UploadEnvelope
from fleet_artifacts.core.validation import ID_PATTERN, MAX_FILE_NAME_LENGTH, MAX_ID_LENGTH
from fleet_artifacts.routes.openapi_links import LinkedOperation
from fleet_artifacts.routes.problems import PROBLEM_JSON, Problem

_REASONS = {
    400: "the request is malformed or breaks a validation rule (field, invalidParams)",
    401: "no bearer token, or an unknown one",
    403: "a signed URL that is forged, altered, expired or lacks the permission",
    404: "absent, or owned by another product",
    409: "conflicts with the stored state (an Idempotency-Key reused, an upload not ready, ...)",
    410: "the cursor is older than the events kept: read the state again, then the feed from its start",
    412: "a precondition (If-Match, If-Unmodified-Since, a concurrent change) failed",
    413: "over the upload limit (limitBytes)",
    415: "a content type the operation does not read",
    416: "the Range selects no byte (Content-Range: bytes */size)",
    422: "the committed bytes contradict the claim; the upload was discarded",
    503: "a backend (Blob Storage, the pointer store) is unreachable; retry after Retry-After",
}


def problems(*statuses: int) -> dict[int, ResponseSpec]:
    """The problem documents an operation answers, for its ``responses=``."""
    return {
        status: ResponseSpec(
            data_container=Problem,
            description=_REASONS[status],
            media_type=PROBLEM_JSON,
            generate_examples=False,
        )
        for status in statuses
    }


ANY_MEDIA_TYPE = "*/*"  # a download answers with the artifact's own type

# What a download answers besides 200: a range, or an unchanged copy.
DOWNLOAD_ANSWERS = {
    206: ResponseSpec(
        data_container=None,
        description="the single byte range asked for (Content-Range)",
        media_type=ANY_MEDIA_TYPE,
    ),
    304: ResponseSpec(data_container=None, description="If-None-Match names this ETag"),
}
REDIRECT_ANSWER = {
    302: ResponseSpec(data_container=None, description="?redirect=true: Location is a freshly signed URL")
}


def _binary(description: str) -> OpenAPIMediaType:
    return OpenAPIMediaType(
        schema=Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY, description=description)
    )


def _converted(node: Any) -> Any:
    """Msgspec's JSON Schema as Litestar's spec objects (only the keywords msgspec emits)."""
    if isinstance(node, list):
        return [_converted(item) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return Reference(ref=node["$ref"])
    names = {
        "anyOf": "any_of",
        "additionalProperties": "additional_properties",
        "minLength": "min_length",
        "maxLength": "max_length",
        "contentEncoding": "content_encoding",
    }
    fields: dict[str, Any] = {}
    for key, value in node.items():
        if key == "type":
            fields["type"] = (
                [OpenAPIType(v) for v in value] if isinstance(value, list) else OpenAPIType(value)
            )
        elif key == "properties":
            fields["properties"] = {name: _converted(prop) for name, prop in value.items()}
        elif key in ("items", "anyOf", "additionalProperties"):
            fields[names.get(key) or key] = _converted(value)
        else:
            fields[names.get(key) or key] = value
    return Schema(**fields)


def _envelope_schema() -> Schema:
    """The upload envelope's schema, inline: no handler takes it as ``data``, so no component exists."""
    _, defs = msgspec.json.schema_components([UploadEnvelope], ref_template="#/components/schemas/{name}")
    envelope = defs["UploadEnvelope"]
    envelope["properties"]["content"]["contentEncoding"] = "base64"
    schema: Schema = _converted(envelope)
    return schema


_MULTIPART = Schema(
    type=OpenAPIType.OBJECT,
    description="Metadata fields first, then the part `file` last (the body streams).",
    required=["kind", "file"],
    properties={
        "kind": Schema(type=OpenAPIType.STRING, enum=[k.value for k in ArtifactKind]),
        "fileName": Schema(type=OpenAPIType.STRING, max_length=MAX_FILE_NAME_LENGTH),
        "runId": Schema(type=OpenAPIType.STRING, pattern=ID_PATTERN, max_length=MAX_ID_LENGTH),
        "contentType": Schema(type=OpenAPIType.STRING),
        "tags": Schema(
            type=OpenAPIType.ARRAY,
            items=Schema(type=OpenAPIType.STRING, pattern=r"^[^:]+:.*$"),
            description="key:value",
        ),
        "file": Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY),
    },
)


_ENVELOPE = _envelope_schema()


@dataclass
class UploadOperation(LinkedOperation):
    """``uploadArtifact``: three request bodies, told apart by Content-Type."""

    def __post_init__(self) -> None:
        """Describe the three forms."""
        super().__post_init__()
        self.request_body = RequestBody(
            required=True,
            content={
                "multipart/form-data": OpenAPIMediaType(schema=_MULTIPART),
                "application/vnd.fleet-artifact+json": OpenAPIMediaType(schema=_ENVELOPE),
                "*/*": _binary("any other type: the body is the artifact, stored with that type"),
            },
        )


@dataclass
class ChunkOperation(LinkedOperation):
    """``sendUploadChunk``: the chunk's bytes."""

    def __post_init__(self) -> None:
        """The body is the chunk, placed by Content-Range."""
        super().__post_init__()
        self.request_body = RequestBody(
            required=True, content={"application/octet-stream": _binary("the bytes Content-Range names")}
        )


@dataclass
class BlobPutOperation(Operation):
    """``putSignedBlob``: Put Blob, Put Block or Put Block List, as Azure's block-blob protocol."""

    def __post_init__(self) -> None:
        """The whole blob, one block, or the XML block list."""
        self.request_body = RequestBody(
            required=True,
            content={
                "application/xml": OpenAPIMediaType(
                    schema=Schema(type=OpenAPIType.STRING, description="<BlockList>")
                ),
                "*/*": _binary("the blob (Put Blob) or one block (comp=block)"),
            },
        )
