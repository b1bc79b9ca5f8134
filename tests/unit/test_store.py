"""The store against real databases: every test runs on a SQLite file and on a real PostgreSQL database."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from tests.support.storage import digest_of, make_finding, make_report
from workers.domain import Action, Category, Digest, ScanStatus, Severity, Verdict
from workers.errors import StoreUnavailable
from workers.store import Base, ImageRecord, Store

REPO = "team/app"
CONTRACT_KEYS = {
    "repository", "digest", "tags", "status", "verdict", "action", "quarantined", "ruleset",
    "findings", "signatures", "provenance", "scanned_at",
}  # fmt: skip


def _schema_diffs(store: Store) -> list[Any]:
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


class FakeClock:
    """Time that moves only when told to, so ordering tests do not depend on the wall clock."""

    def __init__(self) -> None:
        self.moment = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.moment

    def tick(self, seconds: int = 1) -> None:
        self.moment += timedelta(seconds=seconds)


@pytest.fixture
def clock(store: Store) -> FakeClock:
    fake = FakeClock()
    store.now = fake
    return fake


# -- migrations -------------------------------------------------------------------------------------------------


def _head_revision() -> str:
    """The newest revision in workers/migrations, read from the scripts themselves."""
    from alembic.script import ScriptDirectory

    from workers.store import alembic_config

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def test_migrate_twice_on_empty_database_matches_models(database_url: str) -> None:
    store = Store(database_url)
    try:
        assert _schema_diffs(store), "an empty database must differ from the models (the check can fail)"
        store.migrate()
        store.migrate()  # idempotent
        assert _schema_diffs(store) == []
        with store.engine.connect() as connection:
            assert connection.scalar(sa.text("SELECT version_num FROM alembic_version")) == _head_revision()
    finally:
        store.close()


def test_concurrent_migrations_from_several_processes_all_succeed(database_url: str) -> None:
    stores = [Store(database_url) for _ in range(3)]
    barrier = threading.Barrier(len(stores))
    failures: list[BaseException] = []

    def start(store: Store) -> None:
        barrier.wait()
        try:
            store.migrate()
        except BaseException as exc:  # collected and asserted below
            failures.append(exc)

    threads = [threading.Thread(target=start, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert failures == []
        assert _schema_diffs(stores[0]) == []
    finally:
        for s in stores:
            s.close()


def test_unmigrated_database_is_a_clear_transient_error(database_url: str) -> None:
    store = Store(database_url)
    try:
        with pytest.raises(StoreUnavailable, match="migrate"):
            store.get_record(REPO, digest_of("x"))
        with pytest.raises(StoreUnavailable):
            store.ping()
    finally:
        store.close()


def _refused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # closed again: nothing listens there


def test_unreachable_postgresql_raises_store_unavailable() -> None:
    store = Store(f"postgresql+psycopg://postgres@127.0.0.1:{_refused_port()}/nothing?connect_timeout=5")
    try:
        with pytest.raises(StoreUnavailable) as caught:
            store.get_record(REPO, digest_of("x"))
        assert caught.value.transient
        with pytest.raises(StoreUnavailable):
            store.record_push(REPO, digest_of("x"), tag="1", media_type=None)
    finally:
        store.close()


def test_sqlite_creates_the_directory_of_its_file(tmp_path: Any) -> None:
    store = Store(f"sqlite:///{tmp_path / 'var' / 'deeper' / 'tollgate.db'}")
    try:
        store.migrate()
        store.ping()
    finally:
        store.close()
    assert (tmp_path / "var" / "deeper" / "tollgate.db").exists()


# -- pushes and tags --------------------------------------------------------------------------------------------


def test_record_push_creates_a_queued_record(store: Store, clock: FakeClock) -> None:
    digest = digest_of("a")
    record = store.record_push(REPO, digest, tag="1.4", media_type="application/vnd.oci.image.manifest.v1+json")
    assert record.repository == REPO
    assert record.digest == digest
    assert record.status is ScanStatus.QUEUED
    assert record.tags == ("1.4",)
    assert record.verdict is None and record.action is None and record.findings == ()
    assert record.first_seen == clock.moment and record.first_seen.tzinfo is not None
    assert record.media_type == "application/vnd.oci.image.manifest.v1+json"
    assert store.get_record(REPO, digest) == record


def test_redelivered_push_changes_nothing(store: Store, clock: FakeClock) -> None:
    digest = digest_of("a")
    first = store.record_push(REPO, digest, tag="1", media_type=None)
    clock.tick(60)
    again = store.record_push(REPO, digest, tag="1", media_type=None)
    assert again == first
    with store.engine.connect() as connection:
        assert connection.scalar(sa.text("SELECT count(*) FROM images")) == 1
        assert connection.scalar(sa.text("SELECT count(*) FROM tags")) == 1


def test_a_moved_tag_leaves_the_previous_digest(store: Store, clock: FakeClock) -> None:
    old, new = digest_of("old"), digest_of("new")
    store.record_push(REPO, old, tag="latest", media_type=None)
    store.record_push(REPO, old, tag="1.0", media_type=None)
    clock.tick()
    moved = store.record_push(REPO, new, tag="latest", media_type=None)
    assert moved.tags == ("latest",)
    assert store.tags_of(REPO, old) == ("1.0",)
    by_tag = store.get_record_by_tag(REPO, "latest")
    assert by_tag is not None and by_tag.digest == new
    assert store.get_record_by_tag(REPO, "2.0") is None
    assert store.get_record_by_tag("other/repo", "latest") is None


def test_push_without_tag_and_tags_are_per_repository(store: Store) -> None:
    digest = digest_of("shared")
    store.record_push("a/one", digest, tag="1", media_type=None)
    record = store.record_push("b/two", digest, tag=None, media_type=None)
    assert record.tags == ()
    assert store.tags_of("a/one", digest) == ("1",)


def test_concurrent_pushes_of_one_image_make_one_record(store: Store) -> None:
    digest = digest_of("race")
    barrier = threading.Barrier(4)
    failures: list[BaseException] = []

    def push(tag: str) -> None:
        barrier.wait()
        try:
            store.record_push(REPO, digest, tag=tag, media_type=None)
        except BaseException as exc:  # collected and asserted below
            failures.append(exc)

    threads = [threading.Thread(target=push, args=(f"t{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert store.tags_of(REPO, digest) == ("t0", "t1", "t2", "t3")
    assert len(store.list_images()) == 1


@pytest.mark.parametrize(
    ("repository", "digest", "tag"),
    [
        ("Team/App", digest_of("a"), "1"),
        ("team/../app", digest_of("a"), "1"),
        ("", digest_of("a"), "1"),
        (REPO, "sha256:short", "1"),
        (REPO, "md5:" + "0" * 32, "1"),
        (REPO, digest_of("a"), "-bad"),
        (REPO, digest_of("a"), "x" * 129),
        (REPO, digest_of("a"), "a\x00b"),
    ],
)
def test_malformed_names_are_refused(store: Store, repository: str, digest: str, tag: str) -> None:
    with pytest.raises(ValueError, match="not a valid"):
        store.record_push(repository, Digest(digest), tag=tag, media_type=None)
    assert store.list_images() == []


# -- the scan lifecycle -----------------------------------------------------------------------------------------


def test_needs_scan_follows_the_lifecycle(store: Store) -> None:
    digest = digest_of("a")
    assert store.needs_scan(REPO, digest, "r1")  # never seen
    store.record_push(REPO, digest, tag="1", media_type=None)
    assert store.needs_scan(REPO, digest, "r1")  # known, no job yet
    store.mark_queued(REPO, digest, ruleset="r1", job_id="scan-1")
    assert not store.needs_scan(REPO, digest, "r1")
    assert store.needs_scan(REPO, digest, "r2")  # a new ruleset is a new scan
    store.mark_scanning(REPO, digest, ruleset="r1")
    assert not store.needs_scan(REPO, digest, "r1")
    store.mark_error(REPO, digest, "registry said 500", ruleset="r1")
    assert store.needs_scan(REPO, digest, "r1")  # an error is retried on the next delivery
    store.save_report(make_report(REPO, digest, ruleset="r1"))
    assert not store.needs_scan(REPO, digest, "r1")
    assert store.needs_scan(REPO, digest, "r2")


def test_save_report_stores_everything(store: Store, clock: FakeClock) -> None:
    digest = digest_of("a")
    store.record_push(REPO, digest, tag="1", media_type=None)
    store.mark_queued(REPO, digest, ruleset="r1", job_id="scan-team-app-1")
    clock.tick(5)
    store.mark_scanning(REPO, digest, ruleset="r1")
    clock.tick(5)
    report = make_report(REPO, digest, ruleset="r1", errors=["layer 2: ratio cap"])
    store.save_report(report)
    record = store.get_record(REPO, digest)
    assert record is not None
    assert record.status is ScanStatus.DONE
    assert record.verdict is Verdict.MALICIOUS and record.action is Action.QUARANTINE
    assert record.ruleset == "r1"
    assert record.findings == report.findings
    assert record.errors == ("layer 2: ratio cap",)
    assert record.explanation == report.explanation
    assert record.provenance == report.provenance
    assert record.job_id == "scan-team-app-1"
    assert record.scanned_at == clock.moment == record.updated_at
    assert record.first_seen == clock.moment - timedelta(seconds=10)
    (platform,) = record.platforms
    assert platform["platform"] == "linux/amd64"
    assert platform["manifest"] == digest and platform["config"] == digest_of("config")
    assert platform["layers"][1] == {
        "digest": digest_of("layer-1"),
        "diff_id": digest_of("diff-1"),
        "step": "RUN step 1",
        "size": 1001,
    }
    assert platform["history_aligned"] is True
    assert (platform["files_scanned"], platform["bytes_scanned"]) == (12, 34567)


def test_a_new_scan_replaces_the_findings_of_the_previous_one(store: Store) -> None:
    digest = digest_of("a")
    store.save_report(make_report(REPO, digest, findings=[make_finding(i) for i in range(5)]))
    store.save_report(make_report(REPO, digest, verdict=Verdict.CLEAN, action=Action.ALLOW, findings=[]))
    record = store.get_record(REPO, digest)
    assert record is not None
    assert record.findings == () and record.verdict is Verdict.CLEAN
    with store.engine.connect() as connection:
        assert connection.scalar(sa.text("SELECT count(*) FROM findings")) == 0


def test_save_report_for_an_image_never_pushed_creates_it(store: Store) -> None:
    digest = digest_of("cli")
    store.save_report(make_report("library/nginx", digest))
    record = store.get_record("library/nginx", digest)
    assert record is not None and record.status is ScanStatus.DONE and record.tags == ()


def test_mark_queued_does_not_undo_a_scan_that_already_finished(store: Store) -> None:
    digest = digest_of("fast")
    store.record_push(REPO, digest, tag="1", media_type=None)
    store.save_report(make_report(REPO, digest, ruleset="r1"))  # the worker beat the enqueuer
    store.mark_queued(REPO, digest, ruleset="r1", job_id="late")
    record = store.get_record(REPO, digest)
    assert record is not None and record.status is ScanStatus.DONE
    store.mark_queued(REPO, digest, ruleset="r2", job_id="new-rules")
    record = store.get_record(REPO, digest)
    assert record is not None and record.status is ScanStatus.QUEUED and record.job_id == "new-rules"
    assert record.verdict is Verdict.MALICIOUS  # the previous verdict stays visible until replaced
    store.save_report(make_report(REPO, digest, ruleset="r2"))
    store.mark_queued(REPO, digest, ruleset="r2", job_id="rescan-by-security", rescan=True)
    record = store.get_record(REPO, digest)
    assert record is not None and record.status is ScanStatus.QUEUED


def test_mark_error_records_the_message_and_keeps_the_earlier_verdict(store: Store) -> None:
    digest = digest_of("a")
    store.mark_error(REPO, digest, "manifest is not JSON", ruleset="r1")
    record = store.get_record(REPO, digest)
    assert record is not None
    assert record.status is ScanStatus.ERROR
    assert record.errors == ("manifest is not JSON",)
    assert record.verdict is None
    assert "manifest is not JSON" in record.explanation
    store.save_report(make_report(REPO, digest, ruleset="r1"))
    store.mark_error(REPO, digest, "gave up after retries: timeout", ruleset=None)
    record = store.get_record(REPO, digest)
    assert record is not None
    assert record.status is ScanStatus.ERROR and record.verdict is Verdict.MALICIOUS and record.ruleset == "r1"
    assert len(record.findings) == 2


def test_mark_not_image_is_done_without_verdict(store: Store) -> None:
    digest = digest_of("sig")
    store.record_push(REPO, digest, tag="sha256-abc.sig", media_type=None)
    store.mark_not_image(REPO, digest, "cosign signature", ruleset="r1")
    record = store.get_record(REPO, digest)
    assert record is not None
    assert record.status is ScanStatus.DONE and record.verdict is None and record.action is None
    assert "cosign signature" in record.explanation
    assert not store.needs_scan(REPO, digest, "r1")


def test_set_quarantined(store: Store) -> None:
    digest = digest_of("a")
    store.save_report(make_report(REPO, digest))
    store.set_quarantined(REPO, digest, True)
    record = store.get_record(REPO, digest)
    assert record is not None and record.quarantined
    store.set_quarantined(REPO, digest, False)
    record = store.get_record(REPO, digest)
    assert record is not None and not record.quarantined


# -- hostile content --------------------------------------------------------------------------------------------


def test_hostile_text_from_the_image_is_stored_safely(store: Store) -> None:
    digest = digest_of("hostile")
    nasty_path = "/opt/\x00evil/\udcff\udcfe" + "a" * 20_000
    finding = make_finding(
        0,
        path=nasty_path,
        step="RUN echo \x00 && curl x | sh",
        evidence="\x00\x01\udc80",
        platform="linux/amd64/\x00v8",
        message="m\x00",
    )
    report = make_report(REPO, digest, findings=[finding])
    report = type(report)(**{**report.__dict__, "provenance": {"k\x00": ["v\udcff", {"n": 1, "b": True, "x": None}]}})
    store.save_report(report)
    record = store.get_record(REPO, digest)
    assert record is not None
    (stored,) = record.findings
    assert stored.path is not None and "\x00" not in stored.path and len(stored.path) == len(nasty_path)
    assert stored.path.startswith("/opt/\ufffdevil/")
    assert stored.step == "RUN echo \ufffd && curl x | sh"
    assert stored.evidence is not None and "\x00" not in stored.evidence
    assert stored.platform == "linux/amd64/\ufffdv8"
    assert record.provenance == {"k\ufffd": ["v?", {"n": 1, "b": True, "x": None}]}
    record.to_json()  # serialisable


def test_a_finding_layer_that_is_not_a_digest_is_refused(store: Store) -> None:
    bad = make_finding(0, layer=Digest("../../etc/passwd"))
    with pytest.raises(ValueError, match="not a valid digest"):
        store.save_report(make_report(REPO, digest_of("a"), findings=[bad]))
    assert store.get_record(REPO, digest_of("a")) is None  # nothing half-written


# -- reads ------------------------------------------------------------------------------------------------------


@pytest.fixture
def statements(store: Store) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    sa.event.listen(store.engine, "before_cursor_execute", record)
    yield seen
    sa.event.remove(store.engine, "before_cursor_execute", record)


def test_hundreds_of_findings_load_in_one_query(store: Store, statements: list[str]) -> None:
    digest = digest_of("busy")
    many = [make_finding(i, severity=Severity.LOW, category=Category.SECRET) for i in range(400)]
    store.save_report(make_report(REPO, digest, findings=many))
    statements.clear()
    record = store.get_record(REPO, digest)
    assert record is not None
    assert [f.rule for f in record.findings] == [f.rule for f in many]  # order preserved
    assert sum("FROM findings" in s for s in statements) == 1
    assert len(statements) <= 4


def test_list_images_loads_a_page_in_constant_queries(store: Store, statements: list[str], clock: FakeClock) -> None:
    for i in range(12):
        clock.tick()
        store.save_report(make_report(REPO, digest_of(f"img-{i}"), findings=[make_finding(j) for j in range(3)]))
    statements.clear()
    page = store.list_images(limit=10)
    assert len(page) == 10
    assert all(len(r.findings) == 3 for r in page)
    assert len(statements) <= 4


def test_list_images_filters_orders_and_pages(store: Store, clock: FakeClock) -> None:
    for i in range(5):
        clock.tick()
        store.record_push(REPO, digest_of(f"a{i}"), tag=f"v{i}", media_type=None)
    clock.tick()
    store.record_push("other/repo", digest_of("b"), tag="1", media_type=None)
    clock.tick()
    store.save_report(make_report(REPO, digest_of("a0")))
    newest_first = store.list_images()
    assert [r.digest for r in newest_first[:2]] == [digest_of("a0"), digest_of("b")]
    assert {r.repository for r in store.list_images(repository=REPO)} == {REPO}
    assert len(store.list_images(repository=REPO)) == 5
    done = store.list_images(status=ScanStatus.DONE)
    assert [r.digest for r in done] == [digest_of("a0")]
    assert done[0].tags == ("v0",)
    first, second = store.list_images(limit=3), store.list_images(limit=3, offset=3)
    assert {r.digest for r in first}.isdisjoint({r.digest for r in second})
    assert len(second) == 3
    assert store.list_images(offset=100) == []
    for bad in ({"limit": 0}, {"limit": 100_000}, {"offset": -1}):
        with pytest.raises(ValueError):
            store.list_images(**bad)


def test_counts_by_status_and_verdict(store: Store) -> None:
    assert store.counts()["total"] == 0
    store.record_push(REPO, digest_of("q"), tag=None, media_type=None)
    store.save_report(make_report(REPO, digest_of("m")))
    store.save_report(make_report(REPO, digest_of("c"), verdict=Verdict.CLEAN, action=Action.ALLOW, findings=[]))
    store.mark_error(REPO, digest_of("e"), "boom", ruleset=None)
    store.set_quarantined(REPO, digest_of("m"), True)
    counts = store.counts()
    assert counts["queued"] == 1 and counts["done"] == 2 and counts["error"] == 1 and counts["scanning"] == 0
    assert counts["malicious"] == 1 and counts["clean"] == 1 and counts["suspicious"] == 0
    assert counts["quarantined"] == 1 and counts["total"] == 4


def test_record_json_has_the_contract_keys_and_utc_times(store: Store, clock: FakeClock) -> None:
    digest = digest_of("a")
    store.record_push(REPO, digest, tag="1.4", media_type=None)
    store.save_report(make_report(REPO, digest))
    record = store.get_record(REPO, digest)
    assert record is not None
    data = record.to_json()
    assert set(data) >= CONTRACT_KEYS
    assert data["tags"] == ["1.4"] and data["status"] == "done" and data["verdict"] == "malicious"
    assert data["scanned_at"] == "2025-03-01T12:00:00Z" and data["first_seen"].endswith("Z")
    assert data["findings"][0]["rule"] == "miner.xmrig-config-0"
    assert data["findings"][0]["severity"] == "critical"


def test_from_report_builds_an_unstored_record() -> None:
    report = make_report(REPO, digest_of("cli"))
    record = ImageRecord.from_report(report, tags=("x",), status=ScanStatus.DONE)
    data = record.to_json()
    assert set(data) >= CONTRACT_KEYS
    assert data["verdict"] == "malicious" and data["tags"] == ["x"] and data["scanned_at"].endswith("Z")


def test_naive_datetimes_are_refused(store: Store) -> None:
    store.now = lambda: datetime(2025, 1, 1)  # naive on purpose
    with pytest.raises(sa.exc.StatementError, match="naive"):
        store.record_push(REPO, digest_of("a"), tag=None, media_type=None)


def _backend_id(store: Store) -> int:
    """PostgreSQL's server process of the pooled connection (SQLite has none: 0)."""
    if store.is_sqlite:
        return 0
    with store.engine.connect() as connection:
        return int(connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())


def _push_in_child(store: Store, parent_backend: int) -> None:
    store.record_push("child/repo", digest_of("child"), tag="from-child", media_type=None)
    shared = parent_backend != 0 and _backend_id(store) == parent_backend
    store.close()
    raise SystemExit(3 if shared else 0)


def test_a_forked_child_uses_its_own_connections(store: Store) -> None:
    """rq forks a work horse per job; parent and child must not share a database connection."""
    import multiprocessing

    store.record_push(REPO, digest_of("parent"), tag="1", media_type=None)
    parent_backend = _backend_id(store)  # the connection now waiting in the parent's pool
    child = multiprocessing.get_context("fork").Process(target=_push_in_child, args=(store, parent_backend))
    child.start()
    child.join()
    assert child.exitcode == 0, "the child reused the parent's connection" if child.exitcode == 3 else child.exitcode
    assert _backend_id(store) == parent_backend  # the parent kept its own connection, untouched
    assert store.get_record_by_tag("child/repo", "from-child") is not None
    assert store.get_record_by_tag(REPO, "1") is not None
