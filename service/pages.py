"""The status pages: overview, repositories, image detail (live), queue, waivers, audit, search, badges, exports."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from typing import Any, cast
from urllib.parse import quote, urlencode

import redis
from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
)

from service.actions import REASON, WAIVER_FIELDS, Field, InputError, audit_filters, read_body
from service.api import STORE_EXTENSION, BadReference, parse_image_path
from service.auth import AuthError, current_actor, current_credential, require, safe_next
from service.webhook import REDIS_EXTENSION, SETTINGS_EXTENSION
from workers import accounts, audit, listings
from workers.domain import Actor, Role, ScanStatus, Severity, is_repository_name, parse_digest
from workers.errors import QueueUnavailable
from workers.quarantine.state import hold_summary
from workers.queue import failed_jobs, queue_depths
from workers.settings import Settings
from workers.store import ImageRecord, Store

pages_bp = Blueprint("pages", __name__)

TAGS_PER_PAGE = 50
REPOSITORIES_PER_PAGE = 100
AUDIT_PER_PAGE = 100
AUDIT_FILTERS = frozenset({"since", "until", "target", "target_prefix", "action", "actor"})
FINDINGS_SHOWN = 100  # more than this many findings are capped, with a "show all" link
EVIDENCE_SHOWN = 400
TIMELINE_LIMIT = 200
RECENT_PUSHES = 20
SEVERITY_ORDER = [s.value for s in sorted(Severity, key=lambda s: s.rank, reverse=True)]
OPEN_SEVERITIES = frozenset({"critical", "high"})  # lower severities start collapsed
IN_PROGRESS_HOLDS = frozenset({"preserving", "preserved", "releasing"})
LIVE_GRACE = timedelta(seconds=90)  # after a quarantine verdict, keep polling until the move shows up
CSV_COLUMNS = (
    "rule",
    "severity",
    "confidence",
    "category",
    "attack",
    "message",
    "layer",
    "step",
    "path",
    "in_final_fs",
    "evidence",
    "platform",
    "waived",
    "waiver_id",
)
CSV_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
BADGE_COLOURS = {
    "clean": "#2e7d32",
    "suspicious": "#a15c00",
    "malicious": "#c62828",
    "pending": "#1565c0",
    "error": "#5d4037",
    "unknown": "#616161",
}
BADGE_MAX_AGE = 60

ACTION_WORDS = {
    "allow": "Allowed: policy lets this image be pulled.",
    "warn": "Allowed with a warning: the image can be pulled, but its findings need a look.",
    "quarantine": (
        "Quarantined: Tollgate takes this image out of service. Its tags point at a placeholder and the "
        "original is kept, untouched, in the quarantine repository for investigation."
    ),
}
VERDICT_WORDS = {
    "clean": "Tollgate found nothing that counts against this image.",
    "suspicious": "Tollgate found something that may be harmful and needs a person to judge it.",
    "malicious": "Tollgate found strong signs of malicious content.",
}
STATUS_WORDS = {
    "queued": "Waiting for a worker to vet it.",
    "scanning": "Being vetted now.",
    "done": "Vetted.",
    "error": "Vetting failed; the image has no verdict (an error is never a pass).",
}


# ---------------------------------------------------------------------------------------------------------------
# Helpers


def _store() -> Store:
    return cast(Store, current_app.extensions[STORE_EXTENSION])


def _redis() -> redis.Redis:
    return cast(redis.Redis, current_app.extensions[REDIS_EXTENSION])


def _settings() -> Settings:
    return cast(Settings, current_app.extensions[SETTINGS_EXTENSION])


def wants_json_page() -> bool:
    """True when the client prefers JSON to HTML (``Accept: application/json``)."""
    accept = request.accept_mimetypes
    return accept.quality("application/json") > accept.quality("text/html")


def page(template: str, data: Mapping[str, Any], **html_only: Any) -> Response:
    """The page as HTML, or ``data`` as JSON when asked for it; both vary on Accept."""
    as_json = wants_json_page()
    response = jsonify(dict(data)) if as_json else Response(render_template(template, **data, **html_only))
    response.headers["Vary"] = "Accept, Cookie"
    response.headers["Cache-Control"] = "no-cache"
    return response


def fail(status: int, error: str, reason: str) -> InputError:
    """An error the page or its JSON twin answers (rendered by the actions module's handler)."""
    return InputError(status, error, reason)


def image_path(repository: str, digest: str) -> str:
    """The canonical image page of ``repository@digest``."""
    return "/images/" + quote(f"{repository}@{digest}", safe="/:@")


def image_url(repository: str, ref: str) -> str:
    """The image page of ``repository`` + ``ref`` (``@digest`` or ``:tag``)."""
    return "/images/" + quote(f"{repository}{ref}", safe="/:@")


def repository_url(repository: str) -> str:
    """The repository page."""
    return "/repositories/" + quote(repository, safe="/")


def short_digest(digest: str | None) -> str:
    """``sha256:0123456789ab`` for tables; the full digest goes in a title."""
    if not digest:
        return ""
    algorithm, _, hexpart = digest.partition(":")
    return f"{algorithm}:{hexpart[:12]}"


def attack_url(technique: str | None) -> str | None:
    """The MITRE ATT&CK page of ``T1053.003`` (a link only; nothing is fetched)."""
    if not technique or not technique.startswith("T") or not technique.replace(".", "")[1:].isdigit():
        return None
    return "https://attack.mitre.org/techniques/" + technique.replace(".", "/") + "/"


def target_url(target: str) -> str | None:
    """A link for an audit target that names an image (``repo@digest``) or a waiver."""
    if target.startswith("waiver:") and target[7:].isdigit():
        return f"/waivers#waiver-{target[7:]}"
    if "@" in target:
        try:
            selector = parse_image_path(target)
        except BadReference:
            return None
        if selector.digest:
            return image_path(selector.repository, selector.digest)
    return None


def _int_arg(name: str, default: int, high: int = 10**9) -> int:
    raw = request.args.get(name, "")
    if raw == "":
        return default
    if not raw.isdigit() or len(raw) > 12 or int(raw) > high:
        raise fail(400, "bad parameter", f"{name} must be a whole number from 0 to {high}")
    return int(raw)


def viewer_role() -> Role | None:
    """The role of whoever is looking (None: anonymous, or a broken credential)."""
    try:
        credential = current_credential()
    except AuthError:
        return None
    return credential.actor.role if credential else None


def viewer_actor() -> Actor | None:
    """Whoever is looking, or None."""
    try:
        credential = current_credential()
    except AuthError:
        return None
    return credential.actor if credential else None


def allowed_actions(repository: str) -> dict[str, bool]:
    """Which image forms to show: release/quarantine for security, rescan for developers within scope."""
    actor = viewer_actor()
    role = actor.role if actor else None
    in_scope = actor is not None and accounts.in_scope(actor, repository)
    security = role is not None and role.allows(Role.SECURITY) and in_scope
    return {
        "release": security,
        "quarantine": security,
        "rescan": role is not None and role.allows(Role.DEVELOPER) and in_scope,
        # Waivers apply to every repository: a credential limited to some may not make them.
        "waive": security and actor is not None and not actor.repositories,
    }


def _queue_overview() -> tuple[dict[str, int] | None, list[dict[str, Any]]]:
    """Queue depths and recent failures, or (None, []) while Redis is unreachable (the page still renders)."""
    try:
        conn = _redis()
        return queue_depths(conn), failed_jobs(conn, limit=10)
    except (QueueUnavailable, redis.RedisError):
        return None, []


def record_body(store: Store, record: ImageRecord) -> dict[str, Any]:
    """The API record (``quarantine`` included)."""
    body = record.to_json()
    body["quarantine"] = hold_summary(store, record.repository, record.digest)
    return body


def summary_row(record: ImageRecord) -> dict[str, Any]:
    """A record without its findings, for lists."""
    return {
        "repository": record.repository,
        "digest": record.digest,
        "tags": list(record.tags),
        "status": record.status.value,
        "verdict": record.verdict.value if record.verdict else None,
        "action": record.action.value if record.action else None,
        "quarantined": record.quarantined,
        "findings": len(record.findings),
        "updated_at": record.to_json()["updated_at"],
    }


# ---------------------------------------------------------------------------------------------------------------
# Shaping the image page


def group_findings(findings: Sequence[Mapping[str, Any]], cap: int | None) -> tuple[list[dict[str, Any]], int]:
    """Findings by severity, most severe first, counted ones before waived ones; at most ``cap`` shown in all.

    Returns the groups (``severity``, ``count``, ``waived``, ``items``, ``open``) and how many were left out.
    """
    by_severity: dict[str, list[Mapping[str, Any]]] = {s: [] for s in SEVERITY_ORDER}
    for finding in findings:
        by_severity.setdefault(str(finding.get("severity")), []).append(finding)
    groups: list[dict[str, Any]] = []
    budget = cap if cap is not None else len(findings)
    hidden = 0
    for severity, items in by_severity.items():
        if not items:
            continue
        ordered = sorted(items, key=lambda f: bool(f.get("waived")))
        shown = ordered[: max(0, budget)]
        budget -= len(shown)
        hidden += len(ordered) - len(shown)
        groups.append(
            {
                "severity": severity,
                "count": len(items),
                "waived": sum(1 for f in items if f.get("waived")),
                "items": [_finding_view(f) for f in shown],
                "open": severity in OPEN_SEVERITIES or len(findings) <= 20,
            }
        )
    return groups, hidden


def _finding_view(finding: Mapping[str, Any]) -> dict[str, Any]:
    evidence = finding.get("evidence") or ""
    return {
        **finding,
        "evidence_excerpt": evidence[:EVIDENCE_SHOWN],
        "evidence_cut": len(evidence) > EVIDENCE_SHOWN,
        "attack_url": attack_url(finding.get("attack")),
    }


def live_state(record: Mapping[str, Any], now_iso: str | None = None) -> bool:
    """True while the page should keep polling: vetting, a move in progress, or a quarantine about to start."""
    if record["status"] in {ScanStatus.QUEUED.value, ScanStatus.SCANNING.value}:
        return True
    hold = record.get("quarantine")
    if hold is not None:
        return hold.get("state") in IN_PROGRESS_HOLDS
    if record.get("action") == "quarantine" and record.get("updated_at"):
        from datetime import datetime

        updated = datetime.fromisoformat(str(record["updated_at"]).replace("Z", "+00:00"))
        return bool(_store().now() - updated < LIVE_GRACE)
    return False


def _lookup(ref: str) -> ImageRecord:
    try:
        selector = parse_image_path(ref)
    except BadReference as exc:
        raise fail(400, "bad reference", str(exc)) from None
    store = _store()
    if selector.digest is not None:
        record = store.get_record(selector.repository, selector.digest)
    else:
        record = store.get_record_by_tag(selector.repository, cast(str, selector.tag))
    if record is None:
        raise fail(404, "not found", f"Tollgate has no record of {selector}")
    return record


def image_context(record: ImageRecord, *, show_all: bool) -> dict[str, Any]:
    """Everything the image page (and its live fragment) shows."""
    store = _store()
    body = record_body(store, record)
    canonical = f"{record.repository}@{record.digest}"
    timeline = [e.to_json() for e in audit.events(store, target=canonical, newest_first=True, limit=TIMELINE_LIMIT)]
    groups, hidden = group_findings(body["findings"], None if show_all else FINDINGS_SHOWN)
    try:
        stage = listings.job_stage(_redis(), record.job_id) if body["status"] == "scanning" else None
    except Exception:  # the stage is a nicety: never fail the page over it
        stage = None
    counted = [f for f in body["findings"] if not f.get("waived")]
    return {
        "record": body,
        "canonical": canonical,
        "page_url": image_path(record.repository, record.digest),
        "groups": groups,
        "hidden": hidden,
        "counted": len(counted),
        "rules": sorted({str(f["rule"]) for f in body["findings"]}),
        "timeline": timeline,
        "stage": stage,
        "live": live_state(body),
        "status_words": STATUS_WORDS.get(body["status"], ""),
        "verdict_words": VERDICT_WORDS.get(body["verdict"] or "", ""),
        "action_words": ACTION_WORDS.get(body["action"] or "", ""),
        "allowed": allowed_actions(record.repository),
        "logged_in": viewer_actor() is not None,
        "waiver_max_days": _settings().waiver_max_days,
    }


# ---------------------------------------------------------------------------------------------------------------
# Overview, repositories, search


@pages_bp.get("/")
def overview() -> Any:
    """Recent pushes, verdict counts, queue depth and failures."""
    store = _store()
    depths, failures = _queue_overview()
    recent = [summary_row(r) for r in store.list_images(limit=RECENT_PUSHES)]
    data = {"counts": dict(store.counts()), "queue": depths, "failed": failures, "recent": recent}
    return page("overview.html", data)


@pages_bp.get("/repositories")
def repositories() -> Any:
    """Every repository Tollgate has seen, by name, paginated."""
    offset = _int_arg("offset", 0)
    contains = request.args.get("q", "").strip()[:255] or None
    listing = listings.repositories(_store(), contains=contains, limit=REPOSITORIES_PER_PAGE, offset=offset)
    data = {
        "repositories": listing.rows,
        "total": listing.total,
        "offset": offset,
        "limit": listing.limit,
        "next_offset": listing.next_offset,
    }
    return page("repositories.html", data, previous_offset=listing.previous_offset, q=contains or "")


@pages_bp.get("/repositories/<path:repository>")
def repository(repository: str) -> Any:
    """A repository's tags with verdict and status chips (paginated), and its untagged images."""
    if not is_repository_name(repository):
        raise fail(400, "bad reference", f"not a valid repository name: {repository[:80]!r}")
    store = _store()
    if not listings.repository_known(store, repository):
        raise fail(404, "not found", f"Tollgate has no record of repository {repository}")
    offset = _int_arg("offset", 0)
    listing = listings.repository_tags(store, repository, limit=TAGS_PER_PAGE, offset=offset)
    data = {
        "repository": repository,
        "tags": listing.rows,
        "total": listing.total,
        "offset": offset,
        "limit": listing.limit,
        "next_offset": listing.next_offset,
        "untagged": listings.untagged_images(store, repository) if offset == 0 else [],
    }
    return page("repository.html", data, previous_offset=listing.previous_offset)


@pages_bp.get("/search")
def search() -> Any:
    """Find by repository, tag or digest; a full reference (or a digest with one image) jumps to it."""
    query = request.args.get("q", "").strip()[:600]
    store = _store()
    results: dict[str, Any] = {"query": query, "repositories": [], "tags": [], "images": []}
    if query:
        jump = _jump_target(store, query)
        if jump is not None and not wants_json_page():
            return redirect(jump, code=303)
        results["jump"] = jump
        if query.startswith(("sha256:", "sha512:")) or (len(query) >= 6 and _is_hex(query)):
            results["images"] = listings.search_digest_prefix(store, query)
        results["repositories"] = listings.repositories(store, contains=query, limit=50).rows
        results["tags"] = listings.search_tags(store, query.rpartition(":")[2] if ":" in query else query)
    return page("search.html", results)


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


def _jump_target(store: Store, query: str) -> str | None:
    """Where a query that names exactly one thing goes: an image, or a repository."""
    try:
        digest = parse_digest(query)
    except ValueError:
        digest = None
    if digest is not None:
        found = listings.images_with_digest(store, digest, limit=2)
        return image_path(found[0]["repository"], digest) if len(found) == 1 else None
    if "@" in query or ":" in query.rpartition("/")[2]:
        try:
            selector = parse_image_path(query)
        except BadReference:
            return None
        if selector.digest is not None:
            record = store.get_record(selector.repository, selector.digest)
        else:
            record = store.get_record_by_tag(selector.repository, cast(str, selector.tag))
        return image_path(record.repository, record.digest) if record is not None else None
    if is_repository_name(query) and listings.repository_known(store, query):
        return repository_url(query)
    return None


# ---------------------------------------------------------------------------------------------------------------
# The image page, its live fragment and exports


@pages_bp.get("/images/<path:ref>")
def image_page(ref: str) -> Any:
    """One image: verdict, action and why, findings, signatures, provenance, quarantine, timeline, actions."""
    record = _lookup(ref)
    context = image_context(record, show_all=request.args.get("findings") == "all")
    if wants_json_page():
        body = {**context["record"], "timeline": context["timeline"], "stage": context["stage"]}
        response = jsonify(body)
        response.headers["Vary"] = "Accept, Cookie"
        response.headers["Cache-Control"] = "no-cache"
        return response
    return page("image.html", context)


@pages_bp.get("/images/<path:ref>/live")
def image_live(ref: str) -> Any:
    """The changing part of the image page as an HTML fragment, polled by static/tollgate.js."""
    record = _lookup(ref)
    context = image_context(record, show_all=request.args.get("findings") == "all")
    response = Response(render_template("image_live.html", **context))
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Tollgate-Live"] = "on" if context["live"] else "off"
    return response


@pages_bp.get("/images/<path:ref>/findings.json")
def findings_json(ref: str) -> Any:
    """The image's findings as JSON (a download)."""
    record = _lookup(ref)
    body = {
        "repository": record.repository,
        "digest": record.digest,
        "verdict": record.verdict.value if record.verdict else None,
        "findings": [f.to_json() for f in record.findings],
    }
    response = Response(json.dumps(body, indent=2, ensure_ascii=False), mimetype="application/json")
    response.headers["Content-Disposition"] = f'attachment; filename="{_export_name(record)}.json"'
    return response


@pages_bp.get("/images/<path:ref>/findings.csv")
def findings_csv(ref: str) -> Any:
    """The image's findings as CSV; cells a spreadsheet would run as a formula are prefixed with '."""
    record = _lookup(ref)
    rows = (f.to_json() for f in record.findings)
    response = Response(findings_to_csv(rows), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{_export_name(record)}.csv"'
    return response


def safe_cell(value: Any) -> str:
    """A CSV cell that no spreadsheet evaluates (OWASP CSV injection: a leading = + - @ tab or CR)."""
    if value is None:
        return ""
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return "'" + text if text.startswith(CSV_TRIGGERS) else text


def findings_to_csv(rows: Iterable[Mapping[str, Any]]) -> str:
    """Findings as CSV with a header row."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow([safe_cell(row.get(column)) for column in CSV_COLUMNS])
    return out.getvalue()


def _export_name(record: ImageRecord) -> str:
    """A file name with only safe characters: ``team_app-sha256_0123456789ab-findings``."""
    name = f"{record.repository}-{short_digest(record.digest)}-findings"
    return "".join(c if c.isalnum() or c in "-." else "_" for c in name)


# ---------------------------------------------------------------------------------------------------------------
# Queue, waivers, audit


@pages_bp.get("/queue")
def queue_page() -> Any:
    """Waiting, running (with the stage each scan reached), retrying and failed jobs."""
    try:
        conn = _redis()
        data: dict[str, Any] = {
            "available": True,
            "depths": queue_depths(conn),
            **listings.queue_jobs(conn, limit=50),
            "failed": failed_jobs(conn, limit=50),
        }
    except (QueueUnavailable, redis.RedisError) as exc:
        data = {"available": False, "error": str(exc)[:300], "depths": {}, "running": [], "queued": []}
        data.update({"retrying": [], "failed": []})
    return page("queue.html", data)


@pages_bp.get("/waivers")
@require(Role.VIEWER)
def waivers_page() -> Any:
    """Active waivers (``?all=1``: revoked and expired ones too), with revoke buttons for security."""
    from workers import waivers

    include = request.args.get("all") == "1"
    listed = [w.to_json() for w in waivers.list_waivers(_store(), include_inactive=include)]
    allowed = allowed_actions("*")
    return page(
        "waivers.html",
        {"waivers": listed, "include_inactive": include},
        can_waive=allowed["waive"],
        waiver_max_days=_settings().waiver_max_days,
        prefill={k: request.args.get(k, "")[:4096] for k in ("rule", "repository_pattern", "digest", "path_pattern")},
    )


@pages_bp.get("/audit")
@require(Role.VIEWER)
def audit_page() -> Any:
    """The audit trail, newest first, filtered by action, actor, target and time, paged back with ``before``."""
    args = {
        k: v for k, v in request.args.items() if k in {"since", "until", "target", "target_prefix", "action", "actor"}
    }
    unknown = set(request.args) - set(args) - {"before"}
    if unknown:
        raise fail(400, "bad parameter", f"unknown parameter(s): {', '.join(sorted(u[:40] for u in unknown)[:5])}")
    filters = audit_filters(args)
    before = _int_arg("before", 0) or None
    events = audit.events(_store(), before_id=before, newest_first=True, limit=AUDIT_PER_PAGE, **filters)
    older = events[-1].id if len(events) == AUDIT_PER_PAGE else None
    data = {"events": [e.to_json() for e in events], "filters": args, "next_before": older}
    older_url = "/audit?" + urlencode({**args, "before": older}) if older else None
    return page("audit.html", data, actions=[a.value for a in audit.AuditAction], older_url=older_url)


# ---------------------------------------------------------------------------------------------------------------
# Browser forms for waivers


WAIVER_FORM = {**WAIVER_FIELDS, "next": Field(str, max_length=1000)}


@pages_bp.post("/waivers")
@require(Role.SECURITY, unscoped=True)
def waiver_form() -> Any:
    """Create a waiver from the form (rule, optional scope, expiry in days, reason); back to where it came from."""
    from workers import waivers

    body = read_body(WAIVER_FORM, 32 * 1024)
    landing = safe_next(body.get("next")) if body.get("next") else "/waivers"
    if "expires_at" in body:
        raise fail(400, "bad request", "give the expiry in days (expires_in_days)")
    days = body.get("expires_in_days")
    if days is None:
        raise fail(400, "bad request", "expires_in_days is required: every waiver expires")
    store = _store()
    try:
        waiver = waivers.create_waiver(
            store,
            current_actor(),
            rule=body["rule"],
            reason=body["reason"],
            expires_at=store.now() + timedelta(days=days),
            repository_pattern=body.get("repository_pattern") or None,
            digest=body.get("digest") or None,
            path_pattern=body.get("path_pattern") or None,
            max_days=_settings().waiver_max_days,
        )
    except ValueError as exc:
        raise fail(400, "bad request", str(exc)[:300]) from None
    flash(f"Waiver {waiver.id} created ({waiver.scope()}); {_redecisions(waivers.schedule_redecisions, waiver)}")
    return redirect(landing, code=303)


@pages_bp.post("/waivers/<int:waiver_id>/revoke")
@require(Role.SECURITY, unscoped=True)
def waiver_revoke_form(waiver_id: int) -> Any:
    """Revoke a waiver from the waivers page."""
    from workers import waivers
    from workers.errors import ActionRefused

    body = read_body({"reason": REASON}, 16 * 1024)
    try:
        waiver = waivers.revoke_waiver(_store(), current_actor(), waiver_id, body["reason"])
    except LookupError as exc:
        raise fail(404, "not found", str(exc)[:300]) from None
    except ActionRefused as exc:
        raise fail(409, "conflict", exc.diagnostics()) from None
    flash(f"Waiver {waiver.id} revoked; {_redecisions(waivers.schedule_redecisions, waiver)}")
    return redirect("/waivers", code=303)


def _redecisions(schedule: Any, waiver: Any) -> str:
    """Queue the re-decisions a waiver change causes; the waiver stands even when Redis is down."""
    try:
        count = schedule(_settings(), _store(), _redis(), waiver)
    except (QueueUnavailable, redis.RedisError):
        return "affected images are decided again at their next scan (the queue is unreachable)."
    return f"{count} image(s) queued to be decided again."


# ---------------------------------------------------------------------------------------------------------------
# Badges


@pages_bp.get("/badge/<path:name>")
def badge(name: str) -> Any:
    """``/badge/<repository>:<tag>.svg``: the tag's current verdict as a small SVG, public and cacheable."""
    if not name.endswith(".svg"):
        return _badge_response("unknown", 404)
    try:
        selector = parse_image_path(name[: -len(".svg")])
        record = None if selector.tag is None else _store().get_record_by_tag(selector.repository, selector.tag)
    except (BadReference, ValueError):
        return _badge_response("unknown", 404)
    if record is None:
        return _badge_response("unknown", 404)
    return _badge_response(badge_word(record), 200)


def badge_word(record: ImageRecord) -> str:
    """``clean``/``suspicious``/``malicious`` once vetted, ``pending`` before, ``error`` when vetting failed."""
    if record.status in {ScanStatus.QUEUED, ScanStatus.SCANNING}:
        return "pending"
    if record.status is ScanStatus.ERROR:
        return "error"
    return record.verdict.value if record.verdict else "unknown"


def badge_svg(word: str) -> str:
    """The SVG of a two-part badge, ``tollgate | <word>``; ``word`` is one of BADGE_COLOURS (escaped anyway)."""
    from markupsafe import escape

    colour = BADGE_COLOURS.get(word, BADGE_COLOURS["unknown"])
    text = str(escape(word))
    left, right = 58, 8 + 7 * len(word) + 8
    width = left + right
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="20" role="img" '
        f'aria-label="tollgate: {text}"><title>tollgate: {text}</title>'
        f'<rect width="{left}" height="20" fill="#37474f"/>'
        f'<rect x="{left}" width="{right}" height="20" fill="{colour}"/>'
        f'<g fill="#fff" font-family="Verdana,DejaVu Sans,sans-serif" font-size="11" text-anchor="middle">'
        f'<text x="{left / 2}" y="14">tollgate</text>'
        f'<text x="{left + right / 2}" y="14">{text}</text></g></svg>'
    )


def _badge_response(word: str, status: int) -> Response:
    body = badge_svg(word)
    response = Response(body, status=status, mimetype="image/svg+xml")
    response.headers["Cache-Control"] = f"max-age={BADGE_MAX_AGE}"
    response.headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
    response.set_etag(hashlib.sha256(body.encode()).hexdigest()[:32])
    return cast(Response, response.make_conditional(request))


# ---------------------------------------------------------------------------------------------------------------
# Wiring


def _security_headers(response: Response) -> Response:
    """A strict CSP on every HTML page (no inline script anywhere), and no MIME sniffing."""
    if response.mimetype == "text/html" and "Content-Security-Policy" not in response.headers:
        response.headers["Content-Security-Policy"] = CSP
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    return response


def _template_helpers() -> dict[str, Any]:
    return {
        "image_path": image_path,
        "image_url": image_url,
        "repository_url": repository_url,
        "short_digest": short_digest,
        "target_url": target_url,
        "viewer_role": viewer_role,
    }


def init_app(app: Flask) -> None:
    """Register the pages, their template helpers and the security headers."""
    app.register_blueprint(pages_bp)
    app.context_processor(_template_helpers)
    app.after_request(_security_headers)


__all__ = ["init_app", "pages_bp"]
