"""Who may act: API tokens for machines and users for people, stored hashed, scoped, revocable and audited.

Tokens look like ``tg_<id>_<secret>``: the id is public (it names the token in listings and in the audit
trail), the secret is 256 random bits of which only a SHA-256 is stored. A fast hash is right for a secret of
that entropy (nothing to brute-force) and keeps every API request cheap; the comparison is constant-time.

Passwords, which people choose, are hashed with scrypt (``hashlib.scrypt``, in the standard library, so no
new dependency): it is memory-hard, which makes offline guessing on GPUs expensive, and its parameters are
stored in each hash so they can be raised later without invalidating existing ones.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc

from workers import audit
from workers.audit import AuditAction
from workers.domain import Actor, ActorKind, Role
from workers.errors import ActionRefused
from workers.store import ApiTokenRow, Store, UserRow, api_tokens, users

TOKEN_PREFIX = "tg"  # noqa: S105 - the public marker of a Tollgate token (secret scanners can match it)
TOKEN_ID_BYTES = 8  # 16 hex characters: public, only needs to be unique
TOKEN_SECRET_BYTES = 32  # 256 bits
MAX_TOKEN_LENGTH = 200  # longer Authorization values are refused before any work
LAST_USED_RESOLUTION = timedelta(minutes=1)  # last_used_at is written at most this often per token
MAX_PATTERNS = 32
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024  # scrypt's cost does not depend on it, but request bodies stay small

# scrypt with n=2**15, r=8, p=1 costs 32 MiB and tens of milliseconds per hash (werkzeug's default too).
SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
SCRYPT_SALT_BYTES = 16
SCRYPT_KEY_BYTES = 32
_SCRYPT_MAXMEM = 256 * 1024**2

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# People may be named by a proxy as an e-mail address.
_USER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,254}$")
_PATTERN_RE = re.compile(r"^[a-z0-9._/*?\[\]-]{1,255}$")
_TOKEN_RE = re.compile(rf"^{TOKEN_PREFIX}_([0-9a-f]{{{TOKEN_ID_BYTES * 2}}})_([A-Za-z0-9_-]{{20,120}})$")


# ---------------------------------------------------------------------------------------------------------------
# Scope


def check_patterns(patterns: Iterable[str]) -> tuple[str, ...]:
    """Repository glob patterns validated (``team/*``, ``org/app``); ValueError names the bad one."""
    checked = tuple(patterns)
    if len(checked) > MAX_PATTERNS:
        raise ValueError(f"at most {MAX_PATTERNS} repository patterns")
    for pattern in checked:
        if not isinstance(pattern, str) or not _PATTERN_RE.match(pattern):
            raise ValueError(f"not a repository pattern: {str(pattern)[:80]!r} (lowercase names, '/', '*', '?')")
    return checked


def in_scope(actor: Actor, repository: str) -> bool:
    """True when ``actor`` may act on ``repository``: unscoped, or one of its patterns matches.

    Patterns are shell globs over the whole name, where ``*`` also crosses ``/`` (``team/*`` covers
    ``team/a/b``).
    """
    if not actor.repositories:
        return True
    return any(fnmatch.fnmatchcase(repository, pattern) for pattern in actor.repositories)


# ---------------------------------------------------------------------------------------------------------------
# Tokens


@dataclass(frozen=True)
class TokenInfo:
    """A token as listings show it; the secret is never part of it."""

    token_id: str
    name: str
    role: Role
    repositories: tuple[str, ...]
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    revoked_at: datetime | None
    revoked_by: str | None
    last_used_at: datetime | None

    @property
    def actor(self) -> Actor:
        """The actor a request with this token acts as (``token:<name>``; names are unique)."""
        return Actor(ActorKind.TOKEN, self.name, self.role, self.repositories)

    def active(self, now: datetime) -> bool:
        """Neither revoked nor expired at ``now``."""
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)

    def to_json(self) -> dict[str, Any]:
        """For ``tollgate token list --format json``."""
        return {
            "id": self.token_id,
            "name": self.name,
            "role": self.role.value,
            "repositories": list(self.repositories),
            "created_at": _iso(self.created_at),
            "created_by": self.created_by,
            "expires_at": _iso(self.expires_at),
            "revoked_at": _iso(self.revoked_at),
            "revoked_by": self.revoked_by,
            "last_used_at": _iso(self.last_used_at),
        }


@dataclass(frozen=True)
class CreatedToken:
    """A new token: the full secret value (shown once) and what is stored."""

    token: str
    info: TokenInfo


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment is not None else None


def _secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _token_info(row: ApiTokenRow) -> TokenInfo:
    return TokenInfo(
        token_id=row.token_id,
        name=row.name,
        role=Role(row.role),
        repositories=tuple(row.repositories or ()),
        created_at=row.created_at,
        created_by=row.created_by,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        revoked_by=row.revoked_by,
        last_used_at=row.last_used_at,
    )


def create_token(
    store: Store,
    actor: Actor,
    *,
    role: Role,
    name: str | None = None,
    repositories: Sequence[str] = (),
    expires_in: timedelta | None = None,
    reason: str = "created",
) -> CreatedToken:
    """Create a token; the returned ``token`` is the only time its secret exists outside the caller.

    Names are unique over every token ever created (revoked ones too), so ``token:<name>`` in the audit
    trail always means one token; rotate by creating ``ci-bot-2`` and revoking ``ci-bot``.
    """
    patterns = check_patterns(repositories)
    if expires_in is not None and expires_in <= timedelta(0):
        raise ValueError("the expiry must be in the future")
    token_id = secrets.token_hex(TOKEN_ID_BYTES)
    name = name if name is not None else f"token-{token_id}"
    if not _NAME_RE.match(name):
        raise ValueError(f"not a token name: {name[:80]!r} (letters, digits, '.', '_', '-'; at most 64)")
    secret = secrets.token_urlsafe(TOKEN_SECRET_BYTES)
    now = store.now()
    taken_message = f"a token named {name!r} exists already (names are never reused)"
    try:
        with store.transaction() as session:
            taken = session.execute(sa.select(api_tokens.c.token_id).where(api_tokens.c.name == name)).first()
            if taken is not None:
                raise ValueError(taken_message)
            row = ApiTokenRow(
                token_id=token_id,
                name=name,
                role=role.value,
                secret_hash=_secret_hash(secret),
                repositories=list(patterns),
                created_at=now,
                created_by=str(actor),
                expires_at=now + expires_in if expires_in is not None else None,
                revoked_at=None,
                revoked_by=None,
                last_used_at=None,
            )
            session.add(row)
            session.flush()
            info = _token_info(row)
    except exc.IntegrityError:
        # Two creations of one name at once: both passed the check above; the unique constraint stops one.
        raise ValueError(taken_message) from None
    audit.record(
        store,
        actor,
        AuditAction.TOKEN_CREATE,
        f"token:{token_id}",
        reason=reason,
        details={"name": name, "role": role.value, "repositories": list(patterns), "expires_at": _iso(info.expires_at)},
    )
    return CreatedToken(token=f"{TOKEN_PREFIX}_{token_id}_{secret}", info=info)


def list_tokens(store: Store) -> list[TokenInfo]:
    """Every token, oldest first."""
    with store.reading() as session:
        rows = session.scalars(sa.select(ApiTokenRow).order_by(ApiTokenRow.created_at, ApiTokenRow.token_id)).all()
    return [_token_info(row) for row in rows]


def revoke_token(store: Store, actor: Actor, token_id: str, *, reason: str) -> TokenInfo:
    """Revoke a token by id (or by its full value); LookupError when unknown, ActionRefused when already revoked."""
    matched = _TOKEN_RE.match(token_id)
    wanted = matched.group(1) if matched else token_id
    with store.transaction() as session:
        row = session.scalars(sa.select(ApiTokenRow).where(ApiTokenRow.token_id == wanted).with_for_update()).first()
        if row is None:
            raise LookupError(f"no token with id {wanted[:40]!r}")
        if row.revoked_at is not None:
            raise ActionRefused(f"token {wanted} was revoked already, by {row.revoked_by}")
        row.revoked_at = store.now()
        row.revoked_by = str(actor)
        session.flush()
        info = _token_info(row)
    audit.record(store, actor, AuditAction.TOKEN_REVOKE, f"token:{wanted}", reason=reason, details={"name": info.name})
    return info


def authenticate_token(store: Store, presented: str) -> TokenInfo | None:
    """The active token ``presented`` is, or None (malformed, unknown, wrong secret, revoked, expired)."""
    if len(presented) > MAX_TOKEN_LENGTH:
        return None
    matched = _TOKEN_RE.match(presented)
    if matched is None:
        return None
    token_id, secret = matched.groups()
    with store.reading() as session:
        row = session.scalars(sa.select(ApiTokenRow).where(ApiTokenRow.token_id == token_id)).first()
    if row is None:
        return None
    if not hmac.compare_digest(_secret_hash(secret), row.secret_hash):
        return None
    info = _token_info(row)
    now = store.now()
    if not info.active(now):
        return None
    if info.last_used_at is None or now - info.last_used_at >= LAST_USED_RESOLUTION:
        # One small UPDATE a minute per token at most, not one per request.
        with store.transaction() as session:
            session.execute(sa.update(api_tokens).where(api_tokens.c.token_id == token_id).values(last_used_at=now))
    return info


# ---------------------------------------------------------------------------------------------------------------
# Passwords


def hash_password(password: str) -> str:
    """``scrypt$<n>$<r>$<p>$<salt>$<key>`` (base64) for ``password``."""
    _check_password(password)
    salt = secrets.token_bytes(SCRYPT_SALT_BYTES)
    key = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return "$".join(["scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P), _b64(salt), _b64(key)])


def verify_password(encoded: str, password: str) -> bool:
    """True when ``password`` matches ``encoded``; False for a malformed hash rather than an error."""
    try:
        scheme, n, r, p, salt, key = encoded.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(key)
        actual = _scrypt(password[:MAX_PASSWORD_LENGTH], base64.b64decode(salt), int(n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=_SCRYPT_MAXMEM, dklen=SCRYPT_KEY_BYTES)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _check_password(password: str) -> None:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValueError(f"a password has at most {MAX_PASSWORD_LENGTH} characters")


# A hash to verify against when the user is unknown, so the answer takes as long as for a known user.
_DUMMY_HASH = "$".join(
    ["scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P), _b64(b"\0" * SCRYPT_SALT_BYTES), _b64(b"\0" * 32)]
)


# ---------------------------------------------------------------------------------------------------------------
# Users


@dataclass(frozen=True)
class UserInfo:
    """A person Tollgate knows: role, scope, whether they can log in with a password, and the session epoch."""

    name: str
    role: Role
    repositories: tuple[str, ...]
    has_password: bool
    session_epoch: int
    created_at: datetime
    disabled_at: datetime | None

    @property
    def actor(self) -> Actor:
        """The actor this person acts as (``user:<name>``)."""
        return Actor(ActorKind.USER, self.name, self.role, self.repositories)

    @property
    def disabled(self) -> bool:
        """True once disabled: no login, no session, no proxy identity."""
        return self.disabled_at is not None

    def to_json(self) -> dict[str, Any]:
        """For ``tollgate user list``."""
        return {
            "name": self.name,
            "role": self.role.value,
            "repositories": list(self.repositories),
            "password": self.has_password,
            "created_at": _iso(self.created_at),
            "disabled_at": _iso(self.disabled_at),
        }


def _user_info(row: UserRow) -> UserInfo:
    return UserInfo(
        name=row.name,
        role=Role(row.role),
        repositories=tuple(row.repositories or ()),
        has_password=row.password_hash is not None,
        session_epoch=row.session_epoch,
        created_at=row.created_at,
        disabled_at=row.disabled_at,
    )


def check_user_name(name: str) -> str:
    """``name`` when it is a valid user name; ValueError otherwise."""
    if not isinstance(name, str) or not _USER_RE.match(name):
        raise ValueError(f"not a user name: {str(name)[:80]!r} (letters, digits, '.', '_', '@', '+', '-')")
    return name


def create_user(
    store: Store,
    actor: Actor,
    name: str,
    *,
    role: Role,
    password: str | None,
    repositories: Sequence[str] = (),
    reason: str = "created",
) -> UserInfo:
    """Create a person; ``password=None`` makes a proxy-only user (no password login). ValueError on bad input."""
    check_user_name(name)
    patterns = check_patterns(repositories)
    password_hash = hash_password(password) if password is not None else None
    with store.transaction() as session:
        if session.execute(sa.select(users.c.id).where(users.c.name == name)).first() is not None:
            raise ValueError(f"a user named {name!r} exists already")
        row = UserRow(
            name=name,
            role=role.value,
            password_hash=password_hash,
            repositories=list(patterns),
            session_epoch=0,
            created_at=store.now(),
            disabled_at=None,
        )
        session.add(row)
        session.flush()
        info = _user_info(row)
    audit.record(
        store,
        actor,
        AuditAction.USER_CREATE,
        f"user:{name}",
        reason=reason,
        details={"role": role.value, "repositories": list(patterns), "password": password is not None},
    )
    return info


def get_user(store: Store, name: str) -> UserInfo | None:
    """The user named ``name``, or None."""
    if not isinstance(name, str) or not _USER_RE.match(name):
        return None
    with store.reading() as session:
        row = session.scalars(sa.select(UserRow).where(UserRow.name == name)).first()
    return _user_info(row) if row is not None else None


def list_users(store: Store) -> list[UserInfo]:
    """Every user, by name."""
    with store.reading() as session:
        rows = session.scalars(sa.select(UserRow).order_by(UserRow.name)).all()
    return [_user_info(row) for row in rows]


def check_login(store: Store, name: str, password: str) -> UserInfo | None:
    """The enabled user whose password this is, or None; costs one scrypt either way (no user enumeration)."""
    row_hash: str | None = None
    found: UserInfo | None = None
    if isinstance(name, str) and _USER_RE.match(name):
        with store.reading() as session:
            row = session.scalars(sa.select(UserRow).where(UserRow.name == name)).first()
        if row is not None:
            row_hash = row.password_hash
            found = _user_info(row)
    matches = verify_password(row_hash or _DUMMY_HASH, password)
    if not matches or found is None or row_hash is None or found.disabled:
        return None
    return found


def disable_user(store: Store, actor: Actor, name: str, *, reason: str) -> UserInfo:
    """Disable a person and end every session they have; LookupError when unknown, ActionRefused if disabled."""
    with store.transaction() as session:
        row = session.scalars(sa.select(UserRow).where(UserRow.name == name).with_for_update()).first()
        if row is None:
            raise LookupError(f"no user named {name[:80]!r}")
        if row.disabled_at is not None:
            raise ActionRefused(f"user {name} is disabled already")
        row.disabled_at = store.now()
        row.session_epoch += 1
        session.flush()
        info = _user_info(row)
    audit.record(store, actor, AuditAction.USER_CHANGE, f"user:{name}", reason=reason, details={"disabled": True})
    return info


def end_sessions(store: Store, actor: Actor, name: str, *, reason: str) -> UserInfo:
    """Sign ``name`` out everywhere: every session cookie issued before now stops working."""
    with store.transaction() as session:
        row = session.scalars(sa.select(UserRow).where(UserRow.name == name).with_for_update()).first()
        if row is None:
            raise LookupError(f"no user named {name[:80]!r}")
        row.session_epoch += 1
        session.flush()
        info = _user_info(row)
    audit.record(store, actor, AuditAction.USER_CHANGE, f"user:{name}", reason=reason, details={"sessions_ended": True})
    return info


# ---------------------------------------------------------------------------------------------------------------
# Login throttle


LOGIN_WINDOW = timedelta(minutes=5)
LOGIN_MAX_FAILURES = 5


def login_throttled(store: Store, name: str) -> bool:
    """True when ``name`` had LOGIN_MAX_FAILURES failed logins within LOGIN_WINDOW.

    The count comes from the audit trail itself, so every web process sees the same failures and a
    throttled attempt (itself audited) keeps the account throttled while the guessing goes on.
    """
    recent = audit.events(
        store,
        target=f"user:{name}"[:1024],
        action=AuditAction.LOGIN_FAILED.value,
        since=store.now() - LOGIN_WINDOW,
        limit=LOGIN_MAX_FAILURES,
    )
    return len(recent) >= LOGIN_MAX_FAILURES
