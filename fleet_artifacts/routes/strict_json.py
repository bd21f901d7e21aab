"""JSON request bodies decoded strictly: numbers are numbers, unknown fields are named.

Litestar converts a JSON body to its Struct with lax rules (``"sizeBytes": "1"`` becomes 1).
``StrictJSON[T]`` decodes the raw bytes with msgspec's strict rules instead and reports
the first problem as a 400 naming the field; its OpenAPI schema is the Struct's own.

Example:
    >>> @post("/x", dto=StrictJSON[FinalizeRequest], return_dto=None)  # doctest: +SKIP
"""

from __future__ import annotations

import re
from typing import Any, Generic, TypeVar

import msgspec
from litestar.dto import DTOConfig, MsgspecDTO
from litestar.openapi.spec import Reference, Schema
from litestar.typing import FieldDefinition

from fleet_artifacts.core.errors import InvalidInput

T = TypeVar("T", bound=msgspec.Struct)
_AT = re.compile(r" - at `\$\.([A-Za-z_][A-Za-z0-9_]*)")  # the top-level field of the path
_NAMED = re.compile(r"(?:unknown|missing required) field `([^`]*)`")


class StrictJSON(MsgspecDTO[T], Generic[T]):
    """A request-body DTO that decodes with msgspec's strict rules."""

    config = DTOConfig(forbid_unknown_fields=True)

    def decode_bytes(self, value: bytes) -> Any:
        """Decode the body into the Struct itself, strictly; InvalidInput naming the field otherwise.

        An empty body never gets here: Litestar answers it as no body (``data`` None where the
        handler allows that, as archive and restore do).
        """
        try:
            return msgspec.json.decode(value, type=self.model_type, strict=True)
        except msgspec.ValidationError as exc:
            message = str(exc)
            found = _AT.search(message) or _NAMED.search(message)
            field = found[1] if found else None
            raise InvalidInput(f"invalid request body: {message}", field=field) from None
        except msgspec.DecodeError as exc:
            raise InvalidInput(f"the request body is not valid JSON: {exc}") from None

    @classmethod
    def create_openapi_schema(
        cls, field_definition: FieldDefinition, handler_id: str, schema_creator: Any
    ) -> Reference | Schema:
        """The Struct's own schema, as without a DTO; closed to other fields when the Struct is.

        The decoder refuses an unknown field with a 400 naming it, so the document says
        ``additionalProperties: false``: generated clients and fuzzers then neither send one as
        if it were allowed nor expect it to be accepted.
        """
        field = FieldDefinition.from_annotation(cls.model_type)
        schema: Reference | Schema = schema_creator.for_field_definition(field)
        if cls.model_type.__struct_config__.forbid_unknown_fields:
            # A component (a Reference here): close the registered schema itself.
            closed: Schema = (
                schema
                if isinstance(schema, Schema)
                else schema_creator.schema_registry.get_schema_for_field_definition(field)
            )
            closed.additional_properties = False
        return schema
