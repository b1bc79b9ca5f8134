"""The policy in force: versions of the policy YAML kept in the database, each change audited.

The newest version is in force. ``TOLLGATE_POLICY_FILE`` seeds it: whenever the file's content differs
from the newest version that came from the file (at start, and on the first job after an edit), that
content becomes a new version (source ``file``, actor ``system:file``); :func:`set_policy` (the API, the
CLI) adds versions too (source ``api``). The last change wins: an API change stays in force until the
file is edited again. Every version is validated by the policy parser before it is stored, so an invalid
text is refused with the parser's diagnostics. A file that becomes invalid is not recorded; while it is,
:func:`effective_policy` raises ConfigError and jobs record images as errors (never judged under a stale
or default policy) until the file is fixed.

Relative key and trusted-root paths in any version are read from the policy file's directory (the
working directory when there is no file). A change re-decides every decided image
(:func:`schedule_policy_redecisions`, also run by the periodic reconciler as a safety net), through the
re-verify job so that a changed signature trust policy is verified again, not judged on old checks.
"""

from __future__ import annotations

import difflib
import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from workers import audit
from workers.domain import Actor, ActorKind
from workers.errors import ConfigError
from workers.policy import Policy, parse_policy
from workers.settings import Settings
from workers.store import Store, clean_text, images, policy_versions

if TYPE_CHECKING:
    import redis

log = logging.getLogger(__name__)

FILE_ACTOR = Actor(ActorKind.SYSTEM, "file")
MAX_POLICY_BYTES = 256 * 1024
MAX_DIFF_CHARS = 8000
MAX_HISTORY = 1000
_PG_POLICY_LOCK = 0x7A11_6A7E_0002  # serialises version writers across processes (see Store's migration lock)


class Source(StrEnum):
    """Where a version came from (the ``source`` column)."""

    FILE = "file"
    API = "api"


@dataclass(frozen=True)
class PolicyVersion:
    """One stored version of the policy text."""

    id: int
    digest: str  # sha256:<hex> of the UTF-8 text
    text: str
    source: str  # "file" or "api"
    actor: str
    reason: str
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        """The API representation."""
        return {
            "id": self.id,
            "digest": self.digest,
            "text": self.text,
            "source": self.source,
            "actor": self.actor,
            "reason": self.reason,
            "created_at": self.created_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        }


def text_digest(text: str) -> str:
    """``sha256:<hex>`` of ``text`` as UTF-8."""
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def _from_row(row: Any) -> PolicyVersion:
    return PolicyVersion(
        id=row.id,
        digest=row.digest,
        text=row.text,
        source=row.source,
        actor=row.actor,
        reason=row.reason,
        created_at=row.created_at,
    )


def _base_dir(settings: Settings | None) -> Path | None:
    if settings is not None and settings.policy_file is not None:
        return Path(settings.policy_file).parent
    return None


def validate_policy_text(text: str, *, source: str = "<policy>", base_dir: Path | None = None) -> Policy:
    """Parse ``text`` strictly; ConfigError with the parser's diagnostics (line and key) otherwise."""
    if not isinstance(text, str):
        raise ConfigError("the policy must be YAML text")
    if len(text.encode("utf-8", errors="replace")) > MAX_POLICY_BYTES:
        raise ConfigError(f"the policy is larger than {MAX_POLICY_BYTES} bytes")
    if "\x00" in text:
        raise ConfigError("the policy contains a NUL character")
    if not text.strip():
        raise ConfigError("the policy is empty; it needs at least 'version: 1'")
    return parse_policy(text, source, base_dir)


def newest(store: Store, *, source: str | None = None) -> PolicyVersion | None:
    """The newest stored version (of ``source`` only, when given)."""
    query = sa.select(policy_versions).order_by(policy_versions.c.id.desc()).limit(1)
    if source is not None:
        query = query.where(policy_versions.c.source == source)
    with store.reading() as session:
        row = session.execute(query).one_or_none()
    return _from_row(row) if row is not None else None


def policy_history(store: Store, limit: int = 50) -> list[PolicyVersion]:
    """Versions, newest first, at most ``limit`` (1..1000)."""
    bounded = max(1, min(int(limit), MAX_HISTORY))
    with store.reading() as session:
        rows = session.execute(sa.select(policy_versions).order_by(policy_versions.c.id.desc()).limit(bounded))
        return [_from_row(row) for row in rows]


def diff_summary(before: str | None, after: str) -> dict[str, Any]:
    """Lines added and removed, and the unified diff (clipped), for the audit record."""
    old = (before or "").splitlines(keepends=True)
    new = after.splitlines(keepends=True)
    lines = list(difflib.unified_diff(old, new, "in force", "new", n=1))
    added = sum(1 for line in lines if line.startswith("+") and not line.startswith("+++"))
    removed = sum(1 for line in lines if line.startswith("-") and not line.startswith("---"))
    text = "".join(lines)
    if len(text) > MAX_DIFF_CHARS:
        text = text[:MAX_DIFF_CHARS] + "\n… (diff clipped)\n"
    return {"added_lines": added, "removed_lines": removed, "diff": text}


def _record_version(store: Store, actor: Actor, text: str, reason: str, source: str) -> PolicyVersion | None:
    """Store ``text`` as the newest version unless it already is, and audit the change; None when unchanged.

    Writers are serialised (an advisory lock on PostgreSQL, the write lock on SQLite), so two processes
    seeding the same file make one version.
    """
    digest = text_digest(text)
    now = store.now()
    with store.transaction() as session:
        if store.is_sqlite:
            # Any write statement takes SQLite's database write lock for the rest of the transaction.
            session.execute(sa.update(policy_versions).where(sa.false()).values(reason=policy_versions.c.reason))
        else:
            session.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_POLICY_LOCK)))
        previous_row = session.execute(
            sa.select(policy_versions).order_by(policy_versions.c.id.desc()).limit(1)
        ).one_or_none()
        previous = _from_row(previous_row) if previous_row is not None else None
        if source == Source.FILE:
            last_file = session.execute(
                sa.select(policy_versions.c.digest)
                .where(policy_versions.c.source == Source.FILE)
                .order_by(policy_versions.c.id.desc())
                .limit(1)
            ).scalar_one_or_none()
            if last_file == digest:
                return None  # the file has not changed since it was last recorded (an API change may be newer)
        elif previous is not None and previous.digest == digest:
            return None
        values: dict[str, Any] = {
            "digest": digest,
            "text": text,
            "source": str(source),
            "actor": clean_text(str(actor))[:512],
            "reason": clean_text(reason)[:4000],
            "created_at": now,
        }
        version_id = session.execute(
            sa.insert(policy_versions).values(**values).returning(policy_versions.c.id)
        ).scalar_one()
    version = PolicyVersion(id=version_id, **values)
    try:
        audit.record(
            store,
            actor,
            audit.AuditAction.POLICY_CHANGE,
            f"policy:{version.id}",
            reason=version.reason,
            details={
                "version": version.id,
                "digest": version.digest,
                "source": version.source,
                "previous_version": previous.id if previous else None,
                "previous_digest": previous.digest if previous else None,
                **diff_summary(previous.text if previous else None, text),
            },
        )
    except Exception:
        # A policy change that is not in the audit trail must not be in force either.
        with store.transaction() as session:
            session.execute(sa.delete(policy_versions).where(policy_versions.c.id == version.id))
        raise
    log.info("policy version %d (%s) by %s: %s", version.id, source, actor, version.reason)
    return version


def set_policy(
    store: Store, actor: Actor, text: str, reason: str, *, settings: Settings | None = None
) -> PolicyVersion:
    """Make ``text`` the policy in force (source ``api``), audited as ``policy.change`` with the diff summary.

    ConfigError with the parser's diagnostics when ``text`` is not a valid policy; ValueError without a
    reason. The same text as the version in force makes no new version: that version is returned. Call
    :func:`schedule_policy_redecisions` afterwards so decided images are decided again.
    """
    if not isinstance(reason, str) or not reason.strip():
        raise ValueError("a reason is required: say why the policy changes")
    if len(reason) > 2000:
        raise ValueError("the reason is too long (at most 2000 characters)")
    validate_policy_text(text, source="<policy change>", base_dir=_base_dir(settings or _env_settings()))
    version = _record_version(store, actor, text, reason.strip(), Source.API)
    if version is None:
        current = newest(store)
        assert current is not None  # unchanged means a version with this text is in force
        return current
    return version


def _env_settings() -> Settings | None:
    try:
        return Settings.from_env()
    except ConfigError:
        return None


_FILE_STAMPS: dict[str, tuple[tuple[int, int], str, str]] = {}  # path → ((mtime_ns, size), digest, text)


def _read_file(path: Path) -> tuple[str, str]:
    """(text, digest) of the policy file, re-read only when its mtime or size changes."""
    key = str(Path(path).resolve())
    try:
        stat = Path(path).stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        hit = _FILE_STAMPS.get(key)
        if hit is not None and hit[0] == stamp:
            return hit[2], hit[1]
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"policy file {path}: not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"policy file {path}: cannot read it: {exc.strerror or exc}") from None
    digest = text_digest(text)
    _FILE_STAMPS[key] = (stamp, digest, text)
    return text, digest


def sync_policy_file(store: Store, settings: Settings) -> PolicyVersion | None:
    """Record ``TOLLGATE_POLICY_FILE`` as a new version when its content differs from the newest file version.

    Returns the new version, or None (no file, or unchanged). ConfigError when the file is unreadable or
    not a valid policy: nothing is recorded, and the caller must not decide under another policy.
    """
    if settings.policy_file is None:
        return None
    path = Path(settings.policy_file)
    text, digest = _read_file(path)
    last_file = newest(store, source=Source.FILE)
    if last_file is not None and last_file.digest == digest:
        return None
    validate_policy_text(text, source=str(path), base_dir=path.parent)
    reason = f"{'seeded from' if last_file is None else 'changed in'} TOLLGATE_POLICY_FILE {path}"
    return _record_version(store, FILE_ACTOR, text, reason, Source.FILE)


def current_policy(store: Store, settings: Settings) -> PolicyVersion | None:
    """The version in force (after taking in an edited policy file), or None: the built-in default applies.

    A policy file that is broken is logged here and not taken in; :func:`effective_policy` refuses to
    decide while it is.
    """
    try:
        sync_policy_file(store, settings)
    except ConfigError as exc:
        log.warning("policy file not taken in: %s", exc.diagnostics())
    return newest(store)


_PARSED: dict[tuple[str, int, str], Policy] = {}


def effective_policy(store: Store, settings: Settings) -> Policy:
    """The parsed policy in force, for the jobs; cached by version id. ConfigError when it cannot be had.

    No version at all (no file, nothing set) is the built-in default policy, as before versions existed.
    """
    sync_policy_file(store, settings)
    version = newest(store)
    if version is None:
        return Policy()
    base = _base_dir(settings)
    key = (str(store.url), version.id, str(base))
    cached = _PARSED.get(key)
    if cached is not None:
        return cached
    source = f"policy version {version.id} ({version.source})"
    parsed = validate_policy_text(version.text, source=source, base_dir=base)
    if len(_PARSED) > 64:
        _PARSED.clear()
    _PARSED[key] = parsed
    return parsed


def _redecided_key(settings: Settings) -> str:
    return f"{settings.queue_prefix}:policy:redecided"


def schedule_policy_redecisions(settings: Settings, store: Store, conn: redis.Redis) -> int:
    """Queue a re-decision (with signatures verified again) of every decided image under the version in force.

    Idempotent per version: a Redis key remembers the version whose re-decisions were queued, so the
    periodic reconciler calls this on every pass (catching file edits and a caller that did not) and only
    the first call after a change queues anything. Returns how many images were queued.
    """
    from workers.queue import REVERIFY_FUNCTION, enqueue_redecision

    version = current_policy(store, settings)
    if version is None:
        return 0
    marker = _redecided_key(settings)
    done = conn.get(marker)
    if done is not None and (done if isinstance(done, str) else done.decode()) == str(version.id):
        return 0
    count = 0
    after = 0
    while True:
        with store.reading() as session:
            page = session.execute(
                sa.select(images.c.id, images.c.repository, images.c.digest)
                .where(images.c.verdict.is_not(None), images.c.id > after)
                .order_by(images.c.id)
                .limit(500)
            ).all()
        for image_id, repository, digest in page:
            after = image_id
            enqueue_redecision(
                conn, repository, digest, cause=f"policy-{version.id}", settings=settings, func=REVERIFY_FUNCTION
            )
            count += 1
        if len(page) < 500:
            break
    conn.set(marker, str(version.id))
    if count:
        log.info("policy version %d: %d image(s) to decide again", version.id, count)
    return count
