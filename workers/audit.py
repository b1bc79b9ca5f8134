"""The audit trail: append-only, hash-chained records of every automatic or human state change."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import IO, Any, cast

import sqlalchemy as sa

from workers.domain import Actor
from workers.store import Store, audit_events, audit_head, clean_json, clean_text

GENESIS_HASH = "0" * 64
MAX_PAGE = 1000
_HEAD_ID = 1


class AuditAction(StrEnum):
    """What happened; the names are part of the API (``GET /api/v1/audit?action=…``)."""

    VERDICT = "verdict"  # a scan or re-decision changed an image's verdict or action
    QUARANTINE = "quarantine"  # an image was taken out of service (policy or a person)
    QUARANTINE_FAILED = "quarantine.failed"
    RELEASE = "release"
    RELEASE_FAILED = "release.failed"
    RESCAN = "rescan"
    WAIVER_CREATE = "waiver.create"
    WAIVER_REVOKE = "waiver.revoke"
    WAIVER_EXPIRE = "waiver.expire"
    POLICY_CHANGE = "policy.change"
    TOKEN_CREATE = "token.create"  # noqa: S105 - an action name, not a secret
    TOKEN_REVOKE = "token.revoke"  # noqa: S105 - an action name, not a secret
    USER_CREATE = "user.create"
    USER_CHANGE = "user.change"
    LOGIN = "login"
    LOGIN_FAILED = "login.failed"


@dataclass(frozen=True)
class AuditEvent:
    """One record of the trail, as stored and as the API prints it."""

    id: int
    at: datetime
    actor: str
    actor_role: str | None
    action: str
    target: str
    reason: str
    details: Mapping[str, Any] = field(default_factory=dict)
    prev_hash: str = GENESIS_HASH
    hash: str = ""

    def to_json(self) -> dict[str, Any]:
        """The API and JSON-lines form; ``at`` is ISO 8601 in UTC with a ``Z``."""
        return {
            "id": self.id,
            "at": _iso(self.at),
            "actor": self.actor,
            "actor_role": self.actor_role,
            "action": self.action,
            "target": self.target,
            "reason": self.reason,
            "details": dict(self.details),
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


@dataclass(frozen=True)
class ChainCheck:
    """The outcome of re-computing the hash chain: ``broken_at`` is the first record that does not fit."""

    checked: int
    broken_at: int | None = None
    why: str | None = None

    @property
    def intact(self) -> bool:
        """True when every record's hash is its content's and links to the record before."""
        return self.broken_at is None


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _chain_hash(prev_hash: str, at: datetime, fields: tuple[Any, ...]) -> str:
    """sha256 over canonical JSON of the previous hash, the time and the record's fields (actor … details)."""
    # Everything a reader relies on is covered, so an edited row no longer matches its hash.
    body = json.dumps(
        [prev_hash, _iso(at), *fields],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    )
    return hashlib.sha256(body.encode()).hexdigest()


def record(
    store: Store,
    actor: Actor,
    action: AuditAction,
    target: str,
    *,
    reason: str,
    details: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Append one record; durable when this returns (raises StoreUnavailable otherwise, never drops it).

    Appenders are serialised on the single ``audit_head`` row, so the chain never forks under concurrency.
    """
    at = store.now()
    actor_name = clean_text(str(actor))[:512]
    role = actor.role.value if actor.role is not None else None
    clean_target = clean_text(target)[:1024]
    clean_reason = clean_text(reason)[:4000]
    clean_details = clean_json(dict(details or {}))
    with store.transaction() as session:
        # Taking the head row lock first (an UPDATE) makes this transaction the only appender until commit.
        bumped = cast(
            "sa.CursorResult[Any]",
            session.execute(
                sa.update(audit_head).where(audit_head.c.id == _HEAD_ID).values(count=audit_head.c.count + 1)
            ),
        )
        if bumped.rowcount == 0:
            session.execute(
                store.insert(audit_head)
                .values(id=_HEAD_ID, hash=GENESIS_HASH, count=1)
                .on_conflict_do_update(index_elements=["id"], set_={"count": audit_head.c.count + 1})
            )
        prev_hash = session.execute(sa.select(audit_head.c.hash).where(audit_head.c.id == _HEAD_ID)).scalar_one()
        fields = (actor_name, role, action.value, clean_target, clean_reason, clean_details)
        digest = _chain_hash(prev_hash, at, fields)
        values: dict[str, Any] = {
            "at": at,
            "actor": actor_name,
            "actor_role": role,
            "action": action.value,
            "target": clean_target,
            "reason": clean_reason,
            "details": clean_details,
            "prev_hash": prev_hash,
            "hash": digest,
        }
        event_id = session.execute(sa.insert(audit_events).values(**values).returning(audit_events.c.id)).scalar_one()
        session.execute(sa.update(audit_head).where(audit_head.c.id == _HEAD_ID).values(hash=digest))
    return AuditEvent(id=event_id, **values)


def _row_event(row: Any) -> AuditEvent:
    fields = row._mapping
    return AuditEvent(**{**fields, "details": fields["details"] or {}})


def _filtered(
    *,
    after_id: int | None,
    before_id: int | None = None,
    since: datetime | None,
    until: datetime | None,
    target: str | None,
    target_prefix: str | None,
    action: str | None,
    actor: str | None,
) -> sa.Select[Any]:
    query = sa.select(audit_events)
    if after_id is not None:
        query = query.where(audit_events.c.id > after_id)
    if before_id is not None:
        query = query.where(audit_events.c.id < before_id)
    if since is not None:
        query = query.where(audit_events.c.at >= since)
    if until is not None:
        query = query.where(audit_events.c.at < until)
    if target is not None:
        query = query.where(audit_events.c.target == target)
    if target_prefix is not None:
        escaped = target_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(audit_events.c.target.like(escaped + "%", escape="\\"))
    if action is not None:
        query = query.where(audit_events.c.action == action)
    if actor is not None:
        query = query.where(audit_events.c.actor == actor)
    return query


def events(
    store: Store,
    *,
    after_id: int | None = None,
    before_id: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    target: str | None = None,
    target_prefix: str | None = None,
    action: str | None = None,
    actor: str | None = None,
    limit: int = 100,
    newest_first: bool = False,
) -> list[AuditEvent]:
    """Records matching every given filter, oldest first (or newest first), at most ``limit`` (≤ MAX_PAGE).

    Page forward with ``after_id`` = the last id seen: ids only grow, so no record is skipped or repeated;
    newest first, page back with ``before_id`` = the last (smallest) id seen.
    """
    limit = max(1, min(limit, MAX_PAGE))
    query = _filtered(
        after_id=after_id,
        before_id=before_id,
        since=since,
        until=until,
        target=target,
        target_prefix=target_prefix,
        action=action,
        actor=actor,
    )
    order = audit_events.c.id.desc() if newest_first else audit_events.c.id.asc()
    with store.reading() as session:
        rows = session.execute(query.order_by(order).limit(limit)).all()
    return [_row_event(row) for row in rows]


def iter_all(store: Store, **filters: Any) -> Iterator[AuditEvent]:
    """Every matching record, oldest first, fetched page by page (bounded memory for an export)."""
    after_id: int | None = None
    while True:
        page = events(store, after_id=after_id, limit=MAX_PAGE, **filters)
        yield from page
        if len(page) < MAX_PAGE:
            return
        after_id = page[-1].id


def export_jsonl(store: Store, out: IO[str], **filters: Any) -> int:
    """Write matching records as JSON lines to ``out``; returns how many were written."""
    written = 0
    for event in iter_all(store, **filters):
        out.write(json.dumps(event.to_json(), sort_keys=False, ensure_ascii=False) + "\n")
        written += 1
    return written


def verify_chain(store: Store) -> ChainCheck:
    """Recompute every hash from the first record on; the first mismatch says where the trail was altered."""
    prev_hash = GENESIS_HASH
    checked = 0
    last_id = 0
    for event in iter_all(store):
        last_id = event.id
        if event.prev_hash != prev_hash:
            return ChainCheck(checked, event.id, "does not link to the record before it")
        fields = (event.actor, event.actor_role, event.action, event.target, event.reason, event.details)
        expected = _chain_hash(event.prev_hash, event.at, fields)
        if expected != event.hash:
            return ChainCheck(checked, event.id, "its content does not match its hash")
        prev_hash = event.hash
        checked += 1
    with store.reading() as session:
        head = session.execute(sa.select(audit_head.c.hash).where(audit_head.c.id == _HEAD_ID)).scalar()
    if head is not None and head != prev_hash:
        return ChainCheck(checked, last_id + 1, "records after the last one were removed")
    return ChainCheck(checked)
