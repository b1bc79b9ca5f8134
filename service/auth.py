"""Who is asking: the request's actor from an API token, a login session or a trusted proxy, and ``require(role)``.

Three ways in, tried in this order:

1. ``Authorization: Bearer tg_<id>_<secret>`` — machines. A presented token must be valid (401 otherwise,
   even where anonymous reads are allowed, so a broken token is noticed). No CSRF: browsers never attach it.
2. An identity header (``TOLLGATE_AUTH_PROXY_HEADER``) — only from ``TOLLGATE_AUTH_TRUSTED_PROXIES``; from
   any other address it is ignored, since anyone can send a header.
3. The signed session cookie set by ``/login`` — people.

Browsers attach cookies (and a proxy's own credentials) to cross-site requests by themselves, so every
unsafe request made with (2) or (3) must carry the session's CSRF token, in the ``csrf_token`` form field
or the ``X-CSRF-Token`` header.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from functools import wraps
from typing import Any, TypeVar, cast
from urllib.parse import quote

from flask import Flask, Response, current_app, g, redirect, render_template, request, session

from service.api import STORE_EXTENSION
from service.errors import json_error, wants_json
from service.webhook import SETTINGS_EXTENSION
from workers import accounts
from workers.domain import Actor, ActorKind, Role
from workers.errors import ConfigError
from workers.settings import Settings
from workers.store import Store

log = logging.getLogger(__name__)

NETWORKS_EXTENSION = "tollgate.trusted_proxies"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SESSION_COOKIE = "tollgate_session"
DEFAULT_MAX_BODY = 64 * 1024  # a reason and a few fields; the policy route allows more
# Load balancers probe health without credentials; verifiers fetch the public key that checks verdicts.
PUBLIC_API_PATHS = frozenset({"/api/v1/health", "/api/v1/keys"})
# The pages show what the API serves, so they follow the same rule; badges (/badge/…) stay public.
GUARDED_READ_PREFIXES = ("/api/v1/", "/images/", "/repositories", "/queue", "/search", "/waivers")
GUARDED_READ_PATHS = frozenset({"/"})  # the overview (a prefix "/" would guard everything, the login page too)
_UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_G_KEY = "tollgate_credential"

View = TypeVar("View", bound=Callable[..., Any])


class Via(StrEnum):
    """How the request proved who it is."""

    TOKEN = "token"  # noqa: S105 - a kind of credential, not a secret
    PROXY = "proxy"
    SESSION = "session"


@dataclass(frozen=True)
class Credential:
    """The actor a request acts as and how it proved it."""

    actor: Actor
    via: Via
    token_id: str | None = None

    @property
    def needs_csrf(self) -> bool:
        """True for what a browser sends by itself (cookies, proxy identities)."""
        return self.via is not Via.TOKEN


class AuthError(Exception):
    """The request may not do this: 401 (who are you?) or 403 (not you); rendered as JSON or HTML."""

    def __init__(self, status: int, error: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.error = error
        self.reason = reason


def _settings() -> Settings:
    return cast(Settings, current_app.extensions[SETTINGS_EXTENSION])


def _store() -> Store:
    return cast(Store, current_app.extensions[STORE_EXTENSION])


# ---------------------------------------------------------------------------------------------------------------
# Resolving the credential


def current_credential() -> Credential | None:
    """The request's credential, resolved once per request; AuthError(401/403) for a bad one presented."""
    if _G_KEY not in g:
        setattr(g, _G_KEY, _resolve())
    return cast(Credential | None, g.get(_G_KEY))


def _resolve() -> Credential | None:
    header = request.headers.get("Authorization")
    if header is not None:
        return _from_authorization(header)
    proxied = _from_proxy()
    if proxied is not None:
        return proxied
    return _from_session()


def _from_authorization(header: str) -> Credential:
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise AuthError(401, "unauthorized", "send Authorization: Bearer <token> (see tollgate token create)")
    info = accounts.authenticate_token(_store(), presented.strip())
    if info is None:
        raise AuthError(401, "unauthorized", "the token is not valid (unknown, revoked or expired)")
    return Credential(info.actor, Via.TOKEN, info.token_id)


def _from_proxy() -> Credential | None:
    settings = _settings()
    if not settings.auth_proxy_header:
        return None
    name = request.headers.get(settings.auth_proxy_header)
    if name is None:
        return None
    if not _from_trusted_proxy():
        log.warning("ignoring %s from untrusted address %s", settings.auth_proxy_header, request.remote_addr)
        return None
    name = name.strip()
    try:
        accounts.check_user_name(name)
    except ValueError:
        raise AuthError(401, "unauthorized", "the proxy's identity header does not hold a user name") from None
    user = accounts.get_user(_store(), name)
    if user is not None:
        if user.disabled:
            raise AuthError(403, "forbidden", f"user {name} is disabled")
        return Credential(user.actor, Via.PROXY)
    if not settings.auth_proxy_default_role:
        raise AuthError(403, "forbidden", f"{name} is not a Tollgate user (ask for `tollgate user create`)")
    return Credential(Actor(ActorKind.USER, name, Role(settings.auth_proxy_default_role)), Via.PROXY)


def _from_trusted_proxy() -> bool:
    networks = cast(
        tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...], current_app.extensions[NETWORKS_EXTENSION]
    )
    try:
        address = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


def _from_session() -> Credential | None:
    name = session.get("user")
    if not isinstance(name, str):
        return None
    user = accounts.get_user(_store(), name)
    if user is None or user.disabled or session.get("epoch") != user.session_epoch:
        # Disabled, or signed out everywhere since this cookie was issued: forget the login, keep nothing.
        session.pop("user", None)
        session.pop("epoch", None)
        return None
    return Credential(user.actor, Via.SESSION)


def start_session(user: accounts.UserInfo) -> None:
    """Log ``user`` in: a fresh session (no fixation) with a new CSRF token."""
    session.clear()
    session.permanent = True
    session["user"] = user.name
    session["epoch"] = user.session_epoch
    session["csrf"] = secrets.token_urlsafe(32)
    g.pop(_G_KEY, None)


def end_session() -> None:
    """Log out this browser."""
    session.clear()
    g.pop(_G_KEY, None)


# ---------------------------------------------------------------------------------------------------------------
# CSRF


def csrf_token() -> str:
    """This session's CSRF token (created on first use); templates put it in every form."""
    token = session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


def check_csrf() -> None:
    """AuthError(403) unless the request carries this session's CSRF token."""
    expected = session.get("csrf")
    presented = request.headers.get(CSRF_HEADER)
    if presented is None and request.mimetype in {"application/x-www-form-urlencoded", "multipart/form-data"}:
        presented = request.form.get(CSRF_FIELD)
    if not isinstance(expected, str) or not presented or not hmac.compare_digest(presented.encode(), expected.encode()):
        raise AuthError(403, "forbidden", "the CSRF token is missing or wrong; reload the page and try again")


# ---------------------------------------------------------------------------------------------------------------
# Authorization


def require(role: Role, *, unscoped: bool = False, max_body: int = DEFAULT_MAX_BODY) -> Callable[[View], View]:
    """The view needs a credential of at least ``role``; ``unscoped`` refuses repository-scoped credentials.

    Global actions (waivers, policy) take ``unscoped``: a credential limited to some repositories must not
    change what applies to all of them. Repository-targeted views call :func:`ensure_scope` themselves.
    """

    def decorator(view: View) -> View:
        @wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            # Cap the body before anything (the CSRF check) reads it; one byte over means too large.
            request.max_content_length = max_body + 1
            credential = authorize(role)
            if credential.needs_csrf and request.method in _UNSAFE_METHODS:
                check_csrf()
            if unscoped and credential.actor.repositories:
                raise AuthError(403, "forbidden", "a credential limited to some repositories cannot do this")
            return view(*args, **kwargs)

        return cast(View, wrapped)

    return decorator


def authorize(role: Role) -> Credential:
    """The request's credential when it has at least ``role``; AuthError(401) without one, 403 when too weak."""
    credential = current_credential()
    if credential is None:
        raise AuthError(401, "unauthorized", "log in, or send Authorization: Bearer <token>")
    actor_role = credential.actor.role
    if actor_role is None or not actor_role.allows(role):
        have = actor_role.value if actor_role is not None else "none"
        raise AuthError(403, "forbidden", f"this needs the {role.value} role; {credential.actor} has {have}")
    return credential


def current_actor() -> Actor:
    """The authorized actor of a view behind :func:`require`."""
    credential = current_credential()
    if credential is None:  # pragma: no cover - require() answered 401 already
        raise AuthError(401, "unauthorized", "no credential")
    return credential.actor


def ensure_scope(repository: str) -> None:
    """AuthError(403) unless the request's credential covers ``repository``."""
    actor = current_actor()
    if not accounts.in_scope(actor, repository):
        scope = ", ".join(actor.repositories)
        raise AuthError(403, "forbidden", f"{actor} is limited to {scope}; {repository} is not among them")


def _guard_reads() -> Any:
    """Before every request: reads of records (API and pages) need a viewer unless anonymous reads are on."""
    path = request.path
    guarded = path.startswith(GUARDED_READ_PREFIXES) or path in GUARDED_READ_PATHS
    if not guarded or path in PUBLIC_API_PATHS:
        return None
    if request.method in _UNSAFE_METHODS:
        return None  # write routes check with require()
    try:
        if request.headers.get("Authorization") is not None or not _settings().anonymous_read:
            authorize(Role.VIEWER)
    except AuthError as exc:
        return _auth_error(exc)
    return None


def _auth_error(exc: AuthError) -> Any:
    if wants_json():
        headers = {"WWW-Authenticate": 'Bearer realm="tollgate"'} if exc.status == 401 else {}
        return json_error(exc.status, exc.error, exc.reason, headers)
    if exc.status == 401:
        target = request.full_path if request.method == "GET" else request.referrer or "/"
        return redirect(f"/login?next={quote(safe_next(target))}", code=303)
    return Response(render_template("message.html", title=exc.error.capitalize(), message=exc.reason), exc.status)


def safe_next(target: str | None) -> str:
    """``target`` when it is a path on this site, ``/`` otherwise (no open redirect after login)."""
    if not target:
        return "/"
    if "://" in target:
        # A Referer is absolute: keep only its path when it points here.
        public = _settings().public_url.rstrip("/")
        host = request.host_url.rstrip("/")
        for base in (public, host):
            if target.startswith(base + "/"):
                target = target[len(base) :]
                break
        else:
            return "/"
    target = target.rstrip("?")
    if not target.startswith("/") or target.startswith(("//", "/\\")) or any(c in target for c in "\r\n\\"):
        return "/"
    return target


def init_app(app: Flask, settings: Settings) -> None:
    """Validate the auth settings, configure the session cookie, install the read guard and the error page."""
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for cidr in settings.auth_trusted_proxies:
        try:
            networks.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError:
            raise ConfigError(f"TOLLGATE_AUTH_TRUSTED_PROXIES: not an address or CIDR: {cidr!r}") from None
    if settings.auth_proxy_header and not networks:
        raise ConfigError(
            "TOLLGATE_AUTH_PROXY_HEADER is set but TOLLGATE_AUTH_TRUSTED_PROXIES is empty: name the proxy's "
            "addresses, or anyone could claim any identity"
        )
    if settings.auth_proxy_default_role and settings.auth_proxy_default_role not in {r.value for r in Role}:
        raise ConfigError("TOLLGATE_AUTH_PROXY_DEFAULT_ROLE must be viewer, developer, security or empty")
    if settings.session_lifetime <= 0:
        raise ConfigError("TOLLGATE_SESSION_LIFETIME must be a positive number of seconds")
    app.extensions[NETWORKS_EXTENSION] = tuple(networks)
    app.config.update(
        SESSION_COOKIE_NAME=SESSION_COOKIE,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.public_url.startswith("https://"),
        PERMANENT_SESSION_LIFETIME=timedelta(seconds=settings.session_lifetime),
    )
    app.before_request(_guard_reads)
    app.register_error_handler(AuthError, _auth_error)
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.jinja_env.globals["csrf_field"] = CSRF_FIELD
    if not settings.anonymous_read:
        log.info("API reads need a viewer credential (TOLLGATE_ANONYMOUS_READ=false)")
