"""People in a browser: ``/login``, ``/logout``, and the form endpoints that release, quarantine and rescan.

The pages those forms sit on are in :mod:`service.pages`. Every form carries the session's CSRF token;
every action redirects back with a flash message, or answers an error page with the status the API would use.
"""

from __future__ import annotations

from typing import Any, cast

from flask import Blueprint, Flask, current_app, flash, redirect, render_template, request
from werkzeug.exceptions import RequestEntityTooLarge

from service.actions import REASON, perform_move, perform_rescan, read_body
from service.api import STORE_EXTENSION
from service.auth import (
    AuthError,
    check_csrf,
    current_credential,
    end_session,
    require,
    safe_next,
    start_session,
)
from workers import accounts, audit
from workers.audit import AuditAction
from workers.domain import Actor, ActorKind, MoveKind, Role
from workers.store import Store

login_bp = Blueprint("pages_auth", __name__)

LOGIN_ACTOR = Actor(ActorKind.SYSTEM, "login")  # the author of failed attempts: nobody proved who they are
MAX_LOGIN_BODY = 8 * 1024
MAX_NAME_SHOWN = 255
DEFAULT_LANDING = "/audit"


def _store() -> Store:
    return cast(Store, current_app.extensions[STORE_EXTENSION])


def _page_context() -> dict[str, Any]:
    """``actor`` and ``via`` for the page header; a bad credential just shows as logged out."""
    try:
        credential = current_credential()
    except AuthError:
        credential = None
    if credential is None:
        return {"actor": None, "via": None}
    return {"actor": credential.actor, "via": credential.via.value}


# ---------------------------------------------------------------------------------------------------------------
# Login


@login_bp.get("/login")
def login_form() -> Any:
    """The login form."""
    return render_template("login.html", next=safe_next(request.args.get("next")), name="", error=None)


@login_bp.post("/login")
def login() -> Any:
    """Check the name and password; start a fresh session; a few failures in a row throttle the name."""
    request.max_content_length = MAX_LOGIN_BODY + 1
    try:
        check_csrf()
        form = request.form
    except RequestEntityTooLarge:
        return render_template("message.html", title="Too large", message="The form is too large."), 413
    name = form.get("name", "").strip()[:MAX_NAME_SHOWN]
    password = form.get("password", "")
    landing = safe_next(form.get("next")) if form.get("next") not in {None, "", "/"} else DEFAULT_LANDING
    store = _store()
    where = {"addr": request.remote_addr}
    if not name or not password:
        return _login_refused(name, landing, "give a name and a password", 400)
    if accounts.login_throttled(store, name):
        audit.record(store, LOGIN_ACTOR, AuditAction.LOGIN_FAILED, f"user:{name}", reason="throttled", details=where)
        return _login_refused(name, landing, "too many failed attempts; wait a few minutes", 429)
    user = accounts.check_login(store, name, password)
    if user is None:
        audit.record(
            store, LOGIN_ACTOR, AuditAction.LOGIN_FAILED, f"user:{name}", reason="wrong name or password", details=where
        )
        return _login_refused(name, landing, "wrong name or password", 401)
    start_session(user)
    audit.record(store, user.actor, AuditAction.LOGIN, f"user:{name}", reason="password login", details=where)
    flash(f"Logged in as {user.name} ({user.role.value}).")
    return redirect(landing, code=303)


def _login_refused(name: str, landing: str, error: str, status: int) -> Any:
    return render_template("login.html", next=landing, name=name, error=error), status


@login_bp.post("/logout")
def logout() -> Any:
    """End this browser's session (``tollgate user`` ends every session of a person)."""
    request.max_content_length = MAX_LOGIN_BODY + 1
    check_csrf()
    end_session()
    flash("Logged out.")
    return redirect("/login", code=303)


# ---------------------------------------------------------------------------------------------------------------
# The image page's action forms (the pages themselves are in service/pages.py)


def _done(ref: str, message: str) -> Any:
    flash(message)
    return redirect(f"/images/{ref}", code=303)


@login_bp.post("/images/<path:ref>/release")
@require(Role.SECURITY)
def release_form(ref: str) -> Any:
    """The release button."""
    ticket = perform_move(ref, MoveKind.RELEASE, read_body({"reason": REASON}, 16 * 1024)["reason"])
    return _done(ref, f"Release requested ({ticket.get('state', 'queued')}).")


@login_bp.post("/images/<path:ref>/quarantine")
@require(Role.SECURITY)
def quarantine_form(ref: str) -> Any:
    """The quarantine button."""
    ticket = perform_move(ref, MoveKind.QUARANTINE, read_body({"reason": REASON}, 16 * 1024)["reason"])
    return _done(ref, f"Quarantine requested ({ticket.get('state', 'queued')}).")


@login_bp.post("/images/<path:ref>/rescan")
@require(Role.DEVELOPER)
def rescan_form(ref: str) -> Any:
    """The rescan button."""
    ticket = perform_rescan(ref, read_body({"reason": REASON}, 16 * 1024)["reason"])
    return _done(ref, "Rescan queued." if ticket["queued"] else "A rescan was already queued.")


def init_app(app: Flask) -> None:
    """Register the pages and the header context."""
    app.register_blueprint(login_bp)
    app.context_processor(_page_context)
