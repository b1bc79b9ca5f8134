"""Read-only listings the status pages show: repositories, a repository's tags, search, and the queue's jobs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis
import sqlalchemy as sa
from redis.exceptions import RedisError
from rq import Queue
from rq.job import Job

from workers.errors import QueueUnavailable
from workers.queue import MONITORED_QUEUES, SERIALIZER
from workers.store import Store, images, tags

MAX_PAGE = 500
SEARCH_LIMIT = 50


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    text = moment.isoformat()
    return text.replace("+00:00", "Z")


def _like(fragment: str) -> str:
    """A LIKE pattern matching ``fragment`` anywhere, with LIKE's wildcards taken literally."""
    escaped = fragment.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


# -- repositories and tags ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    """One page of rows and the total they come from."""

    rows: list[dict[str, Any]]
    total: int
    offset: int
    limit: int

    @property
    def next_offset(self) -> int | None:
        """The offset of the next page, or None on the last one."""
        following = self.offset + len(self.rows)
        return following if following < self.total else None

    @property
    def previous_offset(self) -> int | None:
        """The offset of the previous page, or None on the first one."""
        return max(0, self.offset - self.limit) if self.offset > 0 else None


def _bounds(limit: int, offset: int) -> None:
    if not 1 <= limit <= MAX_PAGE or offset < 0:
        raise ValueError(f"limit must be 1..{MAX_PAGE} and offset >= 0")


def repositories(store: Store, *, contains: str | None = None, limit: int = 100, offset: int = 0) -> Page:
    """Repositories by name with how many images, held images, tags and the last update of each."""
    _bounds(limit, offset)
    held = sa.func.sum(sa.case((images.c.quarantined.is_(True), 1), else_=0))
    malicious = sa.func.sum(sa.case((images.c.verdict == "malicious", 1), else_=0))
    query = sa.select(
        images.c.repository,
        sa.func.count().label("images"),
        held.label("held"),
        malicious.label("malicious"),
        sa.func.max(images.c.updated_at).label("updated_at"),
    ).group_by(images.c.repository)
    counted = sa.select(sa.func.count(sa.distinct(images.c.repository)))
    if contains:
        query = query.where(images.c.repository.like(_like(contains), escape="\\"))
        counted = counted.where(images.c.repository.like(_like(contains), escape="\\"))
    with store.reading() as session:
        total = session.scalar(counted) or 0
        rows = session.execute(query.order_by(images.c.repository).limit(limit).offset(offset)).all()
    return Page(
        rows=[
            {
                "repository": row.repository,
                "images": int(row.images or 0),
                "held": int(row.held or 0),
                "malicious": int(row.malicious or 0),
                "updated_at": _iso(store_time(row.updated_at)),
            }
            for row in rows
        ],
        total=total,
        offset=offset,
        limit=limit,
    )


def store_time(value: Any) -> datetime | None:
    """An aggregate's datetime: SQLite hands ``max()`` back as text, PostgreSQL as a datetime."""
    if value is None or isinstance(value, datetime):
        return value
    from datetime import UTC

    moment = datetime.fromisoformat(str(value))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _tag_row(row: Any) -> dict[str, Any]:
    return {
        "tag": row.tag,
        "digest": row.digest,
        "status": row.status,
        "verdict": row.verdict,
        "action": row.action,
        "quarantined": bool(row.quarantined) if row.quarantined is not None else False,
        "known": row.status is not None,
        "updated_at": _iso(store_time(row.updated_at)),
    }


def _tag_query() -> sa.Select[Any]:
    return sa.select(
        tags.c.repository,
        tags.c.tag,
        tags.c.digest,
        tags.c.updated_at,
        images.c.status,
        images.c.verdict,
        images.c.action,
        images.c.quarantined,
    ).outerjoin(images, sa.and_(images.c.repository == tags.c.repository, images.c.digest == tags.c.digest))


def repository_tags(store: Store, repository: str, *, limit: int = 50, offset: int = 0) -> Page:
    """The tags of ``repository`` (most recently moved first) with the status and verdict of their image."""
    _bounds(limit, offset)
    query = (
        _tag_query()
        .where(tags.c.repository == repository)
        .order_by(tags.c.updated_at.desc(), tags.c.tag)
        .limit(limit)
        .offset(offset)
    )
    with store.reading() as session:
        total = session.scalar(sa.select(sa.func.count()).select_from(tags).where(tags.c.repository == repository))
        rows = session.execute(query).all()
    return Page(rows=[_tag_row(row) for row in rows], total=total or 0, offset=offset, limit=limit)


def untagged_images(store: Store, repository: str, *, limit: int = 50) -> list[dict[str, Any]]:
    """Images of ``repository`` no tag points at (pushed by digest, or re-tagged since), newest first."""
    tagged = sa.select(tags.c.digest).where(tags.c.repository == repository)
    query = (
        sa.select(images.c.digest, images.c.status, images.c.verdict, images.c.action, images.c.quarantined)
        .add_columns(images.c.updated_at)
        .where(images.c.repository == repository, images.c.digest.not_in(tagged))
        .order_by(images.c.updated_at.desc())
        .limit(limit)
    )
    with store.reading() as session:
        rows = session.execute(query).all()
    return [
        {
            "digest": row.digest,
            "status": row.status,
            "verdict": row.verdict,
            "action": row.action,
            "quarantined": bool(row.quarantined),
            "updated_at": _iso(store_time(row.updated_at)),
        }
        for row in rows
    ]


def repository_known(store: Store, repository: str) -> bool:
    """True when Tollgate has an image or a tag of ``repository``."""
    with store.reading() as session:
        found = session.scalar(sa.select(images.c.id).where(images.c.repository == repository).limit(1))
        if found is None:
            found = session.scalar(sa.select(tags.c.id).where(tags.c.repository == repository).limit(1))
    return found is not None


def images_with_digest(store: Store, digest: str, *, limit: int = SEARCH_LIMIT) -> list[dict[str, Any]]:
    """Every repository's record of ``digest`` (a digest may be pushed to several repositories)."""
    query = (
        sa.select(images.c.repository, images.c.digest, images.c.status, images.c.verdict, images.c.quarantined)
        .where(images.c.digest == digest)
        .order_by(images.c.repository)
        .limit(limit)
    )
    with store.reading() as session:
        return [dict(row._mapping) for row in session.execute(query)]


def search_tags(store: Store, fragment: str, *, limit: int = SEARCH_LIMIT) -> list[dict[str, Any]]:
    """Tags whose name contains ``fragment``, with their image's status and verdict."""
    query = (
        _tag_query()
        .where(tags.c.tag.like(_like(fragment), escape="\\"))
        .order_by(tags.c.repository, tags.c.tag)
        .limit(limit)
    )
    with store.reading() as session:
        rows = session.execute(query).all()
    return [{"repository": row.repository, **_tag_row(row)} for row in rows]


def search_digest_prefix(store: Store, prefix: str, *, limit: int = SEARCH_LIMIT) -> list[dict[str, Any]]:
    """Images whose digest starts with ``prefix`` (``sha256:ab12…`` or the bare hex)."""
    if not prefix.startswith(("sha256:", "sha512:")):
        prefix = "sha256:" + prefix
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    query = (
        sa.select(images.c.repository, images.c.digest, images.c.status, images.c.verdict, images.c.quarantined)
        .where(images.c.digest.like(escaped + "%", escape="\\"))
        .order_by(images.c.repository)
        .limit(limit)
    )
    with store.reading() as session:
        return [dict(row._mapping) for row in session.execute(query)]


# -- the queue ---------------------------------------------------------------------------------------------------


def _job_summary(queue_name: str, job: Job) -> dict[str, Any]:
    meta = job.meta or {}
    return {
        "id": job.id,
        "queue": queue_name,
        "description": job.description,
        "repository": meta.get("repository"),
        "digest": meta.get("digest"),
        "stage": meta.get("stage"),
        "enqueued_at": _iso(job.enqueued_at),
        "started_at": _iso(job.started_at),
        "retries_left": job.retries_left,
    }


def _fetch(conn: redis.Redis, queue_name: str, ids: list[str]) -> list[dict[str, Any]]:
    return [_job_summary(queue_name, job) for job in Job.fetch_many(ids, connection=conn, serializer=SERIALIZER) if job]


def queue_jobs(conn: redis.Redis, *, limit: int = 50) -> dict[str, list[dict[str, Any]]]:
    """Running jobs (with their stage), waiting jobs and jobs waiting to be retried, per monitored queue."""
    found: dict[str, list[dict[str, Any]]] = {"running": [], "queued": [], "retrying": []}
    try:
        for name in MONITORED_QUEUES:
            queue = Queue(name, connection=conn, serializer=SERIALIZER)
            found["running"] += _fetch(conn, name, queue.started_job_registry.get_job_ids(0, limit - 1))
            found["queued"] += _fetch(conn, name, queue.get_job_ids(0, limit))
            found["retrying"] += _fetch(conn, name, queue.scheduled_job_registry.get_job_ids(0, limit - 1))
    except RedisError as exc:
        raise QueueUnavailable(f"could not read the queues: {exc}") from exc
    return {kind: jobs[:limit] for kind, jobs in found.items()}


def job_stage(conn: redis.Redis, job_id: str | None) -> str | None:
    """The stage a running scan job last reported, or None (no job, finished, or Redis unreachable)."""
    if not job_id:
        return None
    try:
        job = Job.fetch(job_id, connection=conn, serializer=SERIALIZER)
    except Exception:  # rq raises NoSuchJobError, Redis its own errors: no stage to show either way
        return None
    stage = (job.meta or {}).get("stage")
    return str(stage)[:200] if stage else None
