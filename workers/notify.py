"""Outbound notifications: webhooks (JSON, or Slack-compatible text) on quarantine, release and scan errors.

``TOLLGATE_NOTIFY_URLS`` is a comma-separated list of targets::

    https://hooks.example.com/tollgate                       every event, Tollgate's JSON body
    slack:https://hooks.slack.com/services/T0/B0/XXXX         a Slack-compatible {"text": "…"} message
    https://pager.example.com/hook#events=quarantine+scan.error   only these events

The ``#events=…`` fragment is Tollgate's filter and is never sent (fragments are not part of a request);
URLs without one get ``TOLLGATE_NOTIFY_EVENTS`` (empty: every event). :func:`notify` never raises and
never waits for a receiver: it queues one rq job per target on :data:`workers.queue.NOTIFY_QUEUE`, whose
delivery (:func:`deliver`) retries 5xx, 429, timeouts and refused connections with exponential backoff,
gives up on any other answer (logged), and never follows a redirect to another host. Jobs carry a
target's id, never its URL (Slack URLs are secrets), and look the URL up in the settings when they run.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from workers.errors import ConfigError, TransientError
from workers.settings import Settings

log = logging.getLogger(__name__)

EVENTS = frozenset({"quarantine", "release", "quarantine.failed", "release.failed", "scan.error"})
SIGNATURE_HEADER = "X-Tollgate-Signature"
EVENT_HEADER = "X-Tollgate-Event"
DELIVERY_HEADER = "X-Tollgate-Delivery"
MAX_REDIRECTS = 3
MAX_TEXT = 2000  # reasons quote image content: bounded in every message
USER_AGENT = "tollgate-notify/1"
_RETRIED_STATUS = frozenset({408, 425, 429})


class Format(StrEnum):
    """The body a target receives."""

    JSON = "json"  # Tollgate's own document (see :func:`build_body`)
    SLACK = "slack"  # {"text": "…"}, accepted by Slack, Mattermost, Rocket.Chat and Teams' Slack connector


@dataclass(frozen=True)
class Target:
    """One configured webhook: where, in which format, for which events (None: every event)."""

    url: str  # without the fragment
    format: Format
    events: frozenset[str] | None

    @property
    def id(self) -> str:
        """A stable id of the target for job arguments and logs, which must not carry the URL (a secret)."""
        return hashlib.sha256(f"{self.format.value}\n{self.url}".encode()).hexdigest()[:16]

    @property
    def origin(self) -> tuple[str, str, int | None]:
        """Scheme, host and port: a redirect is followed only within this."""
        parts = urlsplit(self.url)
        return parts.scheme, (parts.hostname or "").lower(), parts.port

    def wants(self, event: str) -> bool:
        """True when the target's filter lets ``event`` through."""
        return self.events is None or event in self.events

    def describe(self) -> str:
        """The target for logs: scheme and host only (paths and queries of webhook URLs hold secrets)."""
        scheme, host, port = self.origin
        return f"{self.format.value} {scheme}://{host}{f':{port}' if port else ''}/… ({self.id})"


def _events(raw: Sequence[str], where: str) -> frozenset[str]:
    events = frozenset(e.strip() for e in raw if e.strip())
    unknown = sorted(events - EVENTS)
    if unknown:
        raise ConfigError(f"{where}: unknown event {', '.join(unknown)}; expected some of {', '.join(sorted(EVENTS))}")
    return events


def parse_target(text: str, default_events: frozenset[str] | None = None) -> Target:
    """One entry of ``TOLLGATE_NOTIFY_URLS``; ConfigError says what is wrong (without echoing the secret URL)."""
    raw = text.strip()
    kind = Format.JSON
    if raw.startswith("slack:"):
        kind, raw = Format.SLACK, raw.removeprefix("slack:")
    parts = urlsplit(raw)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ConfigError("TOLLGATE_NOTIFY_URLS: each entry must be an http:// or https:// URL (optionally slack:…)")
    if parts.username or parts.password:
        raise ConfigError("TOLLGATE_NOTIFY_URLS: put credentials in the path or TOLLGATE_NOTIFY_SECRET, not user:pass@")
    events = default_events
    if parts.fragment:
        key, _, value = parts.fragment.partition("=")
        if key != "events" or not value:
            raise ConfigError("TOLLGATE_NOTIFY_URLS: the only fragment understood is #events=a+b")
        events = _events(value.replace("|", "+").split("+"), "TOLLGATE_NOTIFY_URLS")
    url = urlunsplit((parts.scheme, parts.netloc, parts.path or "/", parts.query, ""))
    return Target(url=url, format=kind, events=events)


def parse_targets(settings: Settings) -> tuple[Target, ...]:
    """Every configured target; ConfigError for a malformed entry or an unknown event name."""
    default = _events(settings.notify_events, "TOLLGATE_NOTIFY_EVENTS") if settings.notify_events else None
    return tuple(parse_target(entry, default) for entry in settings.notify_urls if entry.strip())


def _clip(value: Any, limit: int = MAX_TEXT) -> str:
    text = "".join(c if c.isprintable() else "?" for c in str(value))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def image_link(settings: Settings, repository: str, digest: str) -> str:
    """The image's status page: ``public_url`` + ``/images/<repository>@<digest>``."""
    return f"{settings.public_url.rstrip('/')}/images/{quote(repository, safe='/')}@{quote(digest, safe=':')}"


def build_body(
    settings: Settings, event: str, payload: Mapping[str, Any], *, now: datetime | None = None
) -> dict[str, Any]:
    """The JSON document of one event (what a JSON target receives, and what a Slack text is made from).

    ``{"event", "image", "repository", "digest", "tags", "verdict", "action", "reason", "actor", "link", "time",
    "details"}``: ``image`` is ``repository@digest``, ``details`` the rest of the payload.
    """
    repository = payload.get("repository")
    digest = payload.get("digest")
    known = {"repository", "digest", "tags", "verdict", "action", "reason", "actor"}
    image = f"{repository}@{digest}" if repository and digest else None
    tags = payload.get("tags")
    return {
        "event": event,
        "image": _clip(image) if image else None,
        "repository": _clip(repository) if repository else None,
        "digest": _clip(digest) if digest else None,
        "tags": [_clip(t, 128) for t in tags][:50] if isinstance(tags, list | tuple) else [],
        "verdict": _clip(payload["verdict"], 32) if payload.get("verdict") else None,
        "action": _clip(payload["action"], 32) if payload.get("action") else None,
        "reason": _clip(payload.get("reason") or ""),
        "actor": _clip(payload["actor"], 200) if payload.get("actor") else None,
        "link": image_link(settings, str(repository), str(digest)) if image else None,
        "time": (now or datetime.now(UTC)).astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "details": json.loads(json.dumps({k: v for k, v in payload.items() if k not in known}, default=str)),
    }


_HEADLINES = {
    "quarantine": "quarantined",
    "release": "released",
    "quarantine.failed": "could NOT be quarantined",
    "release.failed": "could NOT be released",
    "scan.error": "could not be vetted",
}


def slack_text(body: Mapping[str, Any]) -> str:
    """One line for chat: what happened to which image, the verdict, why, and the link."""
    what = _HEADLINES.get(str(body.get("event")), str(body.get("event")))
    verdict = f" ({body['verdict']})" if body.get("verdict") else ""
    reason = f": {body['reason']}" if body.get("reason") else ""
    link = f" <{body['link']}|details>" if body.get("link") else ""
    return _clip(f"Tollgate: {body.get('image') or 'an image'} {what}{verdict}{reason}{link}", 3000)


def encode(target: Target, body: Mapping[str, Any]) -> bytes:
    """The request body bytes for ``target``."""
    document: Mapping[str, Any] = {"text": slack_text(body)} if target.format is Format.SLACK else body
    return json.dumps(document, ensure_ascii=False, sort_keys=True).encode()


def signature(secret: str, data: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 of the body bytes with ``TOLLGATE_NOTIFY_SECRET`` (as GitHub signs hooks)."""
    return "sha256=" + hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()


def retry_intervals(settings: Settings) -> list[int]:
    """Seconds before each retry: ``notify_backoff`` doubled each time, at most an hour."""
    return [min(settings.notify_backoff * 2**attempt, 3600) for attempt in range(settings.notify_retries)]


def notify(settings: Settings, event: str, payload: Mapping[str, Any]) -> None:
    """Queue ``event`` for every target that wants it; never raises, never waits for a receiver.

    A Redis or configuration problem is logged and dropped: the audit trail already holds what happened,
    and a notification must never fail or delay the quarantine, release or scan that caused it.
    """
    try:
        targets = [t for t in parse_targets(settings) if t.wants(event)]
        if not targets:
            return
        body = build_body(settings, event, payload)
        from workers.queue import enqueue_notification, redis_connection

        conn = redis_connection(settings)
        try:
            for target in targets:
                enqueue_notification(conn, target.id, event, body, settings=settings)
        finally:
            conn.close()
    except Exception:
        # Deliberately broad: this runs at the end of quarantine and scan jobs, which must not fail here.
        log.warning("notification %r not queued", event, exc_info=True)


@dataclass(frozen=True)
class Delivery:
    """The outcome of one delivery attempt that will not be retried."""

    status: str  # "delivered", "refused" (an answer that retrying will not change), "dropped" (no such target)
    code: int | None = None
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        """The rq job result."""
        return {"status": self.status, "code": self.code, "detail": self.detail}


class DeliveryFailed(TransientError):
    """The receiver was unreachable, too slow or answered 5xx/429: rq tries again later."""


def send(
    target: Target,
    event: str,
    body: Mapping[str, Any],
    *,
    settings: Settings,
    delivery_id: str = "",
    transport: httpx.BaseTransport | None = None,
) -> Delivery:
    """POST ``body`` to ``target`` once; raises :class:`DeliveryFailed` when a retry may succeed."""
    data = encode(target, body)
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, EVENT_HEADER: event}
    if delivery_id:
        headers[DELIVERY_HEADER] = delivery_id
    if settings.notify_secret:
        headers[SIGNATURE_HEADER] = signature(settings.notify_secret, data)
    url = target.url
    timeout = httpx.Timeout(settings.notify_timeout)
    with httpx.Client(timeout=timeout, follow_redirects=False, transport=transport) as client:
        for _hop in range(MAX_REDIRECTS + 1):
            try:
                response = client.post(url, content=data, headers=headers)
            except httpx.TimeoutException as exc:
                raise DeliveryFailed(f"{target.describe()}: timed out ({type(exc).__name__})") from None
            except httpx.TransportError as exc:
                raise DeliveryFailed(f"{target.describe()}: {type(exc).__name__}") from None
            code = response.status_code
            if 200 <= code < 300:
                return Delivery("delivered", code)
            if code in {307, 308} and "location" in response.headers:
                following = str(response.url.join(response.headers["location"]))
                parts = urlsplit(following)
                if (parts.scheme, (parts.hostname or "").lower(), parts.port) != target.origin:
                    # The body may be signed and the URL carry a secret: it never goes to another host.
                    return Delivery("refused", code, "redirect to another host not followed")
                url = following
                continue
            if code >= 500 or code in _RETRIED_STATUS:
                raise DeliveryFailed(f"{target.describe()}: HTTP {code}")
            return Delivery("refused", code, _clip(response.text, 200))
    return Delivery("refused", None, f"more than {MAX_REDIRECTS} redirects")


def deliver(target_id: str, event: str, body: dict[str, Any]) -> dict[str, Any]:
    """rq entry point: deliver one queued event to the target ``target_id`` of the current settings."""
    settings = Settings.from_env()
    target = next((t for t in parse_targets(settings) if t.id == target_id), None)
    if target is None:
        log.warning("notification %r for target %s dropped: no longer configured", event, target_id)
        return Delivery("dropped", detail="target no longer configured").to_json()
    try:
        from rq import get_current_job

        job = get_current_job()
        delivery_id = job.id if job is not None else ""
    except Exception:  # pragma: no cover - outside a worker
        delivery_id = ""
    outcome = send(target, event, body, settings=settings, delivery_id=delivery_id)
    if outcome.status != "delivered":
        log.warning("notification %r to %s given up: %s %s", event, target.describe(), outcome.code, outcome.detail)
    return outcome.to_json()
