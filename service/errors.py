"""JSON error responses for the machine-facing paths (/api, /hooks); other paths keep Flask's HTML errors."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException, InternalServerError

from workers.errors import TollgateError, TransientError

log = logging.getLogger(__name__)

JSON_PATH_PREFIXES = ("/api/", "/hooks/")
RETRY_AFTER_SECONDS = 5  # a database or Redis blip: the registry (or the client) tries again shortly


def wants_json() -> bool:
    """True for requests to the API and the webhooks, which machines read, and for pages asked for as JSON."""
    path = request.path
    if path in {"/api", "/hooks"} or path.startswith(JSON_PATH_PREFIXES):
        return True
    # Every page answers JSON too (same URL, Accept: application/json): so do its errors.
    accept = request.accept_mimetypes
    return accept.quality("application/json") > accept.quality("text/html")


def json_error(
    status: int, error: str, reason: str | None = None, headers: Mapping[str, str] | None = None
) -> Response:
    """The error body every machine-facing endpoint uses: ``{"error": …, "reason": …}``."""
    response = jsonify({"error": error, "reason": reason})
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _http_exception(exc: HTTPException) -> Any:
    if not wants_json():
        return exc
    # Keep protocol headers the exception carries (Allow on 405, WWW-Authenticate on 401).
    headers = {name: value for name, value in exc.get_headers() if name.lower() != "content-type"}
    return json_error(exc.code or 500, (exc.name or "error").lower(), exc.description, headers)


def _transient(exc: TransientError) -> Any:
    log.warning("answering 503: %s", exc)
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    if wants_json():
        return json_error(503, "service unavailable", exc.diagnostics(), headers)
    return Response("Service temporarily unavailable; try again shortly.\n", 503, headers, mimetype="text/plain")


def _tollgate_error(exc: TollgateError) -> Any:
    log.error("unhandled Tollgate error on %s: %s", request.path, exc)
    if wants_json():
        return json_error(500, "internal error", exc.diagnostics())
    return InternalServerError()


def _unexpected(exc: Exception) -> Any:
    if isinstance(exc, HTTPException):
        return _http_exception(exc)
    log.exception("unexpected error on %s", request.path)
    if wants_json():
        return json_error(500, "internal error", "see the server log")
    return InternalServerError()


def register_error_handlers(app: Flask) -> None:
    """Install the app-wide handlers; blueprint handlers (e.g. the API's) still take precedence."""
    app.register_error_handler(HTTPException, _http_exception)
    app.register_error_handler(TransientError, _transient)
    app.register_error_handler(TollgateError, _tollgate_error)
    app.register_error_handler(Exception, _unexpected)
