"""Waivers: the security team's decision that a rule's findings stop counting, within a scope, until they expire.

A waiver names one rule id and, optionally, narrows it to a repository glob (the policy's ``match``
syntax), one image digest and/or a path glob. It applies at decision time (:func:`apply_waivers`, called
by the scan, re-verify and re-decide jobs before the policy decides): a matching finding stays on the
record, marked ``waived`` with the waiver's id, and no longer counts towards the verdict. A waiver never
hides a finding, never outlives its ``expires_at`` (mandatory, at most ``TOLLGATE_WAIVER_MAX_DAYS``
ahead) and is revocable; creation, revocation and expiry are audited, and each re-decides the images
with findings it matches (:func:`schedule_redecisions`, :func:`expire_due_waivers`).

Rule ids are checked for form (``family.name[-detail]``: lowercase letters, digits, ``.``, ``-``), not
against the loaded ruleset: rules come and go with ruleset versions (a waiver may be written for a rule
before the rule pack that adds it is deployed, and must keep working across a rescan under a new ruleset),
built-in ids (``tollgate.unpack.*``, ``names.look-alike``) and ``TOLLGATE_RULES_EXTRA`` packs are not all
in one place, and the web process does not compile YARA. Callers that do hold the ruleset can pass
``known_rules`` to refuse typos.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa

from workers import audit
from workers.domain import SYSTEM_ACTOR, Actor, Finding, ScanStatus, is_repository_name, parse_digest
from workers.errors import ActionRefused
from workers.policy import repository_glob
from workers.settings import Settings
from workers.store import Store, clean_text, findings, images, waivers

if TYPE_CHECKING:
    import redis

log = logging.getLogger(__name__)

MAX_RULE_LENGTH = 128
MAX_REASON_LENGTH = 2000
MAX_PATTERN_LENGTH = 1024
MIN_REASON_LENGTH = 3  # "ok" is not a reason anyone can audit later
RULE_ID_RE = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)+$")


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z") if moment else None


def path_glob(pattern: str) -> re.Pattern[str]:
    """Compile a path glob over absolute image paths; ValueError says what is wrong with it.

    ``*`` matches within one path component, ``?`` one character of a component, ``**`` (only as a whole
    component) any number of components including none: ``/opt/**/config.json``, ``/usr/lib/*.so``.
    """
    if not pattern.startswith("/"):
        raise ValueError("must be an absolute path glob starting with '/'")
    parts = pattern[1:].split("/")
    if pattern == "/" or any(not part for part in parts):
        raise ValueError("has an empty path component (a doubled or trailing '/')")
    out = ""
    for part in parts:
        if part in {".", ".."}:
            raise ValueError("must not contain '.' or '..' components (finding paths are normalised)")
        if part == "**":
            out += "(?:/[^/]+)*"
            continue
        if "**" in part:
            raise ValueError("'**' must be a whole path component (as in '/opt/**/x.json')")
        piece = "".join("[^/]*" if c == "*" else "[^/]" if c == "?" else re.escape(c) for c in part)
        out += "/" + piece
    return re.compile(out)


@lru_cache(maxsize=1024)
def _path_regex(pattern: str) -> re.Pattern[str]:
    return path_glob(pattern)


@lru_cache(maxsize=1024)
def _repository_regex(pattern: str) -> re.Pattern[str]:
    return repository_glob(pattern)


@dataclass(frozen=True)
class Waiver:
    """One waiver as stored: scope, why, who, until when, and its revocation if any."""

    id: int
    rule: str
    repository_pattern: str | None
    digest: str | None
    path_pattern: str | None
    reason: str
    created_by: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None = None
    revoked_by: str | None = None
    revoke_reason: str | None = None

    def active(self, now: datetime) -> bool:
        """Not revoked and not yet expired at ``now``."""
        return self.revoked_at is None and now < self.expires_at

    def state(self, now: datetime) -> str:
        """``active``, ``revoked`` or ``expired`` at ``now``."""
        if self.revoked_at is not None:
            return "revoked"
        return "active" if now < self.expires_at else "expired"

    def matches(self, repository: str, digest: str, finding: Finding) -> bool:
        """True when ``finding`` of ``repository@digest`` is within this waiver's scope (active or not)."""
        return finding.rule == self.rule and self.covers(repository, digest, finding.path)

    def covers(self, repository: str, digest: str, path: str | None) -> bool:
        """True when the repository, digest and path narrowing of this waiver (its rule aside) let them in."""
        if self.digest is not None and digest != self.digest:
            return False
        if self.repository_pattern is not None and not _repository_regex(self.repository_pattern).fullmatch(repository):
            return False
        if self.path_pattern is not None:
            if not path:
                return False  # a config or history finding has no path: a path-scoped waiver is not about it
            if not _path_regex(self.path_pattern).fullmatch(path if path.startswith("/") else "/" + path):
                return False
        return True

    def scope(self) -> str:
        """The scope in words, for explanations and audit reasons."""
        parts = [f"rule {self.rule}"]
        if self.repository_pattern:
            parts.append(f"repositories {self.repository_pattern}")
        if self.digest:
            parts.append(f"image {self.digest}")
        if self.path_pattern:
            parts.append(f"paths {self.path_pattern}")
        return ", ".join(parts)

    def to_json(self, now: datetime | None = None) -> dict[str, Any]:
        """The API representation; ``state`` is as of ``now`` (default: the current time)."""
        return {
            "id": self.id,
            "rule": self.rule,
            "repository_pattern": self.repository_pattern,
            "digest": self.digest,
            "path_pattern": self.path_pattern,
            "reason": self.reason,
            "created_by": self.created_by,
            "created_at": _iso(self.created_at),
            "expires_at": _iso(self.expires_at),
            "revoked_at": _iso(self.revoked_at),
            "revoked_by": self.revoked_by,
            "revoke_reason": self.revoke_reason,
            "state": self.state(now or datetime.now(UTC)),
        }


def _from_row(row: Any) -> Waiver:
    return Waiver(
        id=row.id,
        rule=row.rule,
        repository_pattern=row.repository_pattern,
        digest=row.digest,
        path_pattern=row.path_pattern,
        reason=row.reason,
        created_by=row.created_by,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        revoked_by=row.revoked_by,
        revoke_reason=row.revoke_reason,
    )


# -- validation --------------------------------------------------------------------------------------------------


def _text(value: object, what: str, limit: int) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be text")  # noqa: TRY004 - one error type for bad input (a 400)
    if len(value) > limit:
        raise ValueError(f"{what} is too long ({len(value)} characters; at most {limit})")
    return value


def _reason(value: object, what: str = "reason") -> str:
    text = _text(value, what, MAX_REASON_LENGTH).strip()
    if not text:
        raise ValueError(f"a {what} is required: say why, for whoever reads the audit trail")
    if len(text) < MIN_REASON_LENGTH:
        raise ValueError(f"the {what} is too short to mean anything ({text!r})")
    if any(not c.isprintable() and c not in "\n\t" for c in text):
        raise ValueError(f"the {what} contains control characters")
    return text


def _rule(value: object, known_rules: Collection[str] | None) -> str:
    rule = _text(value, "rule", MAX_RULE_LENGTH)
    if not rule:
        raise ValueError("a rule id is required (e.g. miner.xmrig-config)")
    if not RULE_ID_RE.fullmatch(rule):
        raise ValueError(
            f"{rule[:80]!r} is not a rule id: lowercase letters and digits in at least two parts joined by"
            " '.', '-' or '_', e.g. miner.xmrig-config"
        )
    if known_rules is not None and rule not in known_rules:
        raise ValueError(f"no rule {rule!r} in the loaded ruleset")
    return rule


def _repository_pattern(value: object) -> str | None:
    if value is None:
        return None
    pattern = _text(value, "repository pattern", 255)
    if is_repository_name(pattern):
        return pattern
    try:
        repository_glob(pattern)
    except ValueError as exc:
        raise ValueError(f"repository pattern {pattern[:80]!r} {exc}") from None
    return pattern


def _digest(value: object) -> str | None:
    if value is None:
        return None
    return parse_digest(_text(value, "digest", 135))


def _path_pattern(value: object) -> str | None:
    if value is None:
        return None
    pattern = _text(value, "path pattern", MAX_PATTERN_LENGTH)
    if any(not c.isprintable() for c in pattern):
        raise ValueError("path pattern contains control characters")
    try:
        path_glob(pattern)
    except ValueError as exc:
        raise ValueError(f"path pattern {pattern[:80]!r} {exc}") from None
    return pattern


def _expiry(value: object, now: datetime, max_days: int) -> datetime:
    if value is None:
        raise ValueError("an expiry (expires_at) is required: waivers never last forever")
    if not isinstance(value, datetime):
        raise ValueError("expires_at must be a date and time")  # noqa: TRY004 - one error type for bad input
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("expires_at must carry a time zone (e.g. 2026-06-30T00:00:00Z)")
    moment = value.astimezone(UTC)
    if moment <= now:
        raise ValueError(f"expires_at {_iso(moment)} is not in the future")
    if moment > now + timedelta(days=max_days):
        raise ValueError(f"expires_at {_iso(moment)} is more than {max_days} days ahead (TOLLGATE_WAIVER_MAX_DAYS)")
    return moment


# -- writes ------------------------------------------------------------------------------------------------------


def create_waiver(
    store: Store,
    actor: Actor,
    *,
    rule: str,
    reason: str,
    expires_at: datetime,
    repository_pattern: str | None = None,
    digest: str | None = None,
    path_pattern: str | None = None,
    max_days: int | None = None,
    known_rules: Collection[str] | None = None,
) -> Waiver:
    """Validate, store and audit (``waiver.create``) a waiver; ValueError says what is wrong with the input.

    ``max_days`` defaults to ``TOLLGATE_WAIVER_MAX_DAYS``. Call :func:`schedule_redecisions` afterwards
    (after the commit, as for every enqueue) so images with matching findings are decided again.
    """
    now = store.now()
    limit = max_days if max_days is not None else Settings.from_env().waiver_max_days
    values: dict[str, Any] = {
        "rule": _rule(rule, known_rules),
        "repository_pattern": _repository_pattern(repository_pattern),
        "digest": _digest(digest),
        "path_pattern": _path_pattern(path_pattern),
        "reason": clean_text(_reason(reason)),
        "created_by": clean_text(str(actor))[:512],
        "created_at": now,
        "expires_at": _expiry(expires_at, now, limit),
    }
    with store.transaction() as session:
        waiver_id = session.execute(sa.insert(waivers).values(**values).returning(waivers.c.id)).scalar_one()
    waiver = Waiver(id=waiver_id, **values)
    try:
        audit.record(
            store,
            actor,
            audit.AuditAction.WAIVER_CREATE,
            f"waiver:{waiver.id}",
            reason=waiver.reason,
            details=waiver.to_json(now),
        )
    except Exception:
        # A waiver nobody can find in the audit trail must not take effect.
        with store.transaction() as session:
            session.execute(sa.delete(waivers).where(waivers.c.id == waiver.id))
        raise
    log.info("waiver %d created by %s: %s until %s", waiver.id, actor, waiver.scope(), _iso(waiver.expires_at))
    return waiver


def get_waiver(store: Store, waiver_id: int) -> Waiver | None:
    """The waiver ``waiver_id``, or None."""
    with store.reading() as session:
        row = session.execute(sa.select(waivers).where(waivers.c.id == waiver_id)).one_or_none()
    return _from_row(row) if row is not None else None


def revoke_waiver(store: Store, actor: Actor, waiver_id: int, reason: str) -> Waiver:
    """Revoke an active waiver and audit it (``waiver.revoke``); its findings count again from the next decision.

    LookupError when there is no such waiver; ActionRefused when it is already revoked or expired; ValueError
    for a missing reason. Call :func:`schedule_redecisions` afterwards.
    """
    why = clean_text(_reason(reason))
    if isinstance(waiver_id, bool) or not isinstance(waiver_id, int):
        raise LookupError(f"no waiver {str(waiver_id)[:40]!r}")  # noqa: TRY004 - not an id: no such waiver
    now = store.now()
    who = clean_text(str(actor))[:512]
    with store.transaction() as session:
        row = session.execute(sa.select(waivers).where(waivers.c.id == waiver_id).with_for_update()).one_or_none()
        if row is None:
            raise LookupError(f"no waiver {waiver_id}")
        current = _from_row(row)
        if current.revoked_at is not None:
            raise ActionRefused(f"waiver {waiver_id} was already revoked by {current.revoked_by}")
        if not current.active(now):
            raise ActionRefused(f"waiver {waiver_id} already expired at {_iso(current.expires_at)}")
        bumped = cast(
            "sa.CursorResult[Any]",
            session.execute(
                sa.update(waivers)
                .where(waivers.c.id == waiver_id, waivers.c.revoked_at.is_(None))
                .values(revoked_at=now, revoked_by=who, revoke_reason=why)
            ),
        )
        if bumped.rowcount != 1:
            raise ActionRefused(f"waiver {waiver_id} was revoked concurrently")
    waiver = replace(current, revoked_at=now, revoked_by=who, revoke_reason=why)
    try:
        audit.record(
            store,
            actor,
            audit.AuditAction.WAIVER_REVOKE,
            f"waiver:{waiver_id}",
            reason=why,
            details=waiver.to_json(now),
        )
    except Exception:
        with store.transaction() as session:  # an unaudited revocation does not happen either
            session.execute(
                sa.update(waivers)
                .where(waivers.c.id == waiver_id)
                .values(revoked_at=None, revoked_by=None, revoke_reason=None)
            )
        raise
    log.info("waiver %d revoked by %s", waiver_id, actor)
    return waiver


# -- reads -------------------------------------------------------------------------------------------------------


def list_waivers(store: Store, *, include_inactive: bool = False) -> list[Waiver]:
    """Waivers, newest first: the active ones, or every one ever made with ``include_inactive``."""
    query = sa.select(waivers).order_by(waivers.c.id.desc())
    if not include_inactive:
        query = query.where(waivers.c.revoked_at.is_(None), waivers.c.expires_at > store.now())
    with store.reading() as session:
        return [_from_row(row) for row in session.execute(query)]


def active_waivers(store: Store, now: datetime) -> list[Waiver]:
    """Waivers in force at ``now``, oldest first (the oldest matching waiver is the one a finding names)."""
    query = (
        sa.select(waivers)
        .where(waivers.c.revoked_at.is_(None), waivers.c.expires_at > now)
        .order_by(waivers.c.id.asc())
    )
    with store.reading() as session:
        return [_from_row(row) for row in session.execute(query)]


# -- decision time -----------------------------------------------------------------------------------------------


def apply_waivers(
    found: Iterable[Finding], waivers_in_force: Sequence[Waiver], repository: str, digest: str, now: datetime
) -> tuple[Finding, ...]:
    """``found`` with ``waived``/``waiver_id`` set by the waivers active at ``now`` (and cleared otherwise).

    Computed afresh every time: a finding waived at the last decision by a waiver since revoked or expired
    counts again. Nothing is removed; the policy ignores waived findings and names them in the explanation.
    """
    live = [w for w in waivers_in_force if w.active(now)]
    out: list[Finding] = []
    for finding in found:
        match = next((w for w in live if w.matches(repository, digest, finding)), None)
        waiver_id = match.id if match is not None else None
        if finding.waived != (match is not None) or finding.waiver_id != waiver_id:
            out.append(replace(finding, waived=match is not None, waiver_id=waiver_id))
        else:
            out.append(finding)
    return tuple(out)


# -- re-decisions ------------------------------------------------------------------------------------------------


def affected_images(store: Store, waiver: Waiver) -> list[tuple[str, str]]:
    """(repository, digest) of every decided image with a finding within ``waiver``'s scope."""
    query = (
        sa.select(images.c.repository, images.c.digest, findings.c.path)
        .join(findings, findings.c.image_id == images.c.id)
        .where(findings.c.rule == waiver.rule, images.c.verdict.is_not(None))
        .where(images.c.status.in_([ScanStatus.DONE.value, ScanStatus.ERROR.value]))
    )
    if waiver.digest is not None:
        query = query.where(images.c.digest == waiver.digest)
    seen: dict[tuple[str, str], None] = {}
    with store.reading() as session:
        for repository, digest, path in session.execute(query.distinct()):
            if (repository, digest) in seen:
                continue
            if waiver.covers(repository, digest, path):
                seen[(repository, digest)] = None
    return list(seen)


def schedule_redecisions(settings: Settings, store: Store, conn: redis.Redis, waiver: Waiver) -> int:
    """Queue a re-decision of every image with findings ``waiver`` matches; how many images that is.

    Call after :func:`create_waiver`, :func:`revoke_waiver` and at expiry. For an active waiver this also
    schedules the expiry sweep at ``expires_at``. Raises QueueUnavailable when Redis fails (the waiver stands;
    the caller reports that images are decided again at their next scan or the next sweep).
    """
    from workers.queue import enqueue_redecision, schedule_waiver_expiry

    now = store.now()
    state = waiver.state(now)
    if state == "active":
        schedule_waiver_expiry(conn, waiver.id, waiver.expires_at, settings=settings)
    targets = affected_images(store, waiver)
    cause = f"waiver-{waiver.id}-{'created' if state == 'active' else state}"
    for repository, digest in targets:
        enqueue_redecision(conn, repository, digest, cause=cause, settings=settings)
    if targets:
        log.info("waiver %d (%s): %d image(s) to decide again", waiver.id, state, len(targets))
    return len(targets)


def expire_due_waivers(
    settings: Settings, store: Store, conn: redis.Redis, now: datetime | None = None
) -> list[Waiver]:
    """Audit ``waiver.expire`` once for every waiver that expired unrevoked, and re-decide what it matched.

    Run by the job scheduled at each waiver's expiry and by every periodic reconciler pass (the safety net
    for a lost scheduled job). The re-decisions are queued before the expiry is claimed, so a Redis outage
    leaves the waiver for the next sweep rather than half-handled; the claim (``expiry_recorded_at``) makes
    concurrent sweeps audit it once.
    """
    moment = now or store.now()
    with store.reading() as session:
        rows = session.execute(
            sa.select(waivers)
            .where(
                waivers.c.revoked_at.is_(None),
                waivers.c.expires_at <= moment,
                waivers.c.expiry_recorded_at.is_(None),
            )
            .order_by(waivers.c.id)
        ).all()
    expired: list[Waiver] = []
    for row in rows:
        waiver = _from_row(row)
        affected = schedule_redecisions(settings, store, conn, waiver)
        with store.transaction() as session:
            claimed = cast(
                "sa.CursorResult[Any]",
                session.execute(
                    sa.update(waivers)
                    .where(waivers.c.id == waiver.id, waivers.c.expiry_recorded_at.is_(None))
                    .values(expiry_recorded_at=moment)
                ),
            ).rowcount
        if claimed != 1:
            continue  # another sweep got there first
        try:
            audit.record(
                store,
                SYSTEM_ACTOR,
                audit.AuditAction.WAIVER_EXPIRE,
                f"waiver:{waiver.id}",
                reason=f"expired at {_iso(waiver.expires_at)} (waived because: {waiver.reason})"[:4000],
                details={**waiver.to_json(moment), "images": affected},
            )
        except Exception:
            with store.transaction() as session:
                session.execute(sa.update(waivers).where(waivers.c.id == waiver.id).values(expiry_recorded_at=None))
            raise
        expired.append(waiver)
    return expired


FIRST_SWEEP_LOOKBACK = timedelta(days=1)


def _swept_key(settings: Settings) -> str:
    return f"{settings.queue_prefix}:waivers:swept"


def redecide_changed_waivers(settings: Settings, store: Store, conn: redis.Redis) -> int:
    """Queue the re-decisions of every waiver created or revoked since the last call (the periodic safety net).

    The API queues them when it creates or revokes a waiver; when Redis was down at that moment, this pass
    (run by every reconciler pass) catches up. Re-decisions are keyed by their cause, so one already queued
    is not queued twice. The first pass ever looks back a day. Returns how many waivers it handled.
    """
    started = store.now()
    raw = conn.get(_swept_key(settings))
    since = started - FIRST_SWEEP_LOOKBACK
    if raw is not None:
        try:
            since = datetime.fromisoformat(raw if isinstance(raw, str) else raw.decode())
        except ValueError:
            log.warning("waiver sweep mark %r is not a time; looking back a day", raw[:40])
    with store.reading() as session:
        rows = session.execute(
            sa.select(waivers)
            .where(sa.or_(waivers.c.created_at >= since, waivers.c.revoked_at >= since))
            .order_by(waivers.c.id)
        ).all()
    for row in rows:
        schedule_redecisions(settings, store, conn, _from_row(row))
    # The mark is the time before the query: a waiver made while this ran is looked at again next time.
    conn.set(_swept_key(settings), started.isoformat())
    return len(rows)


def expiry_sweep_job() -> dict[str, Any]:
    """rq entry point (scheduled at a waiver's expiry): run :func:`expire_due_waivers` now."""
    from workers.jobs import _settings, _store
    from workers.queue import redis_connection

    settings = _settings()
    conn = redis_connection(settings)
    try:
        expired = expire_due_waivers(settings, _store(), conn)
    finally:
        conn.close()
    return {"status": "done", "expired": [w.id for w in expired]}
