"""Registry webhook intake: ``POST /hooks/registry`` authenticates, filters manifest pushes, and queues scans.

The distribution registry delivers at least once and retries anything that is not 2xx/3xx, forever. So
the handler answers 202 only once every kept event is recorded and its job is durable in Redis, answers
503 (with ``Retry-After``) when Redis or the database is down, and is idempotent per (repository, digest)
so redeliveries collapse into one job. Events it will never act on (pulls, blob pushes, malformed events)
are reported in the body, not refused: refusing would make the registry retry them forever.

Signatures arrive after the image they sign (shared/docs/PROTOCOLS.md §4), so a push whose tag names an image
digest (cosign's ``sha256-<hex>.sig``, ``.att`` and the referrers fallback index ``sha256-<hex>``) is not an
image to vet: it queues a re-evaluation of that image instead, and the artifact itself gets no record.

A quarantine re-points tags to a placeholder image, and the registry announces that push like any other: a
digest that a hold of the repository names as its placeholder is answered ``ignored:quarantine placeholder``
(not recorded, not vetted, the tag stays the quarantined image's), so a quarantine never feeds itself.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any, cast

import redis
from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from service.api import STORE_EXTENSION
from service.errors import json_error
from workers.domain import MANIFEST_MEDIA_TYPES, Digest, is_repository_name, is_tag, parse_digest
from workers.quarantine.state import placeholder_digests
from workers.queue import Admission, admit_push, enqueue_reevaluation
from workers.settings import Settings
from workers.signatures.discovery import subject_of_tag
from workers.store import Store

log = logging.getLogger(__name__)

webhook_bp = Blueprint("webhook", __name__, url_prefix="/hooks")

SETTINGS_EXTENSION = "tollgate.settings"
REDIS_EXTENSION = "tollgate.redis"
RULESET_EXTENSION = "tollgate.ruleset"

# 2.8 sends v1, 3.x sends v2; plain JSON is accepted for hand-made deliveries and other senders.
ENVELOPE_MEDIA_TYPES = frozenset(
    {
        "application/vnd.docker.distribution.events.v1+json",
        "application/vnd.docker.distribution.events.v2+json",
        "application/json",
    }
)
MAX_BODY_BYTES = 1024 * 1024  # real envelopes are a few KiB; one event per POST in practice
MAX_EVENTS = 256  # each kept event costs database and Redis round trips

BLOB_MEDIA_TYPE = "application/octet-stream"
# Manifests Tollgate scans, plus manifests it cannot scan but must record as an error rather than let pass.
KEPT_MEDIA_TYPES = MANIFEST_MEDIA_TYPES | {
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/vnd.oci.artifact.manifest.v1+json",
}
KNOWN_IGNORED_ACTIONS = frozenset({"pull", "mount", "delete"})
MAX_ECHO = 128  # attacker-chosen strings echoed in the response are clipped to this
PLACEHOLDER_OUTCOME = "ignored:quarantine placeholder"


class EnvelopeError(ValueError):
    """The body is not a notification envelope; the message is the reason given to the sender."""


@dataclass(frozen=True)
class PushEvent:
    """A manifest push worth vetting, validated."""

    repository: str
    digest: Digest
    tag: str | None
    media_type: str


@dataclass(frozen=True)
class Skipped:
    """An event Tollgate does not act on: ``ignored:<why>`` (fine) or ``invalid:<why>`` (malformed)."""

    outcome: str

    @property
    def invalid(self) -> bool:
        """True when the event was malformed rather than merely uninteresting."""
        return self.outcome.startswith("invalid:")


def parse_envelope(body: bytes) -> list[Any]:
    """The ``events`` list of a notification envelope; :class:`EnvelopeError` says why a body is not one."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise EnvelopeError("the body is not UTF-8") from None
    try:
        document = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise EnvelopeError(f"the body is not JSON: {str(exc)[:100]}") from None
    if not isinstance(document, dict):
        raise EnvelopeError("the body must be a JSON object with an 'events' list")
    events = document.get("events")
    if not isinstance(events, list):
        raise EnvelopeError("the envelope has no 'events' list")
    return events


def parse_event(raw: Any, *, quarantine_prefix: str) -> PushEvent | Skipped:
    """Classify one event: a manifest push to vet, or the reason it is skipped. Never raises."""
    if not isinstance(raw, dict):
        return Skipped("invalid:event is not an object")
    action = raw.get("action")
    if not isinstance(action, str) or not action:
        return Skipped("invalid:action is missing")
    if action != "push":
        return Skipped(f"ignored:{action}" if action in KNOWN_IGNORED_ACTIONS else "ignored:unknown action")
    target = raw.get("target")
    if not isinstance(target, dict):
        return Skipped("invalid:target is missing")
    media_type = target.get("mediaType")
    if not isinstance(media_type, str) or not media_type:
        return Skipped("invalid:target.mediaType is missing")
    base_type = media_type.split(";", 1)[0].strip().lower()
    if base_type == BLOB_MEDIA_TYPE:
        return Skipped("ignored:blob push")
    if base_type not in KEPT_MEDIA_TYPES:
        log.warning("webhook: push of an unknown media type %r ignored", media_type[:MAX_ECHO])
        return Skipped("ignored:not a manifest media type")
    raw_digest = target.get("digest")
    try:
        digest = parse_digest(raw_digest) if isinstance(raw_digest, str) else None
    except ValueError:
        digest = None
    if digest is None:
        return Skipped("invalid:target.digest is not a sha256/sha512 digest")
    repository = target.get("repository")
    if not isinstance(repository, str) or not is_repository_name(repository) or len(repository) > 255:
        return Skipped("invalid:target.repository is not a repository name")
    if quarantine_prefix and repository.startswith(quarantine_prefix):
        return Skipped("ignored:quarantine repository")  # Tollgate's own moves; scanning them would loop
    tag = target.get("tag")
    if tag in (None, ""):
        tag = None
    elif not isinstance(tag, str) or not is_tag(tag):
        return Skipped("invalid:target.tag is not a tag")
    return PushEvent(repository=repository, digest=digest, tag=tag, media_type=base_type)


def _settings() -> Settings:
    return cast(Settings, current_app.extensions[SETTINGS_EXTENSION])


def _authorized(settings: Settings) -> bool:
    """Constant-time check of ``Authorization: Bearer <token>``; create_app refuses an unset token unless allowed."""
    expected = settings.webhook_token
    if not expected:
        return settings.webhook_allow_unauthenticated
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    # Compare even on a wrong scheme, so timing does not tell the two failures apart.
    matches = hmac.compare_digest(presented.strip().encode(), expected.encode())
    return matches and scheme.lower() == "bearer"


def _echo(value: Any) -> str | None:
    return value[:MAX_ECHO] if isinstance(value, str) else None


@webhook_bp.post("/registry")
def registry_events() -> Any:
    """Take a distribution notification envelope; 202 once every kept push is recorded and queued."""
    settings = _settings()
    if not _authorized(settings):
        return json_error(
            401,
            "unauthorized",
            "send Authorization: Bearer <TOLLGATE_WEBHOOK_TOKEN>",
            {"WWW-Authenticate": 'Bearer realm="tollgate"'},
        )
    if request.mimetype not in ENVELOPE_MEDIA_TYPES:
        shown = (request.mimetype or "none")[:MAX_ECHO]
        allowed = ", ".join(sorted(ENVELOPE_MEDIA_TYPES))
        return json_error(415, "unsupported media type", f"Content-Type {shown} is not one of: {allowed}")
    # The per-request cap also bounds chunked bodies that announce no Content-Length. Werkzeug stops reading
    # a chunked body at the cap without complaint, so cap one byte beyond ours and treat reaching it as too large.
    request.max_content_length = MAX_BODY_BYTES + 1
    try:
        body = request.get_data(cache=True)
    except RequestEntityTooLarge:
        return _too_large()
    if len(body) > MAX_BODY_BYTES:
        return _too_large()
    try:
        events = parse_envelope(body)
    except EnvelopeError as exc:
        return json_error(400, "bad envelope", str(exc))
    if len(events) > MAX_EVENTS:
        return json_error(413, "too many events", f"at most {MAX_EVENTS} events per envelope")
    return _take_events(settings, events)


def _reevaluate(
    conn: redis.Redis,
    event: PushEvent,
    subject: Digest,
    *,
    settings: Settings,
    ruleset: str,
    index: int,
    event_id: str | None,
) -> dict[str, Any]:
    """Queue the re-evaluation of ``subject`` for a pushed signature-like artifact; its entry in the response.

    The image's rescan is keyed by the artifact digest, so a redelivery is a duplicate and a second signature
    is a new job. Queue outages propagate to the 503 handler, like a push's.
    """
    enqueued = enqueue_reevaluation(
        conn, event.repository, subject, artifact=event.digest, ruleset=ruleset, settings=settings
    )
    outcome = Admission.REEVALUATION_QUEUED if enqueued.created else Admission.DUPLICATE
    log.info("webhook: %s:%s (%s) re-evaluates %s: %s", event.repository, event.tag, event.digest, subject, outcome)
    return {
        "index": index,
        "id": event_id,
        "repository": event.repository,
        "digest": event.digest,
        "tag": event.tag,
        "subject": subject,
        "outcome": outcome.value,
        "job_id": enqueued.job_id,
    }


def _too_large() -> Response:
    return json_error(413, "request entity too large", f"the envelope is larger than {MAX_BODY_BYTES} bytes")


def _take_events(settings: Settings, events: list[Any]) -> Any:
    """Admit each kept push; Store/Queue outages propagate to the 503 handler (the registry redelivers)."""
    store = cast(Store, current_app.extensions[STORE_EXTENSION])
    conn = cast(redis.Redis, current_app.extensions[REDIS_EXTENSION])
    ruleset = cast(str, current_app.extensions[RULESET_EXTENSION])
    results: list[dict[str, Any]] = []
    counts: Counter[str] = Counter()
    for index, raw in enumerate(events):
        event_id = _echo(raw.get("id")) if isinstance(raw, dict) else None
        parsed = parse_event(raw, quarantine_prefix=settings.quarantine_repo)
        if isinstance(parsed, Skipped):
            if parsed.invalid:
                log.warning("webhook: event %d (%s) %s", index, event_id, parsed.outcome)
            counts[parsed.outcome.split(":", 1)[0]] += 1
            results.append({"index": index, "id": event_id, "outcome": parsed.outcome})
            continue
        subject = subject_of_tag(parsed.tag) if parsed.tag is not None else None
        if subject is not None and subject != parsed.digest:
            entry = _reevaluate(
                conn, parsed, subject, settings=settings, ruleset=ruleset, index=index, event_id=event_id
            )
            results.append(entry)
            counts[entry["outcome"]] += 1
            continue
        if parsed.digest in placeholder_digests(store, parsed.repository):
            # Tollgate's own placeholder re-pointing a quarantined tag: recorded here, never vetted (that would
            # loop), and the tag stays the quarantined image's in the store.
            log.info("webhook: %s:%s is a quarantine placeholder (%s)", parsed.repository, parsed.tag, parsed.digest)
            counts["ignored"] += 1
            results.append(
                {
                    "index": index,
                    "id": event_id,
                    "repository": parsed.repository,
                    "digest": parsed.digest,
                    "tag": parsed.tag,
                    "outcome": PLACEHOLDER_OUTCOME,
                }
            )
            continue
        try:
            admitted = admit_push(
                conn,
                store,
                parsed.repository,
                parsed.digest,
                tag=parsed.tag,
                media_type=parsed.media_type,
                ruleset=ruleset,
                settings=settings,
            )
        except ValueError as exc:  # the store's own name checks; the event is malformed, not the service
            outcome = f"invalid:{str(exc)[:MAX_ECHO]}"
            counts["invalid"] += 1
            results.append({"index": index, "id": event_id, "outcome": outcome})
            continue
        log.info("webhook: %s@%s (tag %s) %s", parsed.repository, parsed.digest, parsed.tag, admitted.outcome.value)
        counts[admitted.outcome.value] += 1
        results.append(
            {
                "index": index,
                "id": event_id,
                "repository": parsed.repository,
                "digest": parsed.digest,
                "tag": parsed.tag,
                "outcome": admitted.outcome.value,
                "job_id": admitted.job_id,
            }
        )
    response = jsonify({"events": results, "counts": dict(counts)})
    response.status_code = 202
    return response
