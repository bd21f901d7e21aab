"""An Entra ID credential stand-in for clients that never reach Entra ID in the tests."""

from __future__ import annotations

from azure.core.credentials import AccessToken


class StaticToken:
    """Implements azure-core's AsyncTokenCredential with a token nobody checks.

    The stores under test only need a credential to exist (a user-delegation signer, say);
    nothing they do here sends the token anywhere.
    """

    async def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        return AccessToken("not-a-real-token", 2**31)

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> StaticToken:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None
