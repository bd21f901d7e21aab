"""The browse page's session: a bearer token kept in a cookie, signing in and out, CSRF, headers.

The API stays bearer-only. The page keeps the token a user typed in an HttpOnly,
SameSite=Strict cookie scoped to ``/ui``; ``signed_in`` turns that cookie back into the
``Authorization`` header and hands the request to the API's own check (``deps.authorizing``),
so a page is authorized exactly as the API call it stands for. Forms that change anything
(sign-in, sign-out, a share link) carry Litestar's double-submit CSRF token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Iterable
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from litestar import Response, get, post
from litestar.config.csrf import CSRFConfig
from litestar.datastructures import Cookie
from litestar.enums import RequestEncodingType, ScopeType
from litestar.middleware.csrf import CSRFMiddleware
from litestar.params import Body
from litestar.response import Redirect, Template
from litestar.types import ASGIApp, Receive, Scope, Send

from fleet_artifacts.core.access import Scope as Needed
from fleet_artifacts.core.errors import Forbidden, Unauthenticated
from fleet_artifacts.routes.deps import AnyRequest, authorizing, base_url_of, services_of

UI_PATH = "/ui"
TOKEN_COOKIE = "fa_ui_token"  # noqa: S105 (the cookie's name, not a secret)
CSRF_COOKIE = "fa_ui_csrf"
# A signed-in browser keeps the token a working day at most; then the user signs in again.
SESSION_SECONDS = 12 * 3600
CAN_SHARE = "fleet_artifacts.ui.can_share"  # scope state: whether the token may make share links


def csrf_config(key: str | None, *, secure: bool) -> CSRFConfig:
    """The page's CSRF settings: cookie only under /ui, never readable by scripts.

    The secret is derived from ``key`` (SIGNING_KEY) when there is one, so replicas sharing it
    accept each other's forms; without it each process draws its own (``RenewingCSRF`` then
    replaces a browser's stale cookie after a restart).
    """
    secret = (
        hmac.new(key.encode(), b"fleet-artifacts ui csrf", hashlib.sha256).hexdigest()
        if key
        else secrets.token_hex(32)
    )
    return CSRFConfig(
        secret=secret,
        cookie_name=CSRF_COOKIE,
        cookie_path=UI_PATH,
        cookie_secure=secure,
        cookie_httponly=True,  # the token reaches the page in the form itself (csrf_input)
        cookie_samesite="strict",
    )


class RenewingCSRF(CSRFMiddleware):
    """Litestar's CSRF check, which also replaces a cookie signed with another secret.

    Litestar sets its cookie only when a request carries none, so a cookie from before a
    restart (a per-process secret) would fail every form until the browser dropped it. Here a
    safe request with such a cookie is treated as carrying none: the answer sets a fresh one.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Drop a stale CSRF cookie from a safe request, then check as Litestar does."""
        if scope["type"] == ScopeType.HTTP and scope["method"] in self.config.safe_methods:
            value = _cookie(scope, CSRF_COOKIE)
            if value is not None and self._decode_csrf_token(value) is None:
                scope["headers"] = [_without_cookie(h, CSRF_COOKIE) for h in scope["headers"]]
        await super().__call__(scope, receive, send)


def _cookie(scope: Scope, name: str) -> str | None:
    for key, value in scope["headers"]:
        if key == b"cookie":
            for part in value.decode("latin-1").split(";"):
                found, sep, content = part.strip().partition("=")
                if sep and found == name:
                    return content.strip('"')
    return None


def _without_cookie(header: tuple[bytes, bytes], name: str) -> tuple[bytes, bytes]:
    key, value = header
    if key != b"cookie":
        return header
    parts = [p for p in value.decode("latin-1").split(";") if p.strip().partition("=")[0] != name]
    return key, ";".join(parts).encode("latin-1")


def token_of(scope: Scope) -> str | None:
    """The bearer token a browser's cookie holds (base64url: any token survives cookie syntax)."""
    value = _cookie(scope, TOKEN_COOKIE)
    if not value:
        return None
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


def signed_in(app: ASGIApp) -> ASGIApp:
    """Route middleware: a page needs a signed-in browser; else 303 to the sign-in page.

    A page opened from another site without the cookie first asks for itself again
    (``_ONCE_MORE``): a Strict cookie comes only with this site's own navigations.

    The cookie's token becomes the ``Authorization`` header, and the API's own check runs with
    the page's scope: the same 401/403 rules, the same audit lines, the same ``context``.
    """
    guarded = authorizing(app)

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        auth = services_of(scope["litestar_app"].state).auth
        token = token_of(scope)
        header = None if token is None else f"Bearer {token}"
        try:
            # Also how an ANON_READ_PRODUCT deployment lets a browser in without a cookie.
            auth.authorize(header, Needed.READ)
        except (Unauthenticated, Forbidden):
            if token is None and _cross_site_get(scope):
                await _once_more(send)
                return
            # Forbidden: the token lost its read scope after sign-in. Each page would answer 403
            # and none could sign out (an error page has no form): forget it, as a revoked one.
            await _to_sign_in(scope, send, stale=token is not None)
            return
        others = [(k, v) for k, v in scope["headers"] if k != b"authorization"]
        if header is not None:
            scope["headers"] = [*others, (b"authorization", header.encode("latin-1"))]
            scope["state"][CAN_SHARE] = auth.identify(header).allows(Needed.SHARE)
        await guarded(scope, receive, send)

    return middleware


def _cross_site_get(scope: Scope) -> bool:
    """Whether the request is a page opened from a link on another site (``Sec-Fetch-Site``)."""
    if scope.get("method") != "GET":
        return False
    return any(k == b"sec-fetch-site" and v == b"cross-site" for k, v in scope["headers"])


# The page again, asked for by the page itself: a SameSite=Strict cookie is not sent with a
# navigation another site started (a link in a dashboard or a merge request), so a signed-in
# user would land on the sign-in form. Reloaded from here the navigation is this site's own and
# the cookie comes along; without one, that request goes to sign in (it is not cross-site: no loop).
_ONCE_MORE = (
    b'<!doctype html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="0">'
    b'<title>fleet-artifacts</title></head><body><p><a href="">Continue</a></p></body></html>'
)


async def _once_more(send: Send) -> None:
    headers = [(k.lower().encode(), v.encode()) for k, v in security_headers().items()]
    headers += [(b"content-type", b"text/html; charset=utf-8"), (b"content-length", b"%d" % len(_ONCE_MORE))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": _ONCE_MORE, "more_body": False})


async def _to_sign_in(scope: Scope, send: Send, *, stale: bool) -> None:
    path = scope["path"] + ("?" + scope["query_string"].decode("latin-1") if scope["query_string"] else "")
    # Back to the page after signing in; not to a form's target (a POST), which has no page.
    back = f"?next={quote(path, safe='')}" if scope.get("method") == "GET" else ""
    headers = [
        (b"location", f"{UI_PATH}/sign-in{back}".encode("latin-1")),
        (b"cache-control", b"no-store"),
        (b"content-length", b"0"),
    ]
    if stale:  # a token no longer valid (revoked, rotated): forget it
        headers.append((b"set-cookie", _gone().to_header(header="").encode("latin-1")))
    await send({"type": "http.response.start", "status": 303, "headers": headers})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


def _gone() -> Cookie:
    return Cookie(key=TOKEN_COOKIE, value="", path=UI_PATH, max_age=0, httponly=True, samesite="strict")


def security_headers(image_urls: Iterable[str] = ()) -> dict[str, str]:
    """Every page's headers: a strict CSP (no inline script or style), no caching, no framing.

    Images may come from this service and from the origins of ``image_urls`` (signed URLs of the
    blob store: this service's own /blobs on the local backend, the storage account on Azure).
    """
    origins = sorted({origin for url in image_urls if (origin := _origin(url))})
    csp = "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src " + " ".join(["'self'", *origins]),
            "form-action 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
        ]
    )
    return {
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store",  # pages hold signed URLs
    }


def _origin(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    netloc = parts.netloc.rsplit("@", 1)[-1]
    # Anything that could end a CSP source expression is refused rather than quoted.
    if any(c in netloc for c in " ;,'\"\\"):
        return None
    return f"{parts.scheme}://{netloc}"


def page(
    name: str, context: dict[str, Any], *, image_urls: Iterable[str] = (), status_code: int = 200
) -> Template:
    """A rendered page with the security headers."""
    return Template(
        template_name=name, context=context, headers=security_headers(image_urls), status_code=status_code
    )


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path of this page only (never another site)."""
    if not target or not target.startswith(UI_PATH) or target.startswith("//") or "\\" in target:
        return UI_PATH
    rest = target[len(UI_PATH) :]
    return target if rest == "" or rest.startswith(("/", "?")) else UI_PATH


@get("/sign-in", name="ui-sign-in")
async def sign_in_form(request: AnyRequest) -> Template:
    """The sign-in form."""
    return page("sign_in.html", {"next": safe_next(request.query_params.get("next")), "error": None})


SignInForm = Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]


@post("/sign-in", status_code=303)
async def sign_in(request: AnyRequest, data: SignInForm) -> Response[Any]:
    """Check the token (a read scope is enough) and keep it in the session cookie."""
    services = services_of(request.app.state)
    token, target = data.get("token", "").strip(), safe_next(data.get("next"))
    try:
        services.auth.authorize(f"Bearer {token}", Needed.READ)
    except (Unauthenticated, Forbidden) as exc:
        status = 403 if isinstance(exc, Forbidden) else 401
        return page("sign_in.html", {"next": target, "error": exc.detail}, status_code=status)
    cookie = Cookie(
        key=TOKEN_COOKIE,
        value=base64.urlsafe_b64encode(token.encode()).decode().rstrip("="),
        path=UI_PATH,
        max_age=SESSION_SECONDS,
        httponly=True,
        samesite="strict",
        secure=base_url_of(request, services).startswith("https://"),
    )
    return Redirect(target, status_code=303, cookies=[cookie], headers={"Cache-Control": "no-store"})


@post("/sign-out", status_code=303)
async def sign_out() -> Redirect:
    """Forget the token (the CSRF check ran first: another site cannot sign a user out)."""
    return Redirect(
        f"{UI_PATH}/sign-in", status_code=303, cookies=[_gone()], headers={"Cache-Control": "no-store"}
    )
