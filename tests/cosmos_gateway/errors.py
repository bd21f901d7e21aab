"""Error type shared by the gateway's store, query engine and HTTP layer."""

from __future__ import annotations

# Cosmos substatus the SDK treats as "this query needs a client-side plan".
SUBSTATUS_QUERY_NOT_SERVABLE = 1004
# Cosmos substatus for a partition key header that disagrees with the document.
SUBSTATUS_PARTITION_KEY_MISMATCH = 1001


class GatewayError(Exception):
    """An error that maps one-to-one onto a Cosmos-style HTTP error response.

    Args:
        status: HTTP status code to answer with.
        code: Cosmos error code for the JSON body (e.g. ``"NotFound"``).
        message: Human-readable explanation, placed in the JSON body.
        substatus: Optional value for the ``x-ms-substatus`` header.
    """

    def __init__(self, status: int, code: str, message: str, substatus: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.substatus = substatus


def bad_request(message: str, substatus: int | None = None) -> GatewayError:
    """Builds a 400 error.

    Args:
        message: Explanation for the client.
        substatus: Optional ``x-ms-substatus`` value.

    Returns:
        The error, ready to raise.
    """
    return GatewayError(400, "BadRequest", message, substatus)


def unsupported_query(message: str) -> GatewayError:
    """Builds the loud "this gateway cannot run that query" error.

    Args:
        message: Names the construct the gateway does not implement.

    Returns:
        A 400 error carrying substatus 1004.
    """
    return GatewayError(
        400,
        "BadRequest",
        f"Cosmos test gateway cannot evaluate this query: {message}",
        SUBSTATUS_QUERY_NOT_SERVABLE,
    )


def not_found(message: str) -> GatewayError:
    """Builds a 404 error.

    Args:
        message: Explanation for the client.

    Returns:
        The error, ready to raise.
    """
    return GatewayError(404, "NotFound", message)


def conflict(message: str) -> GatewayError:
    """Builds a 409 error.

    Args:
        message: Explanation for the client.

    Returns:
        The error, ready to raise.
    """
    return GatewayError(409, "Conflict", message)


def precondition_failed(message: str) -> GatewayError:
    """Builds a 412 error.

    Args:
        message: Explanation for the client.

    Returns:
        The error, ready to raise.
    """
    return GatewayError(412, "PreconditionFailed", message)
