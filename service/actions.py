"""The write API under ``/api/v1``: release, quarantine, rescan, waivers, policy, and the audit trail.

Every write is a POST whose body (JSON, or a form from a browser page) carries a non-blank ``reason``;
fields are validated strictly (unknown ones refused) before anything happens, and the action is audited
with the credential's actor by the worker function that performs it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import redis
from flask import Blueprint, Flask, Response, current_app, jsonify, render_template, request, stream_with_context
from werkzeug.exceptions import RequestEntityTooLarge

from service.api import STORE_EXTENSION, BadReference, parse_image_path
from service.auth import CSRF_FIELD, current_actor, ensure_scope, require
from service.errors import json_error, wants_json
from service.webhook import REDIS_EXTENSION, RULESET_EXTENSION, SETTINGS_EXTENSION
from workers import audit
from workers.audit import AuditAction
from workers.domain import Digest, MoveKind, Role
from workers.errors import ActionRefused, ConfigError, QueueUnavailable, UnknownImage
from workers.settings import Settings
from workers.store import Store

log = logging.getLogger(__name__)

actions_bp = Blueprint("actions", __name__, url_prefix="/api/v1")

MAX_REASON = 2000
MAX_POLICY_BYTES = 256 * 1024
MAX_POLICY_BODY = MAX_POLICY_BYTES * 2 + 4096  # JSON escaping may double the text
MAX_WAIVER_DAYS = 3650
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
AUDIT_QUERY = frozenset({"after_id", "since", "until", "target", "target_prefix", "action", "actor", "limit", "format"})


class InputError(Exception):
    """The request cannot be acted on as sent (400, 404, 409, 413, 415); rendered as JSON or a page."""

    def __init__(self, status: int, error: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.error = error
        self.reason = reason


@dataclass(frozen=True)
class Field:
    """One accepted body field: its JSON type, whether it is required, and its size bound."""

    kind: type
    required: bool = False
    max_length: int = 1000
    low: int = 0
    high: int = 2**31
    strip: bool = True  # surrounding white space is noise in a reason, but content in a policy text


REASON = Field(str, required=True, max_length=MAX_REASON)


def _settings() -> Settings:
    return cast(Settings, current_app.extensions[SETTINGS_EXTENSION])


def _store() -> Store:
    return cast(Store, current_app.extensions[STORE_EXTENSION])


def _redis() -> redis.Redis:
    return cast(redis.Redis, current_app.extensions[REDIS_EXTENSION])


# ---------------------------------------------------------------------------------------------------------------
# Bodies


def read_body(spec: Mapping[str, Field], max_bytes: int) -> dict[str, Any]:
    """The request's JSON object (or form) checked against ``spec``; InputError says what is wrong."""
    raw = _raw_fields(max_bytes)
    unknown = sorted(set(raw) - set(spec))
    if unknown:
        shown = ", ".join(name[:40] for name in unknown[:5])
        raise InputError(400, "bad request", f"unknown field(s): {shown}; accepted: {', '.join(spec)}")
    values: dict[str, Any] = {}
    for name, field in spec.items():
        if name not in raw or raw[name] is None or (field.kind is not str and raw[name] == ""):
            if field.required:
                raise InputError(400, "bad request", f"{name} is required")
            continue
        values[name] = _check_field(name, field, raw[name], from_form=request.mimetype in FORM_TYPES)
    return values


def _raw_fields(max_bytes: int) -> dict[str, Any]:
    request.max_content_length = max_bytes + 1  # werkzeug stops at the cap silently: one byte over is "too large"
    try:
        if request.mimetype in FORM_TYPES:
            form = request.form
            fields: dict[str, Any] = {}
            for name in form:
                if name == CSRF_FIELD:
                    continue
                given = form.getlist(name)
                if len(given) != 1:
                    raise InputError(400, "bad request", f"{name[:40]} is given {len(given)} times")
                fields[name] = given[0]
            if request.content_length is not None and request.content_length > max_bytes:
                raise _too_large(max_bytes)
            return fields
        if request.mimetype != "application/json":
            shown = (request.mimetype or "none")[:80]
            raise InputError(415, "unsupported media type", f"send application/json (got {shown})")
        body = request.get_data(cache=True)
    except RequestEntityTooLarge:
        raise _too_large(max_bytes) from None
    if len(body) > max_bytes:
        raise _too_large(max_bytes)
    try:
        document = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise InputError(400, "bad request", f"the body is not JSON: {str(exc)[:100]}") from None
    if not isinstance(document, dict):
        raise InputError(400, "bad request", "the body must be a JSON object")
    return cast(dict[str, Any], document)


def _too_large(max_bytes: int) -> InputError:
    return InputError(413, "request entity too large", f"the body is larger than {max_bytes} bytes")


def _check_field(name: str, field: Field, value: Any, *, from_form: bool) -> Any:
    if field.kind is str:
        if not isinstance(value, str):
            raise InputError(400, "bad request", f"{name} must be a string")
        if field.strip:
            value = value.strip()
        if field.required and not value.strip():
            raise InputError(400, "bad request", f"{name} must not be blank")
        if len(value) > field.max_length:
            raise InputError(400, "bad request", f"{name} is longer than {field.max_length} characters")
        if any(ord(c) < 32 and c not in "\n\t\r" for c in value) or "\x7f" in value:
            raise InputError(400, "bad request", f"{name} contains control characters")
        return value
    if field.kind is bool:
        if from_form and isinstance(value, str) and value in {"true", "false"}:
            return value == "true"
        if not isinstance(value, bool):
            raise InputError(400, "bad request", f"{name} must be true or false")
        return value
    if field.kind is int:
        if from_form and isinstance(value, str) and value.isdigit() and len(value) < 12:
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or not field.low <= value <= field.high:
            raise InputError(400, "bad request", f"{name} must be an integer from {field.low} to {field.high}")
        return value
    raise AssertionError(f"no check for {field.kind}")  # pragma: no cover - a programming error


def parse_time(name: str, value: str) -> datetime:
    """An ISO 8601 time with a zone (``2026-12-31T00:00:00Z``); InputError otherwise."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InputError(400, "bad request", f"{name} is not an ISO 8601 time: {value[:60]!r}") from None
    if moment.tzinfo is None:
        raise InputError(400, "bad request", f"{name} needs a time zone, e.g. 2026-12-31T00:00:00Z")
    return moment


def image_target(ref: str) -> tuple[str, Digest]:
    """The (repository, digest) a write names, checked against the credential's repository scope."""
    try:
        selector = parse_image_path(ref)
    except BadReference as exc:
        raise InputError(400, "bad reference", str(exc)) from None
    if selector.digest is None:
        raise InputError(400, "bad reference", "name the image by digest (<repository>@<digest>): tags move")
    ensure_scope(selector.repository)
    return selector.repository, selector.digest


# ---------------------------------------------------------------------------------------------------------------
# Operations shared by the API and the browser forms


def perform_move(ref: str, kind: MoveKind, reason: str) -> dict[str, Any]:
    """Ask for a release or a quarantine of ``ref``; the ticket's JSON."""
    from workers.quarantine.jobs import request_move

    repository, digest = image_target(ref)
    try:
        ticket = request_move(_settings(), _store(), _redis(), repository, digest, kind, current_actor(), reason)
    except UnknownImage as exc:
        raise InputError(404, "not found", exc.diagnostics()) from None
    except ActionRefused as exc:
        raise InputError(409, "conflict", exc.diagnostics()) from None
    except ValueError as exc:
        raise InputError(400, "bad request", str(exc)[:300]) from None
    return ticket.to_json()


def perform_rescan(ref: str, reason: str) -> dict[str, Any]:
    """Queue a rescan of ``ref``; the ticket's JSON."""
    from workers.rescans import request_rescan

    repository, digest = image_target(ref)
    ruleset = cast(str, current_app.extensions[RULESET_EXTENSION])
    try:
        ticket = request_rescan(
            _settings(), _store(), _redis(), repository, digest, ruleset=ruleset, actor=current_actor(), reason=reason
        )
    except UnknownImage as exc:
        raise InputError(404, "not found", exc.diagnostics()) from None
    return ticket.to_json()


# ---------------------------------------------------------------------------------------------------------------
# Image actions


def _accepted(body: dict[str, Any]) -> Response:
    response = jsonify(body)
    response.status_code = 202
    return response


@actions_bp.post("/images/<path:ref>/release")
@require(Role.SECURITY)
def release(ref: str) -> Any:
    """Put every tag the quarantine took back on the exact original digest."""
    body = read_body({"reason": REASON}, 16 * 1024)
    return _accepted(perform_move(ref, MoveKind.RELEASE, body["reason"]))


@actions_bp.post("/images/<path:ref>/quarantine")
@require(Role.SECURITY)
def quarantine(ref: str) -> Any:
    """Take the image out of service (preserved in the quarantine repository first)."""
    body = read_body({"reason": REASON}, 16 * 1024)
    return _accepted(perform_move(ref, MoveKind.QUARANTINE, body["reason"]))


@actions_bp.post("/images/<path:ref>/rescan")
@require(Role.DEVELOPER)
def rescan(ref: str) -> Any:
    """Scan the image again under the current ruleset (on the rescan queue, behind pushes)."""
    body = read_body({"reason": REASON}, 16 * 1024)
    return _accepted(perform_rescan(ref, body["reason"]))


# ---------------------------------------------------------------------------------------------------------------
# Waivers

WAIVER_FIELDS = {
    "rule": Field(str, required=True, max_length=200),
    "reason": REASON,
    "expires_at": Field(str, max_length=64),
    "expires_in_days": Field(int, low=1, high=MAX_WAIVER_DAYS),
    "repository_pattern": Field(str, max_length=255),
    "digest": Field(str, max_length=140),
    "path_pattern": Field(str, max_length=4096),
}


@actions_bp.post("/waivers")
@require(Role.SECURITY, unscoped=True)
def create_waiver() -> Any:
    """Waive one rule's findings, optionally narrowed to a repository pattern, a digest or a path, until expiry."""
    from workers import waivers

    body = read_body(WAIVER_FIELDS, 32 * 1024)
    if ("expires_at" in body) == ("expires_in_days" in body):
        raise InputError(400, "bad request", "give exactly one of expires_at (ISO 8601) and expires_in_days")
    store = _store()
    if "expires_at" in body:
        expires_at = parse_time("expires_at", body["expires_at"])
    else:
        expires_at = store.now() + timedelta(days=body["expires_in_days"])
    try:
        waiver = waivers.create_waiver(
            store,
            current_actor(),
            rule=body["rule"],
            reason=body["reason"],
            expires_at=expires_at,
            repository_pattern=body.get("repository_pattern") or None,
            digest=body.get("digest") or None,
            path_pattern=body.get("path_pattern") or None,
            max_days=_settings().waiver_max_days,
        )
    except ValueError as exc:
        raise InputError(400, "bad request", str(exc)[:300]) from None
    answer = {"waiver": waiver.to_json(), **_redecide(waivers.schedule_redecisions, waiver)}
    response = jsonify(answer)
    response.status_code = 201
    return response


def _redecide(schedule: Callable[..., int], waiver: Any) -> dict[str, Any]:
    """Queue the re-decision of the images a waiver change affects; the waiver stands even if Redis is down."""
    try:
        return {"redecisions": schedule(_settings(), _store(), _redis(), waiver)}
    except (QueueUnavailable, redis.RedisError) as exc:
        log.warning("waiver %s saved, re-decisions not queued: %s", getattr(waiver, "id", "?"), exc)
        return {"redecisions": None, "warning": "saved; affected images are re-decided at their next scan"}


@actions_bp.get("/waivers")
def list_waivers() -> Any:
    """Active waivers (``include_inactive=true``: revoked and expired ones too)."""
    from workers import waivers

    flag = request.args.get("include_inactive", "false")
    if flag not in {"true", "false"}:
        raise InputError(400, "bad parameter", "include_inactive must be true or false")
    listed = waivers.list_waivers(_store(), include_inactive=flag == "true")
    return jsonify({"waivers": [w.to_json() for w in listed]})


@actions_bp.post("/waivers/<int:waiver_id>/revoke")
@require(Role.SECURITY, unscoped=True)
def revoke_waiver(waiver_id: int) -> Any:
    """End a waiver now; the images it covered are decided again."""
    from workers import waivers

    body = read_body({"reason": REASON}, 16 * 1024)
    try:
        waiver = waivers.revoke_waiver(_store(), current_actor(), waiver_id, body["reason"])
    except LookupError as exc:
        raise InputError(404, "not found", str(exc)[:300]) from None
    except ActionRefused as exc:
        raise InputError(409, "conflict", exc.diagnostics()) from None
    return jsonify({"waiver": waiver.to_json(), **_redecide(waivers.schedule_redecisions, waiver)})


# ---------------------------------------------------------------------------------------------------------------
# Policy


@actions_bp.get("/policy")
def get_policy() -> Any:
    """The policy in force (null while none was ever stored: the built-in default applies)."""
    from workers import policy_versions

    current = policy_versions.current_policy(_store(), _settings())
    return jsonify({"policy": current.to_json() if current is not None else None})


@actions_bp.get("/policy/history")
def get_policy_history() -> Any:
    """Earlier policy versions, newest first."""
    from workers import policy_versions

    raw = request.args.get("limit", "20")
    if not raw.isdigit() or not 1 <= int(raw) <= 500:
        raise InputError(400, "bad parameter", "limit must be an integer from 1 to 500")
    return jsonify({"versions": [v.to_json() for v in policy_versions.policy_history(_store(), int(raw))]})


@actions_bp.post("/policy")
@require(Role.SECURITY, unscoped=True, max_body=MAX_POLICY_BODY)
def set_policy() -> Any:
    """Replace the policy with ``text`` (YAML); refused with diagnostics when it does not validate."""
    from workers import policy_versions

    body = read_body(
        {"text": Field(str, required=True, max_length=MAX_POLICY_BYTES, strip=False), "reason": REASON}, MAX_POLICY_BODY
    )
    settings, store = _settings(), _store()
    try:
        version = policy_versions.set_policy(store, current_actor(), body["text"], body["reason"], settings=settings)
    except ConfigError as exc:
        raise InputError(400, "invalid policy", exc.diagnostics()[:2000]) from None
    except ValueError as exc:
        raise InputError(400, "bad request", str(exc)[:300]) from None
    try:
        redecisions: int | None = policy_versions.schedule_policy_redecisions(settings, store, _redis())
    except (QueueUnavailable, redis.RedisError) as exc:
        log.warning("policy version %s saved, re-decisions not queued: %s", version.id, exc)
        redecisions = None
    response = jsonify({"policy": version.to_json(), "redecisions": redecisions})
    response.status_code = 201
    return response


# ---------------------------------------------------------------------------------------------------------------
# Audit trail


def audit_filters(args: Mapping[str, str]) -> dict[str, Any]:
    """The audit filters of a query string; InputError for unknown or malformed parameters."""
    unknown = sorted(set(args) - AUDIT_QUERY)
    if unknown:
        raise InputError(400, "bad parameter", f"unknown parameter(s): {', '.join(u[:40] for u in unknown[:5])}")
    filters: dict[str, Any] = {}
    for name in ("since", "until"):
        if args.get(name):
            filters[name] = parse_time(name, args[name])
    for name in ("target", "target_prefix", "actor"):
        value = args.get(name)
        if value:
            if len(value) > 1024:
                raise InputError(400, "bad parameter", f"{name} is longer than 1024 characters")
            filters[name] = value
    action = args.get("action")
    if action:
        if action not in {a.value for a in AuditAction}:
            known = ", ".join(a.value for a in AuditAction)
            raise InputError(400, "bad parameter", f"action must be one of {known}")
        filters["action"] = action
    return filters


def _int_param(args: Mapping[str, str], name: str, default: int | None, low: int, high: int) -> int | None:
    raw = args.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or len(raw) > 12 or not low <= int(raw) <= high:
        raise InputError(400, "bad parameter", f"{name} must be an integer from {low} to {high}")
    return int(raw)


@actions_bp.get("/audit")
@require(Role.VIEWER)
def get_audit() -> Any:
    """Audit records oldest first; page with ``after_id`` = ``next_after_id``; ``format=jsonl`` streams all."""
    filters = audit_filters(request.args)
    fmt = request.args.get("format", "json")
    if fmt == "jsonl":
        return _jsonl(filters)
    if fmt != "json":
        raise InputError(400, "bad parameter", "format must be json or jsonl")
    limit = cast(int, _int_param(request.args, "limit", 100, 1, audit.MAX_PAGE))
    after_id = _int_param(request.args, "after_id", None, 0, 2**62)
    page = audit.events(_store(), after_id=after_id, limit=limit, **filters)
    return jsonify(
        {
            "events": [e.to_json() for e in page],
            "limit": limit,
            "next_after_id": page[-1].id if len(page) == limit else None,
        }
    )


@actions_bp.get("/audit.jsonl")
@require(Role.VIEWER)
def export_audit() -> Any:
    """Every matching record as JSON lines, streamed (bounded memory however long the trail)."""
    filters = audit_filters(request.args)
    if request.args.get("format", "jsonl") != "jsonl" or "limit" in request.args or "after_id" in request.args:
        raise InputError(400, "bad parameter", "the export takes filters only (no format, limit or after_id)")
    return _jsonl(filters)


def _jsonl(filters: dict[str, Any]) -> Response:
    store = _store()

    def lines() -> Iterator[str]:
        for event in audit.iter_all(store, **filters):
            yield json.dumps(event.to_json(), ensure_ascii=False) + "\n"

    response = Response(stream_with_context(lines()), mimetype="application/x-ndjson")
    response.headers["Cache-Control"] = "no-store"
    return response


# ---------------------------------------------------------------------------------------------------------------
# Errors


def _input_error(exc: InputError) -> Any:
    if wants_json():
        return json_error(exc.status, exc.error, exc.reason)
    return Response(render_template("message.html", title=exc.error.capitalize(), message=exc.reason), exc.status)


def init_app(app: Flask) -> None:
    """Register the blueprint and its error rendering."""
    app.register_blueprint(actions_bp)
    app.register_error_handler(InputError, _input_error)


__all__ = ["InputError", "actions_bp", "init_app", "perform_move", "perform_rescan", "read_body"]
