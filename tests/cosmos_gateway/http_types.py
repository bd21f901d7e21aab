"""Plain request/response records passed between the HTTP handler and the router."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import bad_request


@dataclass(frozen=True)
class Request:
    """One decoded HTTP request.

    Attributes:
        verb: Upper-case HTTP method.
        segments: URL-decoded path segments, without empty ones.
        headers: Case-insensitive header lookup.
        body: Raw request body.
        host: The ``Host`` header, used to advertise the endpoint back.
    """

    verb: str
    segments: list[str]
    headers: Mapping[str, str]
    body: bytes
    host: str

    def header(self, name: str) -> str | None:
        """Returns a header value, or None when absent.

        Args:
            name: Header name, any case.

        Returns:
            The value or None.
        """
        value = self.headers.get(name)
        return None if value is None else str(value)

    def flag(self, name: str) -> bool:
        """Reads a boolean header the way the SDK writes them (``True``/``true``).

        Args:
            name: Header name.

        Returns:
            Whether the header is present and true.
        """
        return (self.header(name) or "").strip().lower() == "true"

    def json(self) -> Any:
        """Decodes the body as JSON.

        Returns:
            The decoded value.

        Raises:
            GatewayError: 400 for an empty or malformed body.
        """
        if not self.body:
            raise bad_request("The request body is empty; a JSON body is required.")
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise bad_request(f"The request body is not valid JSON: {exc}.") from None


@dataclass
class Response:
    """What to send back: status, optional JSON body and extra headers."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
