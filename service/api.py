"""The read API under ``/api/v1``: image records by digest or tag, image lists, health and the public key."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, cast

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from workers.domain import Digest, ScanStatus, is_repository_name, is_tag, parse_digest
from workers.errors import StoreUnavailable
from workers.quarantine.state import hold_summary
from workers.store import Store

log = logging.getLogger(__name__)

api_bp = Blueprint("api", __name__, url_prefix="/api/v1")

STORE_EXTENSION = "tollgate.store"
DEFAULT_LIST_LIMIT = 100
MAX_LIST_LIMIT = 500
MAX_LIST_OFFSET = 1_000_000_000
MAX_REFERENCE_LENGTH = 512  # 255 (repository) + 1 + 128 (tag) + 135 (digest), rounded up


class BadReference(ValueError):
    """The path does not name an image as ``<repository>@<digest>`` or ``<repository>:<tag>``."""


@dataclass(frozen=True)
class ImageSelector:
    """What the path asked for: a repository and either a digest or a tag."""

    repository: str
    digest: Digest | None = None
    tag: str | None = None

    def __str__(self) -> str:
        return f"{self.repository}@{self.digest}" if self.digest else f"{self.repository}:{self.tag}"


def parse_image_path(ref: str) -> ImageSelector:
    """Split ``team/app@sha256:…`` on the last '@', or ``team/app:1.4`` on the last ':' after the last '/'.

    ``repo:tag@digest`` is accepted too: the digest wins, as in docker references.
    """
    if not ref or len(ref) > MAX_REFERENCE_LENGTH:
        raise BadReference("the reference is empty or too long")
    if "@" in ref:
        name, _, raw_digest = ref.rpartition("@")
        try:
            digest = parse_digest(raw_digest)
        except ValueError:
            raise BadReference(f"not a valid digest: {raw_digest[:80]!r}") from None
        colon = name.rfind(":")
        if colon > name.rfind("/"):
            name, tag = name[:colon], name[colon + 1 :]
            if not is_tag(tag):
                raise BadReference(f"not a valid tag: {tag[:80]!r}")
        _check_repository(name)
        return ImageSelector(repository=name, digest=digest)
    colon = ref.rfind(":")
    if colon <= ref.rfind("/"):
        raise BadReference("the reference must end in @<digest> or :<tag>")
    name, tag = ref[:colon], ref[colon + 1 :]
    if not is_tag(tag):
        raise BadReference(f"not a valid tag: {tag[:80]!r}")
    _check_repository(name)
    return ImageSelector(repository=name, tag=tag)


def _check_repository(name: str) -> None:
    if not is_repository_name(name):
        raise BadReference(f"not a valid repository name: {name[:80]!r}")


def _store() -> Store:
    return cast(Store, current_app.extensions[STORE_EXTENSION])


def api_error(status: int, error: str, reason: str | None = None) -> tuple[Response, int]:
    """The JSON error body every API error uses: ``{"error": …, "reason": …}``."""
    return jsonify({"error": error, "reason": reason}), status


# -- routes ------------------------------------------------------------------------------------------------------


@api_bp.get("/images/<path:ref>")
def get_image(ref: str) -> Any:
    """The record of ``<repository>@<digest>`` or ``<repository>:<tag>``."""
    try:
        selector = parse_image_path(ref)
    except BadReference as exc:
        return api_error(400, "bad reference", str(exc))
    store = _store()
    if selector.digest is not None:
        record = store.get_record(selector.repository, selector.digest)
    else:
        record = store.get_record_by_tag(selector.repository, cast(str, selector.tag))
    if record is None:
        return api_error(404, "not found", f"Tollgate has no record of {selector}")
    body = record.to_json()
    body["quarantine"] = hold_summary(store, record.repository, record.digest)
    response = jsonify(body)
    response.headers["Cache-Control"] = "no-cache"  # the record changes while the image is vetted
    return response


@api_bp.get("/images")
def list_images() -> Any:
    """Records, most recently updated first; filter by ``repository`` and ``status``, page with limit/offset."""
    args = request.args
    repository = args.get("repository") or None
    if repository is not None and not is_repository_name(repository):
        return api_error(400, "bad parameter", "repository is not a valid repository name")
    raw_status = args.get("status") or None
    status: ScanStatus | None = None
    if raw_status is not None:
        try:
            status = ScanStatus(raw_status)
        except ValueError:
            allowed = ", ".join(s.value for s in ScanStatus)
            return api_error(400, "bad parameter", f"status must be one of {allowed}")
    limit = _int_arg("limit", DEFAULT_LIST_LIMIT, 1, MAX_LIST_LIMIT)
    offset = _int_arg("offset", 0, 0, MAX_LIST_OFFSET)
    if isinstance(limit, str) or isinstance(offset, str):
        return api_error(400, "bad parameter", cast(str, limit if isinstance(limit, str) else offset))
    store = _store()
    records = store.list_images(repository=repository, status=status, limit=limit, offset=offset)
    return jsonify(
        {
            "images": [{**r.to_json(), "quarantine": hold_summary(store, r.repository, r.digest)} for r in records],
            "limit": limit,
            "offset": offset,
            "next_offset": offset + len(records) if len(records) == limit else None,
        }
    )


def _int_arg(name: str, default: int, low: int, high: int) -> int | str:
    """The integer query argument ``name`` within [low, high], or a message saying what is wrong."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or len(raw) > 12 or not low <= int(raw) <= high:
        return f"{name} must be an integer from {low} to {high}"
    return int(raw)


@api_bp.get("/health")
def health() -> Any:
    """200 when the database answers (and has its schema), 503 otherwise."""
    try:
        _store().ping()
    except StoreUnavailable as exc:
        body = {"status": "unavailable", "error": "database unavailable", "reason": exc.diagnostics()}
        return jsonify(body), 503
    return jsonify({"status": "ok", "database": "ok"})


@api_bp.get("/keys")
def signing_keys() -> Any:
    """Tollgate's public key (PEM) that verifies its verdict attestations; generated with the key on first use."""
    from workers.errors import ConfigError
    from workers.provenance.keys import load_or_create_signing_key

    # service.webhook.SETTINGS_EXTENSION; importing it here would be circular (webhook imports this module).
    settings = current_app.extensions["tollgate.settings"]
    try:
        key = load_or_create_signing_key(settings.signing_key)
    except ConfigError as exc:
        log.warning("signing key unavailable: %s", exc.diagnostics())
        return api_error(503, "signing key unavailable", exc.diagnostics())
    response = Response(key.public_pem, mimetype="application/x-pem-file")
    response.headers["X-Tollgate-Key-Id"] = key.key_id
    return response


@api_bp.route("/<path:unknown>", methods=["GET", "HEAD"])
def unknown_route(unknown: str) -> Any:
    """Unknown paths under the API get a JSON 404, not an HTML page."""
    return api_error(404, "not found", f"no API route /api/v1/{unknown[:200]}")


# -- errors ------------------------------------------------------------------------------------------------------


@api_bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Any:
    return api_error(exc.code or 500, (exc.name or "error").lower(), exc.description)


@api_bp.errorhandler(StoreUnavailable)
def _store_unavailable(exc: StoreUnavailable) -> Any:
    log.warning("store unavailable: %s", exc)
    response, status = api_error(503, "store unavailable", exc.diagnostics())
    response.headers["Retry-After"] = "5"
    return response, status


@api_bp.errorhandler(ValueError)
def _bad_value(exc: ValueError) -> Any:
    return api_error(400, "bad request", str(exc)[:300])


@api_bp.errorhandler(Exception)
def _unexpected(exc: Exception) -> Any:
    log.exception("unexpected error in the API")
    return api_error(500, "internal error", "see the server log")
