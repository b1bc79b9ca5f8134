"""The image store: the only writer of image state (records, tags, findings), on SQLite or PostgreSQL."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from workers.domain import (
    Action,
    Digest,
    Finding,
    PlatformReport,
    ScanReport,
    ScanStatus,
    Verdict,
    is_repository_name,
    is_tag,
    parse_digest,
)
from workers.errors import StoreUnavailable

if TYPE_CHECKING:
    from workers.settings import Settings
    from workers.signatures.model import SignatureCheck

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
MAX_LIST_LIMIT = 1000
# Any 64-bit constant works; it only has to be the same in every Tollgate process.
_PG_MIGRATION_LOCK = 0x7A11_6A7E_0001
_SQLITE_BUSY_TIMEOUT_S = 30.0


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


# ---------------------------------------------------------------------------------------------------------------
# The record


@dataclass(frozen=True)
class ImageRecord:
    """The API record of one (repository, digest): ARCHITECTURE.md §3 plus scan details."""

    repository: str
    digest: Digest
    media_type: str | None
    tags: tuple[str, ...]
    status: ScanStatus
    verdict: Verdict | None
    action: Action | None
    quarantined: bool
    ruleset: str | None
    findings: tuple[Finding, ...]
    platforms: tuple[dict[str, Any], ...]
    signatures: tuple[dict[str, Any], ...]
    provenance: Mapping[str, Any]
    errors: tuple[str, ...]
    explanation: str
    first_seen: datetime
    updated_at: datetime
    scanned_at: datetime | None
    job_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON object the API and the CLI print; datetimes are ISO 8601 in UTC with a ``Z``."""
        return {
            "repository": self.repository,
            "digest": self.digest,
            "media_type": self.media_type,
            "tags": list(self.tags),
            "status": self.status.value,
            "verdict": self.verdict.value if self.verdict else None,
            "action": self.action.value if self.action else None,
            "quarantined": self.quarantined,
            "ruleset": self.ruleset,
            "findings": [f.to_json() for f in self.findings],
            "platforms": [dict(p) for p in self.platforms],
            "signatures": [dict(s) for s in self.signatures],
            "provenance": dict(self.provenance),
            "errors": list(self.errors),
            "explanation": self.explanation,
            "first_seen": _iso(self.first_seen),
            "updated_at": _iso(self.updated_at),
            "scanned_at": _iso(self.scanned_at),
            "job_id": self.job_id,
        }

    @classmethod
    def from_report(
        cls,
        report: ScanReport,
        *,
        tags: Sequence[str] = (),
        status: ScanStatus = ScanStatus.DONE,
        now: datetime | None = None,
    ) -> ImageRecord:
        """The record of a report that is not (yet) stored, e.g. for ``tollgate scan``."""
        moment = now or utcnow()
        return cls(
            repository=report.repository,
            digest=report.digest,
            media_type=report.media_type,
            tags=tuple(tags),
            status=status,
            verdict=report.verdict,
            action=report.action,
            quarantined=False,
            ruleset=report.ruleset,
            findings=report.findings,
            platforms=tuple(platform_summary(p) for p in report.platforms),
            signatures=tuple(check.to_json() for check in report.signatures),
            provenance=dict(report.provenance),
            errors=report.errors,
            explanation=report.explanation,
            first_seen=moment,
            updated_at=moment,
            scanned_at=moment,
        )


def platform_summary(report: PlatformReport) -> dict[str, Any]:
    """The JSON summary of one scanned platform, as stored and served."""
    return {
        "platform": report.platform,
        "manifest": report.manifest_digest,
        "config": report.config_digest,
        "layers": [
            {"digest": layer.digest, "diff_id": layer.diff_id, "step": layer.step, "size": layer.size}
            for layer in report.layers
        ],
        "history_aligned": report.history_aligned,
        "files_scanned": report.files_scanned,
        "bytes_scanned": report.bytes_scanned,
    }


# ---------------------------------------------------------------------------------------------------------------
# Text hygiene: image content reaches the database (paths, history steps, evidence), so it must be storable.


def clean_text(value: str) -> str:
    """``value`` made storable everywhere: no NUL (PostgreSQL rejects it), no lone surrogates (not UTF-8)."""
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", errors="replace").decode("utf-8")
    return value


def _clean_optional(value: str | None) -> str | None:
    return None if value is None else clean_text(value)


def clean_json(value: Any) -> Any:
    """A JSON-safe deep copy of ``value`` with every string (keys too) passed through :func:`clean_text`."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, bool) or value is None or isinstance(value, int | float):
        return value
    if isinstance(value, Mapping):
        return {clean_text(str(k)): clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    # Anything else (datetimes, paths, enums) is stored as its text form rather than failing the write.
    return clean_text(str(value))


# ---------------------------------------------------------------------------------------------------------------
# Schema


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite stores naive UTC; we re-attach the zone)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Refuse naive datetimes; store UTC."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use timezone-aware UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Always hand back aware UTC datetimes."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base with stable constraint names, so migrations and models compare equal."""

    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class ImageRow(Base):
    """One (repository, digest) and the outcome of its latest scan."""

    __tablename__ = "images"
    __table_args__ = (
        sa.UniqueConstraint("repository", "digest"),
        sa.Index("ix_images_status_updated_at", "status", "updated_at"),
        sa.Index("ix_images_updated_at", "updated_at"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    repository: Mapped[str] = mapped_column(sa.String(255))
    digest: Mapped[str] = mapped_column(sa.String(135))  # sha512:<128 hex> is the longest digest we accept
    media_type: Mapped[str | None] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.String(16))
    verdict: Mapped[str | None] = mapped_column(sa.String(16))
    action: Mapped[str | None] = mapped_column(sa.String(16))
    quarantined: Mapped[bool] = mapped_column(sa.Boolean)
    ruleset: Mapped[str | None] = mapped_column(sa.Text)
    explanation: Mapped[str] = mapped_column(sa.Text)
    errors: Mapped[list[str]] = mapped_column(sa.JSON)
    platforms: Mapped[list[dict[str, Any]]] = mapped_column(sa.JSON)
    signatures: Mapped[list[dict[str, Any]]] = mapped_column(sa.JSON)
    provenance: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    job_id: Mapped[str | None] = mapped_column(sa.Text)  # rq ids embed repository names: unbounded
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    scanned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class TagRow(Base):
    """Where a tag of a repository points now (as last reported by the registry)."""

    __tablename__ = "tags"
    __table_args__ = (
        sa.UniqueConstraint("repository", "tag"),
        sa.Index("ix_tags_repository_digest", "repository", "digest"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    repository: Mapped[str] = mapped_column(sa.String(255))
    tag: Mapped[str] = mapped_column(sa.String(128))
    digest: Mapped[str] = mapped_column(sa.String(135))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class FindingRow(Base):
    """One finding of the latest scan of an image; replaced as a whole by the next scan."""

    __tablename__ = "findings"
    __table_args__ = (sa.UniqueConstraint("image_id", "ordinal"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    image_id: Mapped[int] = mapped_column(sa.ForeignKey("images.id", ondelete="CASCADE"))
    ordinal: Mapped[int] = mapped_column(sa.Integer)
    rule: Mapped[str] = mapped_column(sa.Text)
    severity: Mapped[str] = mapped_column(sa.String(16))
    confidence: Mapped[str] = mapped_column(sa.String(16))
    category: Mapped[str] = mapped_column(sa.String(32))
    attack: Mapped[str | None] = mapped_column(sa.Text)
    message: Mapped[str] = mapped_column(sa.Text)
    # Everything below comes from the image (attacker-controlled), hence unbounded text.
    layer: Mapped[str | None] = mapped_column(sa.String(135))
    step: Mapped[str | None] = mapped_column(sa.Text)
    path: Mapped[str | None] = mapped_column(sa.Text)
    in_final_fs: Mapped[bool | None] = mapped_column(sa.Boolean)
    evidence: Mapped[str | None] = mapped_column(sa.Text)
    platform: Mapped[str | None] = mapped_column(sa.Text)
    waived: Mapped[bool] = mapped_column(sa.Boolean)
    waiver_id: Mapped[int | None] = mapped_column(sa.Integer)  # the waiver that matched; no FK: waivers stay


class LayerScanRow(Base):
    """A cached layer scan: content-addressed by layer digest and what the scan depended on (ruleset …)."""

    __tablename__ = "layer_scans"
    __table_args__ = (sa.UniqueConstraint("digest", "scan_key"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    digest: Mapped[str] = mapped_column(sa.String(135))
    scan_key: Mapped[str] = mapped_column(sa.Text)  # ruleset version / analyzer version / limits fingerprint
    result: Mapped[bytes] = mapped_column(sa.LargeBinary)  # LayerScan.to_cache(): compressed JSON
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AuditEventRow(Base):
    """One append-only audit record; ``hash`` chains it to the record before (tamper evidence)."""

    __tablename__ = "audit_events"
    __table_args__ = (
        sa.Index("ix_audit_events_at", "at"),
        sa.Index("ix_audit_events_target", "target"),
        sa.Index("ix_audit_events_action", "action"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(sa.Text)  # "token:ci-bot", "user:alice", "system:tollgate"
    actor_role: Mapped[str | None] = mapped_column(sa.String(16))
    action: Mapped[str] = mapped_column(sa.String(64))  # "verdict", "quarantine", "waiver.create", …
    target: Mapped[str] = mapped_column(sa.Text)  # "team/app@sha256:…", "waiver:12", "token:ab12…"
    reason: Mapped[str] = mapped_column(sa.Text)
    details: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    prev_hash: Mapped[str] = mapped_column(sa.String(64))
    hash: Mapped[str] = mapped_column(sa.String(64), unique=True)


class AuditHeadRow(Base):
    """The newest audit hash, in one row: updating it first serialises appenders on SQLite and PostgreSQL alike."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=False)
    hash: Mapped[str] = mapped_column(sa.String(64))
    count: Mapped[int] = mapped_column(sa.Integer)


class ApiTokenRow(Base):
    """A machine credential: only the hash of its secret is kept; ``token_id`` is the public half."""

    __tablename__ = "api_tokens"

    token_id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(64), unique=True)  # never reused: the audit trail names tokens
    role: Mapped[str] = mapped_column(sa.String(16))
    secret_hash: Mapped[str] = mapped_column(sa.String(128))
    repositories: Mapped[list[str]] = mapped_column(sa.JSON)  # glob patterns; empty: every repository
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(sa.Text)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_by: Mapped[str | None] = mapped_column(sa.Text)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class UserRow(Base):
    """A person who signs in to the pages (or arrives through a trusted proxy, then without a password)."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(sa.String(255), unique=True)
    role: Mapped[str] = mapped_column(sa.String(16))
    password_hash: Mapped[str | None] = mapped_column(sa.Text)
    repositories: Mapped[list[str]] = mapped_column(sa.JSON)
    session_epoch: Mapped[int] = mapped_column(sa.Integer)  # bumped to sign every session of the user out
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WaiverRow(Base):
    """The security team's decision that a rule's findings do not count, within a scope and until a time."""

    __tablename__ = "waivers"
    __table_args__ = (sa.Index("ix_waivers_rule", "rule"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    rule: Mapped[str] = mapped_column(sa.Text)
    repository_pattern: Mapped[str | None] = mapped_column(sa.Text)
    digest: Mapped[str | None] = mapped_column(sa.String(135))
    path_pattern: Mapped[str | None] = mapped_column(sa.Text)
    reason: Mapped[str] = mapped_column(sa.Text)
    created_by: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_by: Mapped[str | None] = mapped_column(sa.Text)
    revoke_reason: Mapped[str | None] = mapped_column(sa.Text)
    # Set by whoever first noticed the expiry, so waiver.expire is audited once however many sweeps see it.
    expiry_recorded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class QuarantineHoldRow(Base):
    """Where an image stands in the registry move state machine (one row per repository and digest)."""

    __tablename__ = "quarantine_holds"
    __table_args__ = (sa.UniqueConstraint("repository", "digest"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    repository: Mapped[str] = mapped_column(sa.String(255))
    digest: Mapped[str] = mapped_column(sa.String(135))
    state: Mapped[str] = mapped_column(sa.String(24))
    origin: Mapped[str] = mapped_column(sa.String(16))  # "policy" (automatic) or "manual" (a person decided)
    copy_repository: Mapped[str | None] = mapped_column(sa.String(255))
    plan: Mapped[dict[str, Any]] = mapped_column(sa.JSON)  # the tags moved, the children, the mode, placeholders
    requested_by: Mapped[str] = mapped_column(sa.Text)
    reason: Mapped[str] = mapped_column(sa.Text)
    error: Mapped[str | None] = mapped_column(sa.Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class QuarantineMoveRow(Base):
    """One quarantine or release of an image, from request to outcome: the image's history of moves."""

    __tablename__ = "quarantine_moves"
    __table_args__ = (sa.Index("ix_quarantine_moves_image", "repository", "digest"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    repository: Mapped[str] = mapped_column(sa.String(255))
    digest: Mapped[str] = mapped_column(sa.String(135))
    kind: Mapped[str] = mapped_column(sa.String(16))  # "quarantine" or "release"
    actor: Mapped[str] = mapped_column(sa.Text)
    reason: Mapped[str] = mapped_column(sa.Text)
    outcome: Mapped[str] = mapped_column(sa.String(16))  # "running", "done", "failed", "skipped"
    details: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class PolicyVersionRow(Base):
    """One version of the policy YAML; the newest row is the policy in force."""

    __tablename__ = "policy_versions"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    digest: Mapped[str] = mapped_column(sa.String(71))
    text: Mapped[str] = mapped_column(sa.Text)
    source: Mapped[str] = mapped_column(sa.String(16))  # "file" (TOLLGATE_POLICY_FILE) or "api"
    actor: Mapped[str] = mapped_column(sa.Text)
    reason: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


images = cast(sa.Table, ImageRow.__table__)
tags = cast(sa.Table, TagRow.__table__)
findings = cast(sa.Table, FindingRow.__table__)
layer_scans = cast(sa.Table, LayerScanRow.__table__)
audit_events = cast(sa.Table, AuditEventRow.__table__)
audit_head = cast(sa.Table, AuditHeadRow.__table__)
api_tokens = cast(sa.Table, ApiTokenRow.__table__)
users = cast(sa.Table, UserRow.__table__)
waivers = cast(sa.Table, WaiverRow.__table__)
quarantine_holds = cast(sa.Table, QuarantineHoldRow.__table__)
quarantine_moves = cast(sa.Table, QuarantineMoveRow.__table__)
policy_versions = cast(sa.Table, PolicyVersionRow.__table__)


# ---------------------------------------------------------------------------------------------------------------
# The store


def _is_missing_schema(error: exc.DBAPIError) -> bool:
    text = str(error.orig).lower() if error.orig is not None else str(error).lower()
    return "no such table" in text or ("relation" in text and "does not exist" in text)


class Store:
    """Persistence of image records; every method is one short transaction.

    Database outages raise :class:`StoreUnavailable` (transient) so jobs retry and the web answers 503.
    Repository names, tags and digests are validated here too: a bad one raises ``ValueError``.
    """

    def __init__(self, url: str) -> None:
        self.url = sa.engine.make_url(url)
        self.now: Callable[[], datetime] = utcnow  # a seam for tests that need to control time
        self.engine: Engine = self._create_engine()
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        _forget_pools_after_fork(self.engine)

    @classmethod
    def from_settings(cls, settings: Settings) -> Store:
        """A store on ``settings.database_url``."""
        return cls(settings.database_url)

    def close(self) -> None:
        """Release every pooled connection."""
        self.engine.dispose()

    # -- engine and sessions ------------------------------------------------------------------------------------

    @property
    def is_sqlite(self) -> bool:
        """True for the embedded SQLite backend."""
        return self.url.get_backend_name() == "sqlite"

    def _sqlite_file(self) -> Path | None:
        database = self.url.database
        if not self.is_sqlite or not database or database == ":memory:" or database.startswith("file:"):
            return None
        return Path(database)

    def _create_engine(self) -> Engine:
        if not self.is_sqlite:
            return sa.create_engine(self.url, pool_pre_ping=True)
        db_file = self._sqlite_file()
        if db_file is not None:
            db_file.parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(self.url, connect_args={"timeout": _SQLITE_BUSY_TIMEOUT_S})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            # WAL lets the web read while a worker writes; the busy timeout makes writers wait, not fail.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={int(_SQLITE_BUSY_TIMEOUT_S * 1000)}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine

    @contextlib.contextmanager
    def _translate_errors(self) -> Iterator[None]:
        try:
            yield
        except exc.DBAPIError as error:
            if _is_missing_schema(error):
                raise StoreUnavailable(
                    "the database schema is missing; run `tollgate migrate` (or start the web app, which migrates)"
                ) from error
            if isinstance(error, exc.OperationalError | exc.InterfaceError) or error.connection_invalidated:
                raise StoreUnavailable(f"database unavailable: {error.orig or error}") from error
            raise

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        """One write transaction, committed on exit; for the modules that own other tables (audit, waivers …)."""
        with self._translate_errors(), self._sessions.begin() as session:
            yield session

    @contextlib.contextmanager
    def reading(self) -> Iterator[Session]:
        """A read-only session, with database errors translated like every other store call."""
        with self._translate_errors(), self._sessions() as session:
            yield session

    _write = transaction
    _read = reading

    def insert(self, table: sa.Table) -> Any:
        """A dialect INSERT that supports ``ON CONFLICT`` (both SQLite and PostgreSQL have it)."""
        if self.is_sqlite:
            return sqlite_dialect.insert(table)
        return pg_dialect.insert(table)

    _insert = insert

    # -- schema -------------------------------------------------------------------------------------------------

    def migrate(self) -> None:
        """Upgrade the schema to the latest revision; safe to run from several processes at once."""
        from alembic import command

        with self._translate_errors(), self._migration_lock() as connection:
            config = alembic_config(connection)
            command.upgrade(config, "head")

    @contextlib.contextmanager
    def _migration_lock(self) -> Iterator[Connection]:
        if not self.is_sqlite:
            with self.engine.connect() as connection:
                # A session-level advisory lock serialises concurrent web and worker start-ups.
                connection.execute(sa.select(sa.func.pg_advisory_lock(_PG_MIGRATION_LOCK)))
                connection.commit()
                try:
                    yield connection
                    connection.commit()
                finally:
                    # If the connection died, the server already released the session lock with it.
                    with contextlib.suppress(exc.DBAPIError):
                        connection.rollback()
                        connection.execute(sa.select(sa.func.pg_advisory_unlock(_PG_MIGRATION_LOCK)))
                        connection.commit()
            return
        db_file = self._sqlite_file()
        if db_file is None:
            with self.engine.connect() as connection:
                yield connection
                connection.commit()
            return
        # SQLite DDL is not transactional through pysqlite, so two processes could both create the tables;
        # a lock file beside the database serialises them (SQLite is single-host anyway).
        lock_path = db_file.with_name(db_file.name + ".migrate.lock")
        with lock_path.open("a") as lock_file:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX)
            try:
                with self.engine.connect() as connection:
                    yield connection
                    connection.commit()
            finally:
                fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)

    def ping(self) -> None:
        """Raise :class:`StoreUnavailable` unless the database answers and the schema exists."""
        with self._read() as session:
            session.execute(sa.select(sa.func.count()).select_from(images).where(sa.false()))

    # -- writes -------------------------------------------------------------------------------------------------

    def _ensure_image(
        self, session: Session, repository: str, digest: Digest, *, media_type: str | None = None
    ) -> ImageRow:
        """The row of (repository, digest), inserted as ``queued`` when new; race-free under concurrency."""
        _check_name(repository, digest)
        now = self.now()
        statement = (
            self._insert(images)
            .values(
                repository=repository,
                digest=digest,
                media_type=_clean_optional(media_type),
                status=ScanStatus.QUEUED.value,
                verdict=None,
                action=None,
                quarantined=False,
                ruleset=None,
                explanation="",
                errors=[],
                platforms=[],
                signatures=[],
                provenance={},
                job_id=None,
                first_seen=now,
                updated_at=now,
                scanned_at=None,
            )
            .on_conflict_do_nothing(index_elements=["repository", "digest"])
        )
        session.execute(statement)
        row = session.scalars(
            sa.select(ImageRow).where(ImageRow.repository == repository, ImageRow.digest == digest).with_for_update()
        ).one()
        if media_type and row.media_type is None:
            row.media_type = clean_text(media_type)
        return row

    def record_push(self, repository: str, digest: Digest, *, tag: str | None, media_type: str | None) -> ImageRecord:
        """Note a push: create the image (``queued``) if new and point ``tag`` at it. Redelivery changes nothing.

        A tag that moved is re-pointed, so the previous digest loses it.
        """
        if tag is not None and not is_tag(tag):
            raise ValueError(f"not a valid tag: {tag[:80]!r}")
        with self._write() as session:
            row = self._ensure_image(session, repository, digest, media_type=media_type)
            if tag is not None:
                now = self.now()
                upsert = self._insert(tags).values(repository=repository, tag=tag, digest=digest, updated_at=now)
                upsert = upsert.on_conflict_do_update(
                    index_elements=["repository", "tag"],
                    set_={"digest": upsert.excluded.digest, "updated_at": upsert.excluded.updated_at},
                    where=tags.c.digest != upsert.excluded.digest,
                )
                session.execute(upsert)
            return self._load_records(session, [row])[0]

    def needs_scan(self, repository: str, digest: Digest, ruleset: str) -> bool:
        """False when a scan under ``ruleset`` is done or in progress (queued/scanning); True otherwise."""
        _check_name(repository, digest)
        with self._read() as session:
            found = session.execute(
                sa.select(images.c.status, images.c.ruleset).where(
                    images.c.repository == repository, images.c.digest == digest
                )
            ).one_or_none()
        if found is None:
            return True
        status, stored_ruleset = found
        in_hand = {ScanStatus.DONE.value, ScanStatus.SCANNING.value, ScanStatus.QUEUED.value}
        return not (stored_ruleset == ruleset and status in in_hand)

    def mark_queued(self, repository: str, digest: Digest, *, ruleset: str, job_id: str, rescan: bool = False) -> None:
        """Record that job ``job_id`` will scan the image under ``ruleset``.

        A worker may finish before the enqueuer gets here; unless ``rescan`` is set, a record that is already
        scanning or done under the same ruleset is left alone rather than sent back to ``queued``. The verdict
        and findings of the previous scan stay visible until the new scan replaces them.
        """
        with self._write() as session:
            row = self._ensure_image(session, repository, digest)
            started = row.status in {ScanStatus.SCANNING.value, ScanStatus.DONE.value}
            if started and row.ruleset == ruleset and not rescan:
                return
            row.status = ScanStatus.QUEUED.value
            row.ruleset = ruleset
            row.job_id = clean_text(job_id)
            row.updated_at = self.now()

    def mark_scanning(self, repository: str, digest: Digest, *, ruleset: str) -> None:
        """Record that a worker started scanning the image under ``ruleset``."""
        with self._write() as session:
            row = self._ensure_image(session, repository, digest)
            row.status = ScanStatus.SCANNING.value
            row.ruleset = ruleset
            row.updated_at = self.now()

    def save_report(self, report: ScanReport) -> None:
        """Store a finished scan: status ``done``, its verdict, and its findings replacing the previous ones."""
        now = self.now()
        with self._write() as session:
            row = self._ensure_image(session, report.repository, report.digest, media_type=report.media_type)
            row.media_type = clean_text(report.media_type) if report.media_type else row.media_type
            row.status = ScanStatus.DONE.value
            row.verdict = Verdict(report.verdict).value
            row.action = Action(report.action).value
            row.ruleset = clean_text(report.ruleset)
            row.explanation = clean_text(report.explanation)
            row.errors = [clean_text(e) for e in report.errors]
            row.platforms = clean_json([platform_summary(p) for p in report.platforms])
            row.provenance = clean_json(dict(report.provenance))
            row.signatures = clean_json([check.to_json() for check in report.signatures])
            row.scanned_at = now
            row.updated_at = now
            self._replace_findings(session, row.id, report.findings)

    def update_decision(
        self,
        repository: str,
        digest: Digest,
        *,
        verdict: Verdict,
        action: Action,
        explanation: str,
        findings: Sequence[Finding],
        scanned_at: datetime | None,
        signatures: Sequence[SignatureCheck] | None = None,
    ) -> bool:
        """Store a decision taken again over the stored findings (waivers, policy or signatures changed).

        The findings are the same ones with their ``waived`` marks recomputed; ``signatures`` None keeps the
        stored checks. Only applies to the scan that was decided on: False (nothing changed) when the image
        has no completed verdict or was scanned again since (``scanned_at`` differs), whose own decision stands.
        """
        _check_name(repository, digest)
        with self._write() as session:
            row = session.scalars(
                sa.select(ImageRow)
                .where(ImageRow.repository == repository, ImageRow.digest == digest)
                .with_for_update()
            ).one_or_none()
            if row is None or row.status != ScanStatus.DONE.value or row.verdict is None:
                return False
            if row.scanned_at != scanned_at:
                return False
            row.verdict = Verdict(verdict).value
            row.action = Action(action).value
            row.explanation = clean_text(explanation)
            if signatures is not None:
                row.signatures = clean_json([check.to_json() for check in signatures])
            row.updated_at = self.now()
            self._replace_findings(session, row.id, findings)
            return True

    def mark_not_image(self, repository: str, digest: Digest, message: str, *, ruleset: str | None) -> None:
        """Record that the manifest is an artifact (signature, attestation, SBOM …): done, with no verdict."""
        now = self.now()
        with self._write() as session:
            row = self._ensure_image(session, repository, digest)
            row.status = ScanStatus.DONE.value
            row.verdict = None
            row.action = None
            if ruleset is not None:
                row.ruleset = ruleset
            row.explanation = clean_text(f"not a runnable image: {message}")
            row.errors = []
            row.platforms = []
            row.scanned_at = now
            row.updated_at = now
            self._replace_findings(session, row.id, ())

    def mark_error(self, repository: str, digest: Digest, message: str, *, ruleset: str | None) -> None:
        """Record that vetting failed: status ``error`` with ``message``; an error is never a pass.

        The verdict and findings of an earlier completed scan (if any, see ``scanned_at``) are kept so that a
        failed rescan does not hide what was known.
        """
        with self._write() as session:
            row = self._ensure_image(session, repository, digest)
            row.status = ScanStatus.ERROR.value
            if ruleset is not None:
                row.ruleset = ruleset
            row.errors = [clean_text(message)]
            row.explanation = clean_text(f"vetting failed: {message}")
            row.updated_at = self.now()

    def set_quarantined(self, repository: str, digest: Digest, quarantined: bool) -> None:
        """Record that the image is (or no longer is) held in quarantine in the registry."""
        with self._write() as session:
            row = self._ensure_image(session, repository, digest)
            if row.quarantined != quarantined:
                row.quarantined = quarantined
                row.updated_at = self.now()

    def set_publication(self, repository: str, digest: Digest, publication: Mapping[str, Any]) -> None:
        """Record on the provenance what publishing the attestations did (``provenance.publication``)."""
        _check_name(repository, digest)
        with self.transaction() as session:
            row = session.scalars(
                sa.select(ImageRow)
                .where(ImageRow.repository == repository, ImageRow.digest == digest)
                .with_for_update()
            ).one_or_none()
            if row is None:
                return
            # A new dict: SQLAlchemy sees a JSON column change only when the value is replaced.
            row.provenance = clean_json({**dict(row.provenance or {}), "publication": dict(publication)})

    def _replace_findings(self, session: Session, image_id: int, new: Iterable[Finding]) -> None:
        session.execute(sa.delete(findings).where(findings.c.image_id == image_id))
        rows = [_finding_row(image_id, ordinal, finding) for ordinal, finding in enumerate(new)]
        if rows:
            session.execute(sa.insert(findings), rows)

    # -- reads --------------------------------------------------------------------------------------------------

    # -- layer scan cache ---------------------------------------------------------------------------------------

    def get_layer_scan(self, digest: Digest, key: str) -> bytes | None:
        """The cached scan of layer ``digest`` under ``key``, as stored bytes."""
        with self._read() as session:
            return session.execute(
                sa.select(layer_scans.c.result).where(layer_scans.c.digest == digest, layer_scans.c.scan_key == key)
            ).scalar_one_or_none()

    def put_layer_scan(self, digest: Digest, key: str, result: bytes) -> None:
        """Store a layer scan; a concurrent worker storing the same one first is fine (same content)."""
        with self._write() as session:
            statement = self._insert(layer_scans).values(
                digest=digest, scan_key=key, result=result, created_at=self.now()
            )
            session.execute(statement.on_conflict_do_nothing(index_elements=["digest", "scan_key"]))

    def get_record(self, repository: str, digest: Digest) -> ImageRecord | None:
        """The record of ``repository@digest``, or None when Tollgate never heard of it."""
        _check_name(repository, digest)
        with self._read() as session:
            row = session.scalars(
                sa.select(ImageRow).where(ImageRow.repository == repository, ImageRow.digest == digest)
            ).one_or_none()
            return self._load_records(session, [row])[0] if row else None

    def get_record_by_tag(self, repository: str, tag: str) -> ImageRecord | None:
        """The record of the digest ``repository:tag`` points at, or None."""
        if not is_repository_name(repository) or not is_tag(tag):
            raise ValueError(f"not a valid reference: {repository[:80]!r}:{tag[:80]!r}")
        with self._read() as session:
            row = session.scalars(
                sa.select(ImageRow)
                .join(TagRow, sa.and_(TagRow.repository == ImageRow.repository, TagRow.digest == ImageRow.digest))
                .where(TagRow.repository == repository, TagRow.tag == tag)
            ).one_or_none()
            return self._load_records(session, [row])[0] if row else None

    def tags_of(self, repository: str, digest: Digest) -> tuple[str, ...]:
        """The tags that point at ``repository@digest`` now, sorted."""
        _check_name(repository, digest)
        with self._read() as session:
            found = session.scalars(
                sa.select(tags.c.tag)
                .where(tags.c.repository == repository, tags.c.digest == digest)
                .order_by(tags.c.tag)
            )
            return tuple(found)

    def list_images(
        self,
        *,
        repository: str | None = None,
        status: ScanStatus | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[ImageRecord]:
        """Records, most recently updated first, optionally of one repository and/or one status."""
        if not 1 <= limit <= MAX_LIST_LIMIT or offset < 0:
            raise ValueError(f"limit must be 1..{MAX_LIST_LIMIT} and offset >= 0")
        query = sa.select(ImageRow).order_by(ImageRow.updated_at.desc(), ImageRow.id.desc())
        if repository is not None:
            query = query.where(ImageRow.repository == repository)
        if status is not None:
            query = query.where(ImageRow.status == ScanStatus(status).value)
        with self._read() as session:
            rows = list(session.scalars(query.limit(limit).offset(offset)))
            return self._load_records(session, rows)

    def counts(self) -> Mapping[str, int]:
        """How many images per status and per verdict, how many are quarantined, and the total."""
        result: dict[str, int] = {s.value: 0 for s in ScanStatus}
        result.update({v.value: 0 for v in Verdict})
        with self._read() as session:
            for status, number in session.execute(
                sa.select(images.c.status, sa.func.count()).group_by(images.c.status)
            ):
                result[status] = number
            for verdict, number in session.execute(
                sa.select(images.c.verdict, sa.func.count())
                .where(images.c.verdict.is_not(None))
                .group_by(images.c.verdict)
            ):
                result[verdict] = number
            result["quarantined"] = (
                session.scalar(sa.select(sa.func.count()).select_from(images).where(images.c.quarantined.is_(True)))
                or 0
            )
            result["total"] = session.scalar(sa.select(sa.func.count()).select_from(images)) or 0
        return result

    def _load_records(self, session: Session, rows: Sequence[ImageRow]) -> list[ImageRecord]:
        """Records for ``rows`` with their tags and findings: one query each, whatever the number of rows."""
        if not rows:
            return []
        ids = [row.id for row in rows]
        findings_by_image: dict[int, list[Finding]] = {image_id: [] for image_id in ids}
        for finding_row in session.execute(
            sa.select(findings).where(findings.c.image_id.in_(ids)).order_by(findings.c.image_id, findings.c.ordinal)
        ).mappings():
            findings_by_image[finding_row["image_id"]].append(Finding.from_json(dict(finding_row)))
        repositories = {row.repository for row in rows}
        digests = {row.digest for row in rows}
        tags_by_image: dict[tuple[str, str], list[str]] = {}
        for repository, digest, tag in session.execute(
            sa.select(tags.c.repository, tags.c.digest, tags.c.tag)
            .where(tags.c.repository.in_(repositories), tags.c.digest.in_(digests))
            .order_by(tags.c.tag)
        ):
            tags_by_image.setdefault((repository, digest), []).append(tag)
        return [
            _to_record(row, tags_by_image.get((row.repository, row.digest), []), findings_by_image[row.id])
            for row in rows
        ]


def _forget_pools_after_fork(engine: Engine) -> None:
    """rq forks a work horse per job: a child must open its own connections, never reuse the parent's sockets."""
    engine_ref = weakref.ref(engine)

    def after_fork_in_child() -> None:
        alive = engine_ref()
        if alive is not None:
            alive.dispose(close=False)  # drop (not close) the inherited connections; the parent still owns them

    os.register_at_fork(after_in_child=after_fork_in_child)


def _check_name(repository: str, digest: str) -> None:
    if not is_repository_name(repository):
        raise ValueError(f"not a valid repository name: {str(repository)[:80]!r}")
    parse_digest(digest)


def _finding_row(image_id: int, ordinal: int, finding: Finding) -> dict[str, Any]:
    return {
        "image_id": image_id,
        "ordinal": ordinal,
        "rule": clean_text(finding.rule),
        "severity": finding.severity.value,
        "confidence": finding.confidence.value,
        "category": finding.category.value,
        "attack": _clean_optional(finding.attack),
        "message": clean_text(finding.message),
        "layer": parse_digest(finding.layer) if finding.layer else None,
        "step": _clean_optional(finding.step),
        "path": _clean_optional(finding.path),
        "in_final_fs": finding.in_final_fs,
        "evidence": _clean_optional(finding.evidence),
        "platform": _clean_optional(finding.platform),
        "waived": bool(finding.waived),
        "waiver_id": finding.waiver_id if finding.waived else None,
    }


def _to_record(row: ImageRow, tag_names: Sequence[str], found: Sequence[Finding]) -> ImageRecord:
    return ImageRecord(
        repository=row.repository,
        digest=Digest(row.digest),
        media_type=row.media_type,
        tags=tuple(tag_names),
        status=ScanStatus(row.status),
        verdict=Verdict(row.verdict) if row.verdict else None,
        action=Action(row.action) if row.action else None,
        quarantined=bool(row.quarantined),
        ruleset=row.ruleset,
        findings=tuple(found),
        platforms=tuple(row.platforms or ()),
        signatures=tuple(row.signatures or ()),
        provenance=dict(row.provenance or {}),
        errors=tuple(row.errors or ()),
        explanation=row.explanation or "",
        first_seen=row.first_seen,
        updated_at=row.updated_at,
        scanned_at=row.scanned_at,
        job_id=row.job_id,
    )


def alembic_config(connection: Connection | None = None) -> Any:
    """An Alembic ``Config`` built in code (no alembic.ini), optionally bound to ``connection``."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config
