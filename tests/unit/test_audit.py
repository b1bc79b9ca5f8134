"""The audit trail on real SQLite and PostgreSQL: appends, the hash chain, append-only, filters, export."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy import exc

from workers.audit import GENESIS_HASH, AuditAction, events, export_jsonl, record, verify_chain
from workers.domain import SYSTEM_ACTOR, Actor, ActorKind, Role
from workers.store import Store

ALICE = Actor(ActorKind.USER, "alice", Role.SECURITY)


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    opened = Store(database_url)
    opened.migrate()
    yield opened
    opened.close()


def test_records_chain_and_read_back_in_order(store: Store) -> None:
    first = record(store, SYSTEM_ACTOR, AuditAction.VERDICT, "team/app@sha256:" + "a" * 64, reason="malicious: miner")
    second = record(
        store,
        ALICE,
        AuditAction.RELEASE,
        "team/app@sha256:" + "a" * 64,
        reason="false positive",
        details={"tags": ["v1"]},
    )
    assert first.prev_hash == GENESIS_HASH
    assert second.prev_hash == first.hash != second.hash
    listed = events(store)
    assert [e.id for e in listed] == [first.id, second.id]
    assert listed[1].actor == "user:alice" and listed[1].actor_role == "security"
    assert listed[1].details == {"tags": ["v1"]}
    assert verify_chain(store).intact and verify_chain(store).checked == 2


def test_hostile_text_is_stored_not_refused(store: Store) -> None:
    event = record(
        store,
        ALICE,
        AuditAction.WAIVER_CREATE,
        "waiver:1",
        reason="nul\x00 and \udcff surrogate",
        details={"k\x00": "v"},
    )
    assert "\x00" not in event.reason
    assert events(store)[0].reason == event.reason
    assert verify_chain(store).intact


def test_the_database_refuses_updates_and_deletes(store: Store) -> None:
    record(store, SYSTEM_ACTOR, AuditAction.VERDICT, "team/app@sha256:" + "b" * 64, reason="clean")
    with store.engine.connect() as conn:
        with pytest.raises(exc.DBAPIError, match="append-only"):
            conn.execute(sa.text("UPDATE audit_events SET reason = 'edited'"))
        conn.rollback()
        with pytest.raises(exc.DBAPIError, match="append-only"):
            conn.execute(sa.text("DELETE FROM audit_events"))
        conn.rollback()
    assert events(store)[0].reason == "clean"


def _disable_guard(conn: sa.Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only"))
    else:
        conn.execute(sa.text("DROP TRIGGER audit_events_no_update"))
        conn.execute(sa.text("DROP TRIGGER audit_events_no_delete"))


def test_tampering_past_the_guard_is_detected(store: Store) -> None:
    for n in range(3):
        record(store, SYSTEM_ACTOR, AuditAction.VERDICT, f"team/app@sha256:{n:064x}", reason=f"reason {n}")
    middle = events(store)[1]
    with store.engine.begin() as conn:
        _disable_guard(conn)
        conn.execute(sa.text("UPDATE audit_events SET reason = 'rewritten' WHERE id = :id"), {"id": middle.id})
    check = verify_chain(store)
    assert not check.intact and check.broken_at == middle.id


def test_removing_the_newest_record_is_detected(store: Store) -> None:
    for n in range(2):
        record(store, SYSTEM_ACTOR, AuditAction.VERDICT, f"team/app@sha256:{n:064x}", reason="r")
    newest = events(store)[-1]
    with store.engine.begin() as conn:
        _disable_guard(conn)
        conn.execute(sa.text("DELETE FROM audit_events WHERE id = :id"), {"id": newest.id})
    assert not verify_chain(store).intact


def test_concurrent_appenders_never_fork_the_chain(store: Store) -> None:
    errors: list[BaseException] = []

    def append(worker: int) -> None:
        try:
            for n in range(10):
                record(store, SYSTEM_ACTOR, AuditAction.VERDICT, f"w{worker}/app@sha256:{n:064x}", reason="r")
        except BaseException as caught:
            errors.append(caught)

    threads = [threading.Thread(target=append, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    check = verify_chain(store)
    assert check.intact and check.checked == 40


def test_filters_paging_and_jsonl_export(store: Store) -> None:
    target = "team/app@sha256:" + "c" * 64
    record(store, SYSTEM_ACTOR, AuditAction.QUARANTINE, target, reason="policy")
    record(store, ALICE, AuditAction.RELEASE, target, reason="reviewed")
    record(store, ALICE, AuditAction.WAIVER_CREATE, "waiver:7", reason="docs only")
    assert [e.action for e in events(store, target=target)] == ["quarantine", "release"]
    assert [e.action for e in events(store, actor="user:alice")] == ["release", "waiver.create"]
    assert [e.action for e in events(store, action="release")] == ["release"]
    assert [e.target for e in events(store, target_prefix="team/")] == [target, target]
    assert [e.target for e in events(store, target_prefix="team_")] == []  # LIKE wildcards are literal
    first = events(store, limit=1)
    rest = events(store, after_id=first[0].id)
    assert len(rest) == 2 and rest[0].id > first[0].id
    assert events(store, newest_first=True, limit=1)[0].action == "waiver.create"
    out = io.StringIO()
    assert export_jsonl(store, out) == 3
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["action"] for line in lines] == ["quarantine", "release", "waiver.create"]
    assert lines[0]["at"].endswith("Z") and lines[1]["prev_hash"] == lines[0]["hash"]
