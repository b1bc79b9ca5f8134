"""Quarantine entry points: a person's move request, a decision's enforcement, the move job, and its resumption.

Who decides what (the human decision is sticky):

- A decision (scan, re-verification, re-decision) whose action is ``quarantine`` quarantines the image, unless
  a person released it; one that is no longer ``quarantine`` releases a hold that policy made, never one a
  person made. So a waiver or a valid signature that arrives later releases an automatic hold by itself.
- A person may quarantine any image Tollgate has a record of (also one already held: the hold becomes theirs,
  and the tags are checked again) and release any image that is held, being held, or whose move failed.

Every move is a row of ``quarantine_moves`` and is audited when it finishes (``quarantine``, ``release`` or
their ``.failed``); a person's request is audited when it is made too. The move itself runs as one rq job per
image (:func:`move_image`), which always carries out the hold's *current* move: a move requested while the job
runs supersedes the older one at the job's next checkpoint.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import redis

from workers import audit
from workers.domain import SYSTEM_ACTOR, Action, Actor, Digest, MoveKind, parse_digest
from workers.errors import ActionRefused, PermanentError, QueueUnavailable, TransientError, UnknownImage
from workers.notify import notify
from workers.quarantine.engine import Mover
from workers.quarantine.placeholder import build_placeholder, details_url
from workers.quarantine.state import (
    Hold,
    HoldState,
    MoveOutcome,
    Origin,
    Superseded,
    begin_move,
    checkpoint,
    copy_repository,
    copy_tag,
    finish_move,
    get_hold,
    get_move,
    note_error,
    start_attempt,
    unfinished_holds,
)
from workers.queue import enqueue_move, job_is_live, move_job_id, redis_connection
from workers.registry import RegistryClient
from workers.settings import Settings
from workers.store import Store

log = logging.getLogger(__name__)

MAX_CHAINED_MOVES = 10  # moves one job carries out back to back when people keep superseding each other
MAX_REASON = 2000

_AUDIT = {
    (MoveKind.QUARANTINE, True): audit.AuditAction.QUARANTINE,
    (MoveKind.QUARANTINE, False): audit.AuditAction.QUARANTINE_FAILED,
    (MoveKind.RELEASE, True): audit.AuditAction.RELEASE,
    (MoveKind.RELEASE, False): audit.AuditAction.RELEASE_FAILED,
}


@dataclass(frozen=True)
class MoveTicket:
    """What a move request returns: the move's id, the rq job carrying it out, its kind and the hold's state."""

    move_id: int
    job_id: str
    kind: MoveKind
    state: str

    def to_json(self) -> dict[str, Any]:
        """The API form of the ticket."""
        return {"move_id": self.move_id, "job_id": self.job_id, "kind": self.kind.value, "state": self.state}


# -- requests ---------------------------------------------------------------------------------------------------


def request_move(  # noqa: PLR0917 - the positional signature the API and CLI call
    settings: Settings,
    store: Store,
    conn: redis.Redis,
    repository: str,
    digest: Digest,
    kind: MoveKind,
    actor: Actor,
    reason: str,
) -> MoveTicket:
    """A person asks to quarantine or release ``repository@digest``: record and audit it, then queue the move.

    Raises :class:`UnknownImage` when Tollgate has no record of the image, :class:`ActionRefused` when the
    state does not allow it (releasing an image that is not held) or ``reason`` is empty, ``ValueError`` for
    invalid names, and :class:`QueueUnavailable` when the job could not be queued (the move is recorded all the
    same and the reconciler queues it on its next pass; repeating the request is harmless).
    """
    why = reason.strip()
    if not why:
        raise ActionRefused("a reason is required")
    checked = parse_digest(digest)
    if store.get_record(repository, checked) is None:
        raise UnknownImage(f"Tollgate has no record of {repository}@{checked}")
    hold = get_hold(store, repository, checked)
    if kind is MoveKind.RELEASE:
        if hold is None:
            raise ActionRefused(f"{repository}@{checked} is not held in quarantine; there is nothing to release")
        if hold.state is HoldState.RELEASED:
            raise ActionRefused(f"{repository}@{checked} was already released (by {hold.requested_by})")
    hold, move = begin_move(
        store,
        repository,
        checked,
        kind=kind,
        actor=actor,
        reason=why[:MAX_REASON],
        origin=Origin.MANUAL,
        copy_repo=copy_repository(settings.quarantine_repo, repository),
        details={"requested": True},
    )
    audit.record(
        store,
        actor,
        _AUDIT[(kind, True)],
        f"{repository}@{checked}",
        reason=why[:MAX_REASON],
        details={"phase": "requested", "move_id": move.id, "from_state": move.details.get("from_state")},
    )
    job_id = _enqueue(settings, store, conn, hold, move.id)
    return MoveTicket(move_id=move.id, job_id=job_id, kind=kind, state=hold.state.value)


def _enqueue(settings: Settings, store: Store, conn: redis.Redis, hold: Hold, move_id: int) -> str:
    try:
        return enqueue_move(conn, hold.repository, hold.digest, move_id, settings=settings).job_id
    except QueueUnavailable as exc:
        # The move is in the store: it stays visible (the hold's error) and the reconciler queues it.
        note_error(store, hold.repository, hold.digest, move_id, f"not queued yet ({exc}); the reconciler retries")
        raise


def enforce_decision(settings: Settings, store: Store, repository: str, digest: Digest, action: Action) -> None:
    """Make the registry follow a decision: quarantine for ``quarantine``, release an automatic hold otherwise.

    A person's release is not undone by a later ``quarantine`` decision, and a person's quarantine is never
    released automatically. A move that cannot be queued (Redis down) is recorded and left for the
    reconciler, and logged as an error: it is never dropped.
    """
    hold = get_hold(store, repository, digest)
    if action is Action.QUARANTINE:
        if hold is not None:
            if hold.origin is Origin.MANUAL and hold.kind is MoveKind.RELEASE:
                log.info(
                    "%s@%s: released by %s; the decision does not re-quarantine it",
                    repository,
                    digest,
                    hold.requested_by,
                )
                return
            if hold.kind is MoveKind.QUARANTINE and hold.state is not HoldState.FAILED:
                return  # held, or on its way
        kind = MoveKind.QUARANTINE
    else:
        if hold is None or hold.origin is Origin.MANUAL:
            return
        if hold.kind is MoveKind.RELEASE and hold.state is not HoldState.FAILED:
            return
        kind = MoveKind.RELEASE
    record = store.get_record(repository, digest)
    explanation = record.explanation if record is not None and record.explanation else f"policy action {action}"
    hold, move = begin_move(
        store,
        repository,
        digest,
        kind=kind,
        actor=SYSTEM_ACTOR,
        reason=f"policy: {explanation}"[:MAX_REASON],
        origin=Origin.POLICY,
        copy_repo=copy_repository(settings.quarantine_repo, repository),
        details={"action": action.value},
    )
    try:
        conn = redis_connection(settings)
        try:
            _enqueue(settings, store, conn, hold, move.id)
        finally:
            conn.close()
    except QueueUnavailable as exc:
        log.error(  # noqa: TRY400 - the outage is the message; its traceback says nothing more
            "%s of %s@%s (move %d) not queued: %s; the reconciler will queue it", kind, repository, digest, move.id, exc
        )


# -- the job ----------------------------------------------------------------------------------------------------


@cache
def _store_for(database_url: str) -> Store:
    return Store(database_url)


def move_image(repository: str, digest: str, move_id: int) -> dict[str, Any]:
    """rq job: carry out the current move of ``repository@digest`` (``move_id`` is the one that queued it).

    Transient errors propagate so rq retries with backoff (the state stays where it got to); a permanent error
    is recorded as a failed move and ends the job.
    """
    settings = Settings.from_env()
    store = _store_for(settings.database_url)
    with RegistryClient.from_settings(settings) as client:
        return run_move(settings, store, client, repository, parse_digest(digest), move_id=int(move_id))


def run_move(
    settings: Settings,
    store: Store,
    client: RegistryClient,
    repository: str,
    digest: Digest,
    *,
    move_id: int,
    step: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Carry out the hold's current move to its end; idempotent (a finished hold is left as it is) and resumable.

    ``step`` is told each step as it completes (``preserved``, ``untagged``, ``repointed:<tag>`` …): a seam for
    tests that crash a worker at a given point.
    """
    current = move_id
    result: dict[str, Any] = {"status": "skipped", "reason": "no hold"}
    for _ in range(MAX_CHAINED_MOVES):
        hold = get_hold(store, repository, digest)
        if hold is None or hold.move_id is None:
            return result
        current = hold.move_id
        if not hold.state.in_progress:
            return {"status": "done", "state": hold.state.value, "move_id": current}
        start_attempt(store, current)
        try:
            result = _carry_out(settings, store, client, hold, move_id=current, step=step)
        except Superseded:
            continue
        except TransientError as exc:
            note_error(store, repository, digest, current, f"will retry: {exc.diagnostics()}")
            raise
        except PermanentError as exc:
            try:
                result = _fail(settings, store, hold, current, exc.diagnostics())
            except Superseded:
                continue
        except Exception as exc:  # an error is never a pass: a bug ends the move as failed, visibly
            log.exception("move %d of %s@%s failed unexpectedly", current, repository, digest)
            try:
                result = _fail(settings, store, hold, current, f"internal error ({type(exc).__name__}): {exc}")
            except Superseded:
                continue
        latest = get_hold(store, repository, digest)
        if latest is None or latest.move_id == current or not latest.state.in_progress:
            return result
    return {"status": "skipped", "reason": f"more than {MAX_CHAINED_MOVES} moves superseded each other"}


def _carry_out(
    settings: Settings,
    store: Store,
    client: RegistryClient,
    hold: Hold,
    *,
    move_id: int,
    step: Callable[[str], None] | None,
) -> dict[str, Any]:
    repository, digest = hold.repository, hold.digest
    copy_repo = hold.copy_repository or copy_repository(settings.quarantine_repo, repository)

    def save(**plan: Any) -> Hold:
        return checkpoint(store, repository, digest, move_id, plan=plan)

    told = step or (lambda _name: None)
    mover = Mover(client, repository=repository, digest=digest, copy_repository=copy_repo, save=save, step=told)
    if hold.kind is MoveKind.RELEASE:
        return _release(settings, store, mover, hold, move_id)
    return _quarantine(settings, store, mover, hold, move_id=move_id, step=told)


def _quarantine(
    settings: Settings, store: Store, mover: Mover, hold: Hold, *, move_id: int, step: Callable[[str], None]
) -> dict[str, Any]:
    repository, digest = hold.repository, hold.digest
    # 1-2. Preserve and verify (skipped when resuming a hold whose copy was verified already).
    if hold.state is HoldState.PRESERVING or not hold.plan.get("preserved"):
        if hold.state is not HoldState.PRESERVING:
            checkpoint(store, repository, digest, move_id, state=HoldState.PRESERVING)
        # The tags the record knew when the move began: a tag re-pushed since is reported, not touched.
        expected_now = sorted(set(hold.plan.get("expected_tags") or ()) | set(store.tags_of(repository, digest)))
        inventory = mover.inventory()
        checkpoint(
            store,
            repository,
            digest,
            move_id,
            plan={
                **inventory.to_plan(),
                "copy_tag": copy_tag(digest),
                "preserved": False,
                "expected_tags": expected_now,
            },
        )
        counts = mover.preserve(inventory)
        mover.verify_copy(inventory)
        hold = checkpoint(
            store, repository, digest, move_id, state=HoldState.PRESERVED, plan={"preserved": True, "copied": counts}
        )
        step("preserved")
    inventory = mover.preserved_inventory(hold.plan)
    # 3. The placeholder is recorded before it is pushed, so its push notification is recognised.
    placeholder = build_placeholder(
        public_url=settings.public_url, repository=repository, digest=digest, reason=hold.reason
    )
    placeholders = sorted({*(hold.plan.get("placeholders") or ()), placeholder.digest})
    hold = checkpoint(
        store, repository, digest, move_id, plan={"placeholder": placeholder.digest, "placeholders": placeholders}
    )
    mover.push_placeholder_blobs(placeholder)
    moved, listing = mover.take_out(placeholder, plan_tags=hold.plan.get("tags") or ())
    expected = set(hold.plan.get("expected_tags") or ()) | set(store.tags_of(repository, digest))
    skipped = [
        {
            "tag": tag,
            "digest": listing[tag].digest if tag in listing else None,
            "why": "re-pushed to another digest before the quarantine; left alone"
            if tag in listing
            else "deleted before the quarantine",
        }
        for tag in sorted(expected - set(moved))
    ]
    hold = checkpoint(store, repository, digest, move_id, plan={"tags": moved, "skipped_tags": skipped})
    step("untagged")
    # 4. Delete the digest when nothing else needs it.
    mode = mover.delete_if_safe(inventory, listing, placeholders=placeholders)
    hold = checkpoint(store, repository, digest, move_id, plan=mode)
    mover.verify_out_of_service(moved, mode["deleted"])
    hold = checkpoint(store, repository, digest, move_id, state=HoldState.HELD)
    details = {
        "copy": f"{mover.copy_repository}@{digest}",
        "tags": moved,
        "skipped_tags": skipped,
        "placeholder": placeholder.digest,
        "mode": mode["mode"],
        "mode_reason": mode["mode_reason"],
        "deleted": mode["deleted"],
    }
    finish_move(store, move_id, MoveOutcome.DONE, details=details)
    store.set_quarantined(repository, digest, True)
    _announce(settings, store, hold, move_id, done=True, details=details)
    step("held")
    return {"status": "done", "state": HoldState.HELD.value, "move_id": move_id, **details}


def _release(settings: Settings, store: Store, mover: Mover, hold: Hold, move_id: int) -> dict[str, Any]:
    repository, digest = hold.repository, hold.digest
    result = mover.release(hold.plan)
    hold = checkpoint(store, repository, digest, move_id, state=HoldState.RELEASED, plan={"release": result})
    details = {"copy": f"{mover.copy_repository}@{digest}", "tags": result.get("restored", []), **result}
    finish_move(store, move_id, MoveOutcome.DONE, details=details)
    store.set_quarantined(repository, digest, False)
    _announce(settings, store, hold, move_id, done=True, details=details)
    return {"status": "done", "state": HoldState.RELEASED.value, "move_id": move_id, **details}


def _fail(settings: Settings, store: Store, hold: Hold, move_id: int, message: str) -> dict[str, Any]:
    """A permanent failure: the hold says ``failed`` (and why), the move is failed, audited and announced."""
    phase = hold.state.value
    updated = checkpoint(
        store,
        hold.repository,
        hold.digest,
        move_id,
        state=HoldState.FAILED,
        plan={"failed": {"kind": hold.kind.value if hold.kind else None, "phase": phase}},
        error=message[:2000],
    )
    details = {"error": message[:2000], "phase": phase}
    finish_move(store, move_id, MoveOutcome.FAILED, details=details)
    store.set_quarantined(hold.repository, hold.digest, updated.out_of_service)
    _announce(settings, store, updated, move_id, done=False, details=details)
    log.warning("move %d of %s@%s failed: %s", move_id, hold.repository, hold.digest, message)
    return {"status": "failed", "state": HoldState.FAILED.value, "move_id": move_id, **details}


def _announce(
    settings: Settings, store: Store, hold: Hold, move_id: int, *, done: bool, details: Mapping[str, Any]
) -> None:
    """Audit the outcome of a move and notify about it."""
    kind = hold.kind or MoveKind.QUARANTINE
    action = _AUDIT[(kind, done)]
    move = get_move(store, move_id)
    target = f"{hold.repository}@{hold.digest}"
    audit.record(
        store,
        SYSTEM_ACTOR,
        action,
        target,
        reason=move.reason if move is not None else hold.reason,
        details={
            "phase": "done" if done else "failed",
            "move_id": move_id,
            "requested_by": move.actor if move else hold.requested_by,
            "origin": hold.origin.value,
            **details,
        },
    )
    record = store.get_record(hold.repository, hold.digest)
    notify(
        settings,
        action.value,
        {
            "image": target,
            "repository": hold.repository,
            "digest": hold.digest,
            "verdict": record.verdict.value if record is not None and record.verdict else None,
            "action": record.action.value if record is not None and record.action else None,
            "kind": kind.value,
            "state": hold.state.value,
            "origin": hold.origin.value,
            "move_id": move_id,
            "actor": move.actor if move else hold.requested_by,
            "reason": move.reason if move else hold.reason,
            "url": details_url(settings.public_url, hold.repository, hold.digest),
            **details,
        },
    )


def on_move_failed(job: Any, connection: Any, exc_type: Any, exc_value: Any, tb: Any) -> None:
    """rq failure callback of :func:`move_image`: visible on the hold while retrying; once retries ran out the move
    is recorded as failed (and audited): the hold keeps its state, so the reconciler resumes it later."""
    try:
        repository, digest, move_id = job.args[0], parse_digest(job.args[1]), int(job.args[2])
    except (IndexError, ValueError, TypeError):
        log.exception(
            "failed move job %s has unexpected arguments %r", getattr(job, "id", "?"), getattr(job, "args", None)
        )
        return
    detail = "".join(traceback.format_exception_only(exc_type, exc_value)).strip() if exc_type else "job failed"
    settings = Settings.from_env()
    store = _store_for(settings.database_url)
    if getattr(job, "retries_left", 0):
        note_error(store, repository, digest, move_id, f"will retry: {detail}")
        return
    hold = get_hold(store, repository, digest)
    if hold is None or not hold.state.in_progress:
        return
    note_error(store, repository, digest, hold.move_id or move_id, f"gave up for now: {detail}; the reconciler resumes")
    finish_move(store, hold.move_id or move_id, MoveOutcome.FAILED, details={"error": detail[:2000], "gave_up": True})
    _announce(
        settings,
        store,
        hold,
        hold.move_id or move_id,
        done=False,
        details={"error": detail[:2000], "phase": hold.state.value},
    )


# -- resumption -------------------------------------------------------------------------------------------------


def resume_moves(settings: Settings, store: Store, conn: redis.Redis) -> list[str]:
    """Queue the move of every hold left in an intermediate state with no live job; the images queued.

    For workers killed mid-move, retries that ran out, and moves that could not be queued. Raises
    :class:`QueueUnavailable` when Redis fails.
    """
    resumed = []
    for hold in unfinished_holds(store):
        if hold.move_id is None or job_is_live(conn, move_job_id(hold.repository, hold.digest)):
            continue
        enqueue_move(conn, hold.repository, hold.digest, hold.move_id, settings=settings)
        resumed.append(f"{hold.repository}@{hold.digest}")
        log.info("resumed move %d of %s@%s (%s)", hold.move_id, hold.repository, hold.digest, hold.state)
    return resumed
