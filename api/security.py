"""The browser-facing edge: where the service lives, its security headers, and its forms'
CSRF checks.

**Base URL.** Links that leave the page (the calendar feed's) are built from
``CAREPATH_BASE_URL`` (e.g. ``https://carepath.clinic.example``), never from the request's
Host header, which the client chooses. The forms' origin check compares with it too.

**Headers.** Every answer carries a Content-Security-Policy that admits only the service's
own scripts, stylesheets and images (no inline script or style anywhere, /docs included),
``frame-ancestors 'none'``, ``nosniff`` and ``Referrer-Policy: same-origin``, and every
answer but the static assets ``Cache-Control: no-store``: pages and JSON answers alike carry
patient data. ``same-origin`` rather than ``no-referrer``: under ``no-referrer`` a browser
sends ``Origin: null`` on every form post, so the origin check below could not tell our own
forms from a sandboxed attacker's.

**Forms.** Every page form carries a CSRF token bound to a cookie: the session's for the
signed-in forms, a pre-session cookie's for sign-in (so a page elsewhere cannot sign the
browser in with the attacker's token). The token is a hash of the cookie's value, which is
HttpOnly: another site can neither read nor compute it, and no server secret is needed,
so every process of ``serve --workers N`` checks every form. Before the token, the post's
origin must be the base URL's, or when none is configured the request's own (scheme and
Host: a cross-site post still names the attacker's site in ``Origin``). A post whose
``Sec-Fetch-Site`` says another site (``same-site`` included: a sibling host or port) sent
it is refused whatever else it says. One that sends neither ``Origin`` nor ``Referer`` is
admitted only when ``Sec-Fetch-Site: same-origin`` says the browser sent it from our page;
current browsers send ``Origin`` with every form post, so anything else is refused.

**Proxies.** ``X-Forwarded-Proto`` decides the scheme (and so the cookies' ``Secure`` flag)
only from the proxies ``CAREPATH_TRUSTED_PROXIES`` names: ``carepath serve`` hands them to
uvicorn as ``forwarded_allow_ips``, and trusts none by default.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Form, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.sessions import SessionPolicy
from engine.errors import CarepathError

BASE_URL_ENV = "CAREPATH_BASE_URL"
TRUSTED_PROXIES_ENV = "CAREPATH_TRUSTED_PROXIES"
SESSION_IDLE_ENV = "CAREPATH_SESSION_IDLE_MINUTES"
SESSION_MAX_ENV = "CAREPATH_SESSION_MAX_HOURS"
ASSETS_PREFIX = "/assets/"
CSRF_FIELD = "csrf_token"
# Set on a request whose form passed the checks: require() then admits the session cookie
# for that post (otherwise the cookie only opens pages and reads).
FORM_CHECKED = "carepath.form_checked"

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_DEFAULT_PORTS = {"http": 80, "https": 443}


class WebSettingError(CarepathError):
    """A browser-facing setting that cannot be used; ``setting`` names it."""

    def __init__(self, setting: str, reason: str) -> None:
        super().__init__(f"{setting}: {reason}")
        self.setting = setting
        self.reason = reason


class FormRefused(CarepathError):
    """A page form that failed the origin or CSRF check; nothing was done with it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of an http(s) URL, default port left out; None otherwise."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    host = parts.hostname.lower()
    host = f"[{host}]" if ":" in host else host
    shown = f":{port}" if port is not None and port != _DEFAULT_PORTS[parts.scheme] else ""
    return f"{parts.scheme}://{host}{shown}"


def parse_base_url(value: str, setting: str = BASE_URL_ENV) -> str:
    """The service's origin from a base URL setting.

    Raises:
        WebSettingError: not an http(s) URL with a host, or one with a path, query or
            credentials (carepath serves its routes from the root).
    """
    origin = origin_of(value)
    if origin is None:
        raise WebSettingError(
            setting, f"must be an http:// or https:// URL with a host, not {value!r}"
        )
    parts = urlsplit(value.strip())
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise WebSettingError(
            setting, f"must be scheme, host and port only (e.g. {origin}), not {value!r}"
        )
    return origin


def parse_trusted_proxies(value: str, setting: str = TRUSTED_PROXIES_ENV) -> str | None:
    """Comma-separated proxy addresses or networks (``10.0.0.0/8``), or ``*`` for any
    client; None when empty. Passed to uvicorn as ``forwarded_allow_ips``.

    Raises:
        WebSettingError: an entry that is not an IP address or network.
    """
    entries = [entry.strip() for entry in value.split(",") if entry.strip()]
    for entry in entries:
        if entry == "*":
            continue
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise WebSettingError(
                setting, f"{entry!r} is not an IP address or network (e.g. 10.0.0.2, 10.0.0.0/8)"
            ) from None
    return ",".join(entries) or None


def default_base_url(host: str, port: int) -> str:
    """``carepath serve``'s base URL when none is given: its own ``http://HOST:PORT``.

    Raises:
        WebSettingError: HOST listens on every address (0.0.0.0, ::), which is not an
            address anyone reaches it at.
    """
    if host in ("0.0.0.0", "::", ""):
        raise WebSettingError(
            "--base-url",
            f"is required with --host {host!r}: links and the forms' origin check need "
            "the address people reach carepath at (or set CAREPATH_BASE_URL)",
        )
    return parse_base_url(f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}")


@dataclass(frozen=True)
class WebSettings:
    """Where the service is reached, and how long a page session lasts.

    ``base_url`` is an origin (see :func:`parse_base_url`); None means "not configured":
    the calendar feed then carries no links, and forms are checked against the request's
    own origin. ``carepath serve`` always configures one.
    """

    base_url: str | None = None
    session: SessionPolicy = field(default_factory=SessionPolicy)

    @property
    def https(self) -> bool:
        return self.base_url is not None and self.base_url.startswith("https://")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WebSettings:
        """From ``CAREPATH_BASE_URL``, ``CAREPATH_SESSION_IDLE_MINUTES`` (default 30) and
        ``CAREPATH_SESSION_MAX_HOURS`` (default 12).

        Raises:
            WebSettingError: a value that is not usable, named.
        """
        env = os.environ if environ is None else environ
        base = env.get(BASE_URL_ENV, "").strip()
        defaults = SessionPolicy()
        idle = _positive(env, SESSION_IDLE_ENV, defaults.idle / timedelta(minutes=1))
        absolute = _positive(env, SESSION_MAX_ENV, defaults.absolute / timedelta(hours=1))
        try:
            policy = SessionPolicy(timedelta(minutes=idle), timedelta(hours=absolute))
        except ValueError as exc:
            raise WebSettingError(SESSION_IDLE_ENV, str(exc)) from None
        return cls(parse_base_url(base) if base else None, policy)


def _positive(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise WebSettingError(name, f"must be a positive number, not {raw!r}")
    return value


# --------------------------------------------------------------------------------------------
# headers


class SecurityHeaders:
    """Adds the security headers to every answer: a plain ASGI middleware that appends a
    prepared list, so the episode read path pays one list concatenation for them."""

    def __init__(self, app: ASGIApp, hsts: bool = False) -> None:
        self.app = app
        common = [
            (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),  # frame-ancestors for browsers without CSP 2
            (b"referrer-policy", b"same-origin"),
            (b"cross-origin-opener-policy", b"same-origin"),
            (b"cross-origin-resource-policy", b"same-origin"),
        ]
        if hsts:
            common.append((b"strict-transport-security", b"max-age=31536000"))
        self.asset_headers = common  # the assets set their own Cache-Control
        self.headers = [*common, (b"cache-control", b"no-store")]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = self.asset_headers if scope["path"].startswith(ASSETS_PREFIX) else self.headers

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)


# --------------------------------------------------------------------------------------------
# forms


def form_token(cookie_value: str) -> str:
    """The CSRF token of the forms of a browser holding this session (or pre-session)
    cookie: a one-way hash, so the page can show it without revealing the cookie."""
    return hashlib.sha256(b"carepath-form\0" + cookie_value.encode()).hexdigest()


def own_origin(request: Request) -> str | None:
    """The origin this request was addressed to: its scheme (TLS, or a trusted proxy's
    ``X-Forwarded-Proto`` as uvicorn applies it) and its Host header."""
    return origin_of(f"{request.url.scheme}://{request.headers.get('host', '')}")


def origin_refusal(headers: Mapping[str, str], expected: str | None) -> str | None:
    """Why a form post's origin is refused, or None when it is ``expected``."""
    site = headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return f"the form was sent from another site (Sec-Fetch-Site: {site})"
    sent = headers.get("origin")
    source = "Origin"
    if sent is None and headers.get("referer"):
        sent, source = headers["referer"], "Referer"
    if sent is None:
        if site == "same-origin":
            return None
        return "the browser did not say which page sent the form (no Origin or Referer)"
    origin = origin_of(sent)
    if origin is None or origin != expected:
        return f"the form came from {sent!r} ({source}), not from carepath at {expected}"
    return None


def token_refusal(cookie_value: str | None, submitted: str) -> str | None:
    """Why a form's CSRF token is refused, or None when it matches the cookie's."""
    if not cookie_value:
        return "the browser sent no session cookie with the form (are cookies blocked?)"
    if not submitted:
        return "the form carried no CSRF token"
    if not hmac.compare_digest(submitted.encode(), form_token(cookie_value).encode()):
        return "the form's CSRF token is not this browser's (the page may be out of date)"
    return None


async def _settings(request: Request) -> WebSettings:
    return request.app.state.services.web  # type: ignore[no-any-return]


def checked_form(binding_cookie: str) -> Callable[..., Awaitable[None]]:
    """The dependency every page form's route declares: the post's origin, then its CSRF
    token against ``binding_cookie``; raises :class:`FormRefused` before the route runs."""

    async def check(
        request: Request,
        web: Annotated[WebSettings, Depends(_settings)],
        csrf_token: Annotated[str, Form(alias=CSRF_FIELD)] = "",
    ) -> None:
        expected = web.base_url or own_origin(request)
        reason = origin_refusal(request.headers, expected) or token_refusal(
            request.cookies.get(binding_cookie), csrf_token
        )
        if reason is not None:
            raise FormRefused(reason)
        request.scope[FORM_CHECKED] = True

    return check


def cookie_is_secure(request: Request, web: WebSettings) -> bool:
    """Whether the session cookie is marked Secure: served over TLS (directly, or behind a
    trusted proxy that says so), or configured at an https base URL."""
    return request.url.scheme == "https" or web.https
