"""The quarantine state machine over the store: holds (where an image stands) and moves (its history).

One hold per (repository, digest); its ``plan`` names the move being carried out (``move_id``) and records
every step's progress, so a worker killed at any point leaves a state the next run completes::

    (none | released | failed) ──quarantine──▶ preserving ──copy verified──▶ preserved ──tags out──▶ held
    (held | preserving | preserved | failed) ──release──▶ releasing ──tags restored──▶ released

A new move supersedes the one in progress (its row becomes ``skipped``); the job running the image notices at
its next checkpoint and carries on with the newer move. ``failed`` is where a move that failed permanently
leaves the hold (``plan.failed`` says which kind and at which phase); a person (or a new decision) moves on
from there. ``origin`` is who decided last: ``manual`` (a person) is sticky against automatic decisions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping

from workers.domain import Actor, Digest, MoveKind
from workers.store import Store, clean_json, clean_text, quarantine_holds, quarantine_moves

MAX_HISTORY = 100  # moves shown on a record; older ones stay in the table and the audit trail
COPY_TAG_PREFIX = "held-"


class HoldState(StrEnum):
    """Where an image stands in the registry move state machine."""

    PRESERVING = "preserving"  # being copied into the quarantine repository; nothing touched yet
    PRESERVED = "preserved"  # the copy is verified; tags are being taken out of service
    HELD = "held"  # out of service: tags re-pointed to the placeholder (and the digest deleted when safe)
    RELEASING = "releasing"  # tags being restored to the original digest
    RELEASED = "released"  # back in service; the preserved copy stays in the quarantine repository
    FAILED = "failed"  # the last move failed permanently; ``error`` says why

    @property
    def in_progress(self) -> bool:
        """True for the states a move job is (or should be) working on."""
        return self in _IN_PROGRESS


_IN_PROGRESS = frozenset({HoldState.PRESERVING, HoldState.PRESERVED, HoldState.RELEASING})


class Origin(StrEnum):
    """Who decided the hold's last move."""

    POLICY = "policy"  # an automatic decision (scan, re-verification, re-decision)
    MANUAL = "manual"  # a person: sticky, automatic decisions never undo it


class MoveOutcome(StrEnum):
    """The outcome of one move."""

    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"  # superseded by a later move before it finished


class Superseded(Exception):
    """The move being carried out is no longer the hold's current move; stop it, run the current one."""


@dataclass(frozen=True)
class Hold:
    """One image's row of the state machine."""

    repository: str
    digest: Digest
    state: HoldState
    origin: Origin
    copy_repository: str | None
    plan: Mapping[str, Any]
    requested_by: str
    reason: str
    error: str | None
    updated_at: datetime

    @property
    def move_id(self) -> int | None:
        """The move being (or last) carried out."""
        value = self.plan.get("move_id")
        return value if isinstance(value, int) else None

    @property
    def kind(self) -> MoveKind | None:
        """The kind of the current move."""
        value = self.plan.get("kind")
        return MoveKind(value) if value in {k.value for k in MoveKind} else None

    @property
    def out_of_service(self) -> bool:
        """True when at least one tag was re-pointed or the digest deleted (what ``quarantined`` reports)."""
        if self.state is HoldState.HELD:
            return True
        if self.state is HoldState.RELEASED:
            return False
        return bool(self.plan.get("tags")) or bool(self.plan.get("deleted"))


@dataclass(frozen=True)
class Move:
    """One row of an image's history of moves."""

    id: int
    repository: str
    digest: Digest
    kind: MoveKind
    actor: str
    reason: str
    outcome: MoveOutcome
    details: Mapping[str, Any] = field(default_factory=dict)
    started_at: datetime | None = None
    finished_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        """The API form."""
        return {
            "id": self.id,
            "kind": self.kind.value,
            "actor": self.actor,
            "reason": self.reason,
            "outcome": self.outcome.value,
            "details": dict(self.details),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
        }


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z") if moment else None


def copy_repository(prefix: str, repository: str) -> str:
    """The repository holding the preserved copy: ``<prefix><repository>`` (``quarantine/team/app``)."""
    return f"{prefix}{repository}"


def copy_tag(digest: str) -> str:
    """The tag of a preserved manifest in the quarantine repository: ``held-sha256-<hex>``.

    Tagged so the copy is listable and survives ``garbage-collect --delete-untagged``; the ``held-`` prefix keeps it
    apart from cosign's ``sha256-<hex>.sig``/``.att`` and the referrers fallback tag ``sha256-<hex>``. Tags are at
    most 128 characters, so a sha512 digest's hex is cut (still far beyond any collision).
    """
    algorithm, _, hexpart = digest.partition(":")
    return f"{COPY_TAG_PREFIX}{algorithm}-{hexpart}"[:128]


def _hold(row: RowMapping) -> Hold:
    return Hold(
        repository=row["repository"],
        digest=Digest(row["digest"]),
        state=HoldState(row["state"]),
        origin=Origin(row["origin"]),
        copy_repository=row["copy_repository"],
        plan=dict(row["plan"] or {}),
        requested_by=row["requested_by"],
        reason=row["reason"],
        error=row["error"],
        updated_at=row["updated_at"],
    )


def _move(row: RowMapping) -> Move:
    return Move(
        id=row["id"],
        repository=row["repository"],
        digest=Digest(row["digest"]),
        kind=MoveKind(row["kind"]),
        actor=row["actor"],
        reason=row["reason"],
        outcome=MoveOutcome(row["outcome"]),
        details=dict(row["details"] or {}),
        started_at=row["started_at"],
        finished_at=row["finished_at"],
    )


def _where(repository: str, digest: str) -> Any:
    return sa.and_(quarantine_holds.c.repository == repository, quarantine_holds.c.digest == digest)


def get_hold(store: Store, repository: str, digest: str) -> Hold | None:
    """The hold of ``repository@digest``, or None when it was never moved."""
    with store.reading() as session:
        row = session.execute(sa.select(quarantine_holds).where(_where(repository, digest))).mappings().one_or_none()
    return _hold(row) if row is not None else None


def get_move(store: Store, move_id: int) -> Move | None:
    """One move by id."""
    with store.reading() as session:
        row = (
            session.execute(sa.select(quarantine_moves).where(quarantine_moves.c.id == move_id))
            .mappings()
            .one_or_none()
        )
    return _move(row) if row is not None else None


def moves_of(store: Store, repository: str, digest: str, *, limit: int = MAX_HISTORY) -> list[Move]:
    """The image's moves, oldest first (the newest ``limit``)."""
    with store.reading() as session:
        rows = (
            session.execute(
                sa.select(quarantine_moves)
                .where(quarantine_moves.c.repository == repository, quarantine_moves.c.digest == digest)
                .order_by(quarantine_moves.c.id.desc())
                .limit(limit)
            )
            .mappings()
            .all()
        )
    return [_move(row) for row in reversed(rows)]


def unfinished_holds(store: Store, *, limit: int = 1000) -> list[Hold]:
    """Holds a move job should be working on (preserving, preserved, releasing), oldest first."""
    states = [s.value for s in _IN_PROGRESS]
    with store.reading() as session:
        rows = (
            session.execute(
                sa.select(quarantine_holds)
                .where(quarantine_holds.c.state.in_(states))
                .order_by(quarantine_holds.c.updated_at)
                .limit(limit)
            )
            .mappings()
            .all()
        )
    return [_hold(row) for row in rows]


def placeholder_digests(store: Store, repository: str) -> frozenset[str]:
    """Every placeholder digest Tollgate pushed into ``repository`` (so its push is not vetted as an image)."""
    with store.reading() as session:
        plans = session.execute(
            sa.select(quarantine_holds.c.plan).where(quarantine_holds.c.repository == repository)
        ).scalars()
        found: set[str] = set()
        for plan in plans:
            for value in (plan or {}).get("placeholders") or ():
                if isinstance(value, str):
                    found.add(value)
    return frozenset(found)


# -- transitions ------------------------------------------------------------------------------------------------

# What survives a new quarantine of a released (or failed) image: the copy's inventory and every placeholder
# ever pushed (late notifications of an old placeholder must still be recognised).
_KEPT_ACROSS_MOVES = ("manifests", "blobs", "media_type", "copy_tag", "placeholders", "skipped_layers")


def begin_move(
    store: Store,
    repository: str,
    digest: Digest,
    *,
    kind: MoveKind,
    actor: Actor,
    reason: str,
    origin: Origin,
    copy_repo: str,
    details: Mapping[str, Any] | None = None,
) -> tuple[Hold, Move]:
    """Create the move and make it the hold's current one (superseding any move in progress); one transaction."""
    now = store.now()
    with store.transaction() as session:
        row = session.execute(sa.select(quarantine_holds).where(_where(repository, digest))).mappings().one_or_none()
        previous = _hold(row) if row is not None else None
        superseded = previous.move_id if previous is not None and previous.state.in_progress else None
        move_details = {**(details or {}), "attempts": 0}
        if previous is not None:
            move_details["from_state"] = previous.state.value
        if superseded is not None:
            move_details["supersedes"] = superseded
        move_id = session.execute(
            sa.insert(quarantine_moves)
            .values(
                repository=repository,
                digest=digest,
                kind=kind.value,
                actor=clean_text(str(actor))[:512],
                reason=clean_text(reason),
                outcome=MoveOutcome.RUNNING.value,
                details=clean_json(move_details),
                started_at=now,
                finished_at=None,
            )
            .returning(quarantine_moves.c.id)
        ).scalar_one()
        if superseded is not None:
            session.execute(
                sa.update(quarantine_moves)
                .where(quarantine_moves.c.id == superseded, quarantine_moves.c.outcome == MoveOutcome.RUNNING.value)
                .values(outcome=MoveOutcome.SKIPPED.value, finished_at=now)
            )
        plan = _next_plan(previous, kind, move_id)
        state = HoldState.PRESERVING if kind is MoveKind.QUARANTINE else HoldState.RELEASING
        values = {
            "state": state.value,
            "origin": origin.value,
            "copy_repository": copy_repo,
            "plan": clean_json(plan),
            "requested_by": clean_text(str(actor))[:512],
            "reason": clean_text(reason),
            "error": None,
            "updated_at": now,
        }
        if previous is None:
            session.execute(sa.insert(quarantine_holds).values(repository=repository, digest=digest, **values))
        else:
            session.execute(sa.update(quarantine_holds).where(_where(repository, digest)).values(**values))
        hold_row = session.execute(sa.select(quarantine_holds).where(_where(repository, digest))).mappings().one()
        move_row = session.execute(sa.select(quarantine_moves).where(quarantine_moves.c.id == move_id)).mappings().one()
        return _hold(hold_row), _move(move_row)


def _next_plan(previous: Hold | None, kind: MoveKind, move_id: int) -> dict[str, Any]:
    """The plan a new move starts from: a quarantine after a finished release starts its tag list afresh."""
    old = dict(previous.plan) if previous is not None else {}
    continuing = previous is not None and previous.state in {
        HoldState.PRESERVING,
        HoldState.PRESERVED,
        HoldState.HELD,
        HoldState.RELEASING,
        HoldState.FAILED,
    }
    if kind is MoveKind.QUARANTINE and not continuing:
        plan = {key: old[key] for key in _KEPT_ACROSS_MOVES if key in old}
    else:
        # A release needs what the quarantine moved; a quarantine resuming or retrying keeps its progress.
        plan = {key: value for key, value in old.items() if key not in {"failed", "release"}}
    plan["move_id"] = move_id
    plan["kind"] = kind.value
    return plan


def checkpoint(
    store: Store,
    repository: str,
    digest: str,
    move_id: int,
    *,
    state: HoldState | None = None,
    plan: Mapping[str, Any] | None = None,
    error: str | None = None,
) -> Hold:
    """Persist a step of move ``move_id``: the new state and/or plan entries; :class:`Superseded` when the hold has
    moved on to another move (so a stale job never writes over a newer move's progress)."""
    with store.transaction() as session:
        row = session.execute(sa.select(quarantine_holds).where(_where(repository, digest))).mappings().one_or_none()
        if row is None:
            raise Superseded(f"{repository}@{digest} has no hold")
        hold = _hold(row)
        if hold.move_id != move_id:
            raise Superseded(f"move {move_id} of {repository}@{digest} was superseded by move {hold.move_id}")
        values: dict[str, Any] = {"updated_at": store.now(), "error": error}
        if state is not None:
            values["state"] = state.value
        if plan:
            values["plan"] = clean_json({**hold.plan, **plan})
        session.execute(sa.update(quarantine_holds).where(_where(repository, digest)).values(**values))
        updated = session.execute(sa.select(quarantine_holds).where(_where(repository, digest))).mappings().one()
        return _hold(updated)


def note_error(store: Store, repository: str, digest: str, move_id: int, error: str) -> None:
    """Make a transient problem visible on the hold and the move (the state stays: the move is retried)."""
    with store.transaction() as session:
        session.execute(
            sa.update(quarantine_holds)
            .where(_where(repository, digest))
            .values(error=clean_text(error)[:2000], updated_at=store.now())
        )
        row = (
            session.execute(sa.select(quarantine_moves).where(quarantine_moves.c.id == move_id))
            .mappings()
            .one_or_none()
        )
        if row is not None:
            details = dict(row["details"] or {})
            errors = list(details.get("errors") or [])[-9:]
            errors.append(clean_text(error)[:500])
            details["errors"] = errors
            session.execute(
                sa.update(quarantine_moves).where(quarantine_moves.c.id == move_id).values(details=clean_json(details))
            )


def start_attempt(store: Store, move_id: int) -> Move | None:
    """A job starts (or resumes) move ``move_id``: running again, one more attempt counted."""
    with store.transaction() as session:
        row = (
            session.execute(sa.select(quarantine_moves).where(quarantine_moves.c.id == move_id))
            .mappings()
            .one_or_none()
        )
        if row is None:
            return None
        details = dict(row["details"] or {})
        details["attempts"] = int(details.get("attempts") or 0) + 1
        values: dict[str, Any] = {"details": clean_json(details)}
        if row["outcome"] == MoveOutcome.FAILED.value:
            values["outcome"] = MoveOutcome.RUNNING.value  # retries ran out earlier; the reconciler resumed it
            values["finished_at"] = None
        session.execute(sa.update(quarantine_moves).where(quarantine_moves.c.id == move_id).values(**values))
        updated = session.execute(sa.select(quarantine_moves).where(quarantine_moves.c.id == move_id)).mappings().one()
        return _move(updated)


def finish_move(
    store: Store,
    move_id: int,
    outcome: MoveOutcome,
    *,
    details: Mapping[str, Any] | None = None,
) -> None:
    """Record the outcome of move ``move_id`` (merging ``details``)."""
    with store.transaction() as session:
        row = (
            session.execute(sa.select(quarantine_moves).where(quarantine_moves.c.id == move_id))
            .mappings()
            .one_or_none()
        )
        if row is None:
            return
        merged = {**dict(row["details"] or {}), **(details or {})}
        session.execute(
            sa.update(quarantine_moves)
            .where(quarantine_moves.c.id == move_id)
            .values(outcome=outcome.value, details=clean_json(merged), finished_at=store.now())
        )


# -- the record's ``quarantine`` object --------------------------------------------------------------------------


def _summary(hold: Hold, history: Sequence[Move]) -> dict[str, Any]:
    plan = hold.plan
    placeholder = plan.get("placeholder")
    tags = [str(t) for t in plan.get("tags") or ()]
    copy = f"{hold.copy_repository}@{hold.digest}" if hold.copy_repository and plan.get("preserved") else None
    return {
        "state": hold.state.value,
        "origin": hold.origin.value,
        "requested_by": hold.requested_by,
        "reason": hold.reason,
        "copy": copy,
        "copy_repository": hold.copy_repository,
        "copy_tag": plan.get("copy_tag") if copy else None,
        "tags": [{"tag": tag, "placeholder": placeholder} for tag in tags],
        "placeholder": placeholder,
        "skipped_tags": list(plan.get("skipped_tags") or ()),
        "mode": plan.get("mode"),
        "mode_reason": plan.get("mode_reason"),
        "deleted": list(plan.get("deleted") or ()),
        "kept": list(plan.get("kept") or ()),
        "release": plan.get("release"),
        "error": hold.error,
        "updated_at": _iso(hold.updated_at),
        "moves": [move.to_json() for move in history],
    }


def hold_summary(store: Store, repository: str, digest: Digest) -> dict[str, Any] | None:
    """The ``quarantine`` object of the image record, or None when the image was never moved.

    ``state``/``origin``; ``copy`` (``<quarantine repo>@<digest>``, once the copy is verified) and its tag; the
    ``tags`` taken out of service with their ``placeholder``; ``skipped_tags`` (re-pushed elsewhere, untouched);
    ``mode`` (``deleted``/``repointed``) and why; ``release`` (what the last release restored or left alone);
    ``error``; and ``moves``, the history of moves, oldest first.
    """
    hold = get_hold(store, repository, digest)
    if hold is None:
        return None
    return _summary(hold, moves_of(store, repository, digest))
