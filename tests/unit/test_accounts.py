"""API tokens and users over a real store (SQLite and PostgreSQL): hashing, scope, expiry, revocation, audit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from workers import accounts
from workers.audit import AuditAction, events
from workers.domain import Actor, ActorKind, Role
from workers.errors import ActionRefused
from workers.store import Store, api_tokens, users

OPERATOR = Actor(ActorKind.SYSTEM, "cli/test")
PASSWORD = "correct horse battery staple"


class Clock:
    """A controllable store clock."""

    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock(store: Store) -> Clock:
    controlled = Clock()
    store.now = controlled
    return controlled


# -- tokens ------------------------------------------------------------------------------------------------------


def test_a_created_token_authenticates_and_only_its_hash_is_stored(store: Store) -> None:
    created = accounts.create_token(store, OPERATOR, role=Role.SECURITY, name="ci-bot", reason="bootstrap")
    prefix, token_id, secret = created.token.split("_", 2)
    assert prefix == "tg" and token_id == created.info.token_id and len(secret) >= 40
    with store.reading() as session:
        row = session.execute(sa.select(api_tokens)).one()
    assert secret not in row.secret_hash and created.token not in str(tuple(row))
    info = accounts.authenticate_token(store, created.token)
    assert info is not None and info.name == "ci-bot" and info.role is Role.SECURITY
    assert str(info.actor) == "token:ci-bot" and info.actor.role is Role.SECURITY
    [event] = events(store, action=AuditAction.TOKEN_CREATE.value)
    assert event.actor == "system:cli/test" and event.target == f"token:{token_id}" and event.reason == "bootstrap"
    assert event.details["role"] == "security" and secret not in str(event.to_json())


@pytest.mark.parametrize(
    "presented",
    [
        "",
        "garbage",
        "tg_0123456789abcdef_" + "x" * 43,  # well formed, unknown id
        "tg_zz23456789abcdef_" + "x" * 43,
        "tg_0123456789abcdef_short",
        "tg_" + "0" * 16 + "_" + "y" * 500,
        "Bearer tg_x",
    ],
)
def test_garbage_tokens_do_not_authenticate(store: Store, presented: str) -> None:
    accounts.create_token(store, OPERATOR, role=Role.VIEWER)
    assert accounts.authenticate_token(store, presented) is None


def test_a_wrong_secret_for_a_real_id_does_not_authenticate(store: Store) -> None:
    created = accounts.create_token(store, OPERATOR, role=Role.VIEWER)
    head, _, secret = created.token.rpartition("_")
    flipped = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    assert accounts.authenticate_token(store, f"{head}_{flipped}") is None
    assert accounts.authenticate_token(store, created.token) is not None


def test_revoked_tokens_stop_working_and_revocation_is_audited(store: Store) -> None:
    created = accounts.create_token(store, OPERATOR, role=Role.DEVELOPER, name="old")
    revoked = accounts.revoke_token(store, OPERATOR, created.info.token_id, reason="leaked in a log")
    assert revoked.revoked_at is not None and revoked.revoked_by == "system:cli/test"
    assert accounts.authenticate_token(store, created.token) is None
    with pytest.raises(ActionRefused):
        accounts.revoke_token(store, OPERATOR, created.info.token_id, reason="again")
    with pytest.raises(LookupError):
        accounts.revoke_token(store, OPERATOR, "0" * 16, reason="unknown")
    [event] = events(store, action=AuditAction.TOKEN_REVOKE.value)
    assert event.reason == "leaked in a log" and event.details == {"name": "old"}


def test_tokens_expire_by_the_clock(store: Store, clock: Clock) -> None:
    created = accounts.create_token(store, OPERATOR, role=Role.VIEWER, expires_in=timedelta(days=2))
    assert created.info.expires_at == clock.now + timedelta(days=2)
    clock.now += timedelta(days=2) - timedelta(seconds=1)
    assert accounts.authenticate_token(store, created.token) is not None
    clock.now += timedelta(seconds=1)
    assert accounts.authenticate_token(store, created.token) is None
    with pytest.raises(ValueError, match="future"):
        accounts.create_token(store, OPERATOR, role=Role.VIEWER, expires_in=timedelta(0))


def test_last_used_is_written_at_most_once_a_minute(store: Store, clock: Clock) -> None:
    created = accounts.create_token(store, OPERATOR, role=Role.VIEWER)
    start = clock.now
    accounts.authenticate_token(store, created.token)
    clock.now += timedelta(seconds=30)
    accounts.authenticate_token(store, created.token)
    [listed] = accounts.list_tokens(store)
    assert listed.last_used_at == start
    clock.now += timedelta(seconds=31)
    accounts.authenticate_token(store, created.token)
    assert accounts.list_tokens(store)[0].last_used_at == clock.now


def test_token_names_are_never_reused_and_patterns_are_checked(store: Store) -> None:
    accounts.create_token(store, OPERATOR, role=Role.VIEWER, name="ci-bot")
    accounts.revoke_token(store, OPERATOR, accounts.list_tokens(store)[0].token_id, reason="rotate")
    with pytest.raises(ValueError, match="exists already"):
        accounts.create_token(store, OPERATOR, role=Role.VIEWER, name="ci-bot")
    for bad_name in ("", "has space", "x" * 65, "-dash", "semi;colon"):
        with pytest.raises(ValueError, match="token name"):
            accounts.create_token(store, OPERATOR, role=Role.VIEWER, name=bad_name)
    for bad_pattern in ("", "Team/App", "team app", "x" * 256):
        with pytest.raises(ValueError, match="repository pattern"):
            accounts.create_token(store, OPERATOR, role=Role.VIEWER, repositories=[bad_pattern])
    default = accounts.create_token(store, OPERATOR, role=Role.VIEWER)
    assert default.info.name == f"token-{default.info.token_id}"


def test_the_database_itself_refuses_a_reused_token_name(store: Store) -> None:
    # What stops two simultaneous creations of one name, where both pass create_token's own check.
    accounts.create_token(store, OPERATOR, role=Role.VIEWER, name="ci-bot")
    row = dict(store_row(store, "ci-bot"), token_id="f" * 16)
    with pytest.raises(sa.exc.IntegrityError), store.engine.begin() as conn:
        conn.execute(sa.insert(api_tokens).values(**row))


def store_row(store: Store, name: str) -> dict[str, object]:
    with store.engine.connect() as conn:
        return dict(conn.execute(sa.select(api_tokens).where(api_tokens.c.name == name)).mappings().one())


def test_scope_patterns() -> None:
    scoped = Actor(ActorKind.TOKEN, "t", Role.DEVELOPER, ("team/*", "org/app"))
    assert accounts.in_scope(scoped, "team/app") and accounts.in_scope(scoped, "team/a/b")
    assert accounts.in_scope(scoped, "org/app")
    assert not accounts.in_scope(scoped, "org/app2") and not accounts.in_scope(scoped, "teams/app")
    assert accounts.in_scope(Actor(ActorKind.TOKEN, "t", Role.DEVELOPER), "anything/at-all")


def test_a_scoped_token_carries_its_scope(store: Store) -> None:
    created = accounts.create_token(store, OPERATOR, role=Role.DEVELOPER, repositories=["team/*"])
    info = accounts.authenticate_token(store, created.token)
    assert info is not None and info.actor.repositories == ("team/*",)


# -- users -------------------------------------------------------------------------------------------------------


def test_passwords_are_scrypt_hashed_and_checked(store: Store) -> None:
    user = accounts.create_user(store, OPERATOR, "alice", role=Role.SECURITY, password=PASSWORD, reason="new hire")
    assert user.has_password and user.session_epoch == 0
    with store.reading() as session:
        stored = session.execute(sa.select(users.c.password_hash)).scalar_one()
    assert stored.startswith("scrypt$32768$8$1$") and PASSWORD not in stored
    assert accounts.check_login(store, "alice", PASSWORD) == user
    assert accounts.check_login(store, "alice", PASSWORD + "!") is None
    assert accounts.check_login(store, "bob", PASSWORD) is None
    assert accounts.check_login(store, "not a name", PASSWORD) is None
    [event] = events(store, action=AuditAction.USER_CREATE.value)
    assert event.target == "user:alice" and event.details["password"] is True and event.reason == "new hire"


def test_hashes_are_salted_and_malformed_hashes_are_not_errors() -> None:
    first, second = accounts.hash_password(PASSWORD), accounts.hash_password(PASSWORD)
    assert first != second
    assert accounts.verify_password(first, PASSWORD) and accounts.verify_password(second, PASSWORD)
    for broken in ("", "scrypt$1$2", "bcrypt$x$y$z$a$b", "scrypt$x$8$1$AA==$AA==", first.replace("$8$", "$0$")):
        assert not accounts.verify_password(broken, PASSWORD)


def test_password_rules_and_names(store: Store) -> None:
    with pytest.raises(ValueError, match="at least"):
        accounts.create_user(store, OPERATOR, "alice", role=Role.VIEWER, password="short")
    with pytest.raises(ValueError, match="at most"):
        accounts.create_user(store, OPERATOR, "alice", role=Role.VIEWER, password="p" * 2000)
    with pytest.raises(ValueError, match="user name"):
        accounts.create_user(store, OPERATOR, "<script>", role=Role.VIEWER, password=None)
    accounts.create_user(store, OPERATOR, "alice@example.org", role=Role.VIEWER, password=None)
    with pytest.raises(ValueError, match="exists already"):
        accounts.create_user(store, OPERATOR, "alice@example.org", role=Role.VIEWER, password=None)


def test_a_proxy_only_user_cannot_log_in_with_a_password(store: Store) -> None:
    accounts.create_user(store, OPERATOR, "carol", role=Role.DEVELOPER, password=None)
    assert accounts.check_login(store, "carol", "") is None
    assert accounts.check_login(store, "carol", PASSWORD) is None
    found = accounts.get_user(store, "carol")
    assert found is not None and not found.has_password


def test_disable_ends_sessions_and_logins(store: Store) -> None:
    accounts.create_user(store, OPERATOR, "alice", role=Role.SECURITY, password=PASSWORD)
    disabled = accounts.disable_user(store, OPERATOR, "alice", reason="left the company")
    assert disabled.disabled and disabled.session_epoch == 1
    assert accounts.check_login(store, "alice", PASSWORD) is None
    with pytest.raises(ActionRefused):
        accounts.disable_user(store, OPERATOR, "alice", reason="again")
    with pytest.raises(LookupError):
        accounts.disable_user(store, OPERATOR, "nobody", reason="x")
    ended = accounts.end_sessions(store, OPERATOR, "alice", reason="lost laptop")
    assert ended.session_epoch == 2
    changes = events(store, action=AuditAction.USER_CHANGE.value)
    assert [e.reason for e in changes] == ["left the company", "lost laptop"]


def test_failed_logins_throttle_by_name_within_the_window(store: Store, clock: Clock) -> None:
    from workers import audit

    login = Actor(ActorKind.SYSTEM, "login")
    for _ in range(accounts.LOGIN_MAX_FAILURES - 1):
        audit.record(store, login, AuditAction.LOGIN_FAILED, "user:alice", reason="wrong name or password")
    assert not accounts.login_throttled(store, "alice")
    audit.record(store, login, AuditAction.LOGIN_FAILED, "user:alice", reason="wrong name or password")
    assert accounts.login_throttled(store, "alice")
    assert not accounts.login_throttled(store, "bob")
    clock.now += accounts.LOGIN_WINDOW + timedelta(seconds=1)
    assert not accounts.login_throttled(store, "alice")
