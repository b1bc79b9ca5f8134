"""The Tollgate web app: ``create_app`` wires settings, store, Redis and the ruleset into Flask and its blueprints.

Webhook authentication is mandatory: without ``TOLLGATE_WEBHOOK_TOKEN`` the app refuses to start, unless
``TOLLGATE_WEBHOOK_ALLOW_UNAUTHENTICATED=true`` says, on purpose, that anyone who can reach the port may
announce pushes (a local sandbox); that mode logs a warning at every start.
"""

from __future__ import annotations

import logging
import secrets

from flask import Flask

from service import actions, auth, login, pages
from service.api import STORE_EXTENSION, api_bp
from service.errors import register_error_handlers
from service.webhook import REDIS_EXTENSION, RULESET_EXTENSION, SETTINGS_EXTENSION, webhook_bp
from workers.errors import ConfigError
from workers.queue import redis_connection
from workers.settings import Settings
from workers.store import Store

log = logging.getLogger(__name__)

__all__ = ["create_app"]


def check_webhook_auth(settings: Settings) -> None:
    """Refuse an unauthenticated webhook unless explicitly allowed (then warn loudly)."""
    if settings.webhook_token:
        return
    if not settings.webhook_allow_unauthenticated:
        raise ConfigError(
            "TOLLGATE_WEBHOOK_TOKEN is not set: anyone could announce pushes. Set it (and the registry's "
            "notification header 'Authorization: Bearer <token>'), or set "
            "TOLLGATE_WEBHOOK_ALLOW_UNAUTHENTICATED=true for a local sandbox."
        )
    log.warning("INSECURE: the registry webhook accepts unauthenticated requests (no TOLLGATE_WEBHOOK_TOKEN)")


def current_ruleset(settings: Settings) -> str:
    """The ruleset version the web stamps on queued scans (a content hash; yara is not imported)."""
    try:
        from rules.loader import ruleset_version
    except ImportError as exc:
        raise ConfigError(f"rules.loader.ruleset_version is not available: {exc}") from exc
    return str(ruleset_version(settings.rules_dir, settings.rules_extra))


def create_app(settings: Settings | None = None) -> Flask:
    """Build the web app; the database schema is migrated once here (idempotent), Redis is connected lazily."""
    settings = settings if settings is not None else Settings.from_env()
    check_webhook_auth(settings)
    app = Flask(__name__)
    if settings.secret_key:
        app.config["SECRET_KEY"] = settings.secret_key
    else:
        # Sessions and CSRF tokens then die with the process; fine for one local process, not for several.
        log.warning("TOLLGATE_SECRET_KEY is not set; using a random key for this process")
        app.config["SECRET_KEY"] = secrets.token_hex(32)
    app.json.sort_keys = False  # type: ignore[attr-defined]  # keep records in the documented field order

    ruleset = current_ruleset(settings)
    store = Store.from_settings(settings)
    store.migrate()
    app.extensions[SETTINGS_EXTENSION] = settings
    app.extensions[STORE_EXTENSION] = store
    app.extensions[REDIS_EXTENSION] = redis_connection(settings)
    app.extensions[RULESET_EXTENSION] = ruleset

    app.register_blueprint(webhook_bp)
    app.register_blueprint(api_bp)
    auth.init_app(app, settings)  # people's and machines' credentials, the read guard
    actions.init_app(app)  # the write API
    login.init_app(app)  # login and the browser forms
    pages.init_app(app)  # the status pages, badges and exports
    register_error_handlers(app)
    log.info("tollgate web app ready (ruleset %s, registry %s)", ruleset, settings.registry_url)
    return app
