"""The ``tollgate token``, ``tollgate user`` and ``tollgate audit`` subcommands (wired into workers/cli.py)."""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from workers.domain import Actor, ActorKind, Role
from workers.errors import ConfigError
from workers.settings import Settings
from workers.store import Store

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_ERROR = 2
ROLES = [role.value for role in Role]


def cli_actor() -> Actor:
    """Who acts from the command line: the operating-system user on the server (``system:cli/<user>``)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry, as in some containers
        user = str(os.getuid())
    return Actor(ActorKind.SYSTEM, f"cli/{user}")


@contextmanager
def _store() -> Iterator[Store]:
    store = Store.from_settings(Settings.from_env())
    # The first token is often created before the web app ever started; the migration's chatter would bury
    # the one line that matters (the token), so only its warnings are shown.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    store.migrate()
    try:
        yield store
    finally:
        store.close()


def _fail(message: str) -> int:
    print(f"tollgate: error: {message}", file=sys.stderr)
    return EXIT_ERROR


# -- tokens ------------------------------------------------------------------------------------------------------


def cmd_token_create(args: argparse.Namespace) -> int:
    """Create an API token and print it once on stdout (what it may do goes to stderr)."""
    from workers import accounts

    expires_in = timedelta(days=args.expires_in) if args.expires_in is not None else None
    with _store() as store:
        try:
            created = accounts.create_token(
                store,
                cli_actor(),
                role=Role(args.role),
                name=args.name,
                repositories=args.repository or (),
                expires_in=expires_in,
                reason=args.reason,
            )
        except ValueError as exc:
            return _fail(str(exc))
    info = created.info
    scope = ", ".join(info.repositories) or "every repository"
    expiry = info.expires_at.isoformat() if info.expires_at else "never"
    print(created.token, flush=True)
    print(
        f"tollgate: token {info.token_id} ({info.name}), role {info.role.value}, {scope}, expires {expiry}. "
        "It is shown only now; send it as 'Authorization: Bearer <token>'.",
        file=sys.stderr,
    )
    return EXIT_OK


def cmd_token_list(args: argparse.Namespace) -> int:
    """List tokens (never their secrets)."""
    from workers import accounts

    with _store() as store:
        tokens = accounts.list_tokens(store)
        now = store.now()
    if args.format == "json":
        json.dump([t.to_json() for t in tokens], sys.stdout, indent=2)
        sys.stdout.write("\n")
        return EXIT_OK
    for token in tokens:
        state = "active" if token.active(now) else ("revoked" if token.revoked_at else "expired")
        scope = ",".join(token.repositories) or "*"
        used = token.last_used_at.isoformat(timespec="seconds") if token.last_used_at else "never used"
        print(f"{token.token_id}  {token.name:24}  {token.role.value:9}  {state:7}  {scope}  {used}")
    return EXIT_OK


def cmd_token_revoke(args: argparse.Namespace) -> int:
    """Revoke a token by id; it stops working at once."""
    from workers import accounts

    with _store() as store:
        try:
            info = accounts.revoke_token(store, cli_actor(), args.id, reason=args.reason)
        except LookupError as exc:
            return _fail(str(exc.args[0]))
    print(f"tollgate: token {info.token_id} ({info.name}) revoked")
    return EXIT_OK


# -- users -------------------------------------------------------------------------------------------------------


def _read_password(args: argparse.Namespace) -> str | None:
    if args.no_password:
        return None
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise ConfigError("give --password-stdin or --no-password (stdin is not a terminal to prompt on)")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        raise ConfigError("the passwords differ")
    return first


def cmd_user_create(args: argparse.Namespace) -> int:
    """Create a person (``--no-password``: known only through the trusted proxy's identity header)."""
    from workers import accounts

    password = _read_password(args)
    with _store() as store:
        try:
            user = accounts.create_user(
                store,
                cli_actor(),
                args.name,
                role=Role(args.role),
                password=password,
                repositories=args.repository or (),
                reason=args.reason,
            )
        except ValueError as exc:
            return _fail(str(exc))
    how = "password login" if user.has_password else "proxy identity only"
    print(f"tollgate: user {user.name} created, role {user.role.value} ({how})")
    return EXIT_OK


def cmd_user_disable(args: argparse.Namespace) -> int:
    """Disable a person: no login, every session ends."""
    from workers import accounts

    with _store() as store:
        try:
            accounts.disable_user(store, cli_actor(), args.name, reason=args.reason)
        except LookupError as exc:
            return _fail(str(exc.args[0]))
    print(f"tollgate: user {args.name} disabled; every session of theirs has ended")
    return EXIT_OK


def cmd_user_sign_out(args: argparse.Namespace) -> int:
    """End every session of a person (they can log in again)."""
    from workers import accounts

    with _store() as store:
        try:
            accounts.end_sessions(store, cli_actor(), args.name, reason=args.reason)
        except LookupError as exc:
            return _fail(str(exc.args[0]))
    print(f"tollgate: every session of {args.name} has ended")
    return EXIT_OK


def cmd_user_list(args: argparse.Namespace) -> int:
    """List people."""
    from workers import accounts

    with _store() as store:
        listed = accounts.list_users(store)
    if args.format == "json":
        json.dump([u.to_json() for u in listed], sys.stdout, indent=2)
        sys.stdout.write("\n")
        return EXIT_OK
    for user in listed:
        state = "disabled" if user.disabled else "active"
        login = "password" if user.has_password else "proxy"
        print(f"{user.name:32}  {user.role.value:9}  {state:8}  {login:8}  {','.join(user.repositories) or '*'}")
    return EXIT_OK


# -- audit -------------------------------------------------------------------------------------------------------


def _time(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {value!r}") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"give a time zone, e.g. {value}Z or {value}+00:00")
    return moment


def cmd_audit_export(args: argparse.Namespace) -> int:
    """Write the audit trail (or the part the filters select) as JSON lines."""
    from workers import audit

    filters: dict[str, Any] = {
        "since": args.since,
        "until": args.until,
        "action": args.action,
        "target_prefix": args.target_prefix,
        "actor": args.actor,
    }
    with _store() as store:
        if args.output is None:
            written = audit.export_jsonl(store, sys.stdout, **filters)
        else:
            with args.output.open("w", encoding="utf-8") as out:
                written = audit.export_jsonl(store, out, **filters)
    print(f"tollgate: {written} audit records exported", file=sys.stderr)
    return EXIT_OK


def cmd_audit_verify(_args: argparse.Namespace) -> int:
    """Recompute the audit trail's hash chain; exit 1 when a record was altered or removed."""
    from workers import audit

    with _store() as store:
        check = audit.verify_chain(store)
    if check.intact:
        print(f"tollgate: audit trail intact ({check.checked} records)")
        return EXIT_OK
    print(f"tollgate: audit trail BROKEN at record {check.broken_at}: {check.why} ({check.checked} intact before it)")
    return EXIT_FAILED


# -- parsers -----------------------------------------------------------------------------------------------------


def _positive_days(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 3650:
        raise argparse.ArgumentTypeError("a whole number of days from 1 to 3650")
    return int(value)


def add_commands(sub: Any) -> None:
    """Add ``token``, ``user`` and ``audit`` to the ``tollgate`` subcommands."""
    from workers.audit import AuditAction

    token = sub.add_parser("token", help="API tokens for machines: create, list, revoke")
    tokens = token.add_subparsers(dest="token_command", required=True)
    create = tokens.add_parser("create", help="create a token and print it once")
    create.add_argument("--role", required=True, choices=ROLES)
    create.add_argument("--name", help="a unique name (default token-<id>); the audit trail shows token:<name>")
    create.add_argument("--repository", action="append", metavar="PATTERN", help="limit to repositories (glob)")
    create.add_argument("--expires-in", type=_positive_days, metavar="DAYS", help="expire after DAYS days")
    create.add_argument("--reason", default="created with tollgate token create", help="recorded in the audit trail")
    create.set_defaults(func=cmd_token_create)
    listing = tokens.add_parser("list", help="list tokens (not their secrets)")
    listing.add_argument("--format", choices=["text", "json"], default="text")
    listing.set_defaults(func=cmd_token_list)
    revoke = tokens.add_parser("revoke", help="revoke a token by id")
    revoke.add_argument("id", help="the token id (the part after tg_)")
    revoke.add_argument("--reason", required=True)
    revoke.set_defaults(func=cmd_token_revoke)

    user = sub.add_parser("user", help="people: create, list, disable, sign-out")
    users = user.add_subparsers(dest="user_command", required=True)
    ucreate = users.add_parser("create", help="create a person")
    ucreate.add_argument("name")
    ucreate.add_argument("--role", required=True, choices=ROLES)
    ucreate.add_argument("--repository", action="append", metavar="PATTERN", help="limit to repositories (glob)")
    how = ucreate.add_mutually_exclusive_group()
    how.add_argument("--password-stdin", action="store_true", help="read the password from the first stdin line")
    how.add_argument("--no-password", action="store_true", help="no password login (trusted proxy identity only)")
    ucreate.add_argument("--reason", default="created with tollgate user create")
    ucreate.set_defaults(func=cmd_user_create)
    ulist = users.add_parser("list", help="list people")
    ulist.add_argument("--format", choices=["text", "json"], default="text")
    ulist.set_defaults(func=cmd_user_list)
    disable = users.add_parser("disable", help="disable a person and end their sessions")
    disable.add_argument("name")
    disable.add_argument("--reason", default="disabled with tollgate user disable")
    disable.set_defaults(func=cmd_user_disable)
    signout = users.add_parser("sign-out", help="end every session of a person")
    signout.add_argument("name")
    signout.add_argument("--reason", default="signed out with tollgate user sign-out")
    signout.set_defaults(func=cmd_user_sign_out)

    trail = sub.add_parser("audit", help="the audit trail: export as JSON lines, verify the hash chain")
    trails = trail.add_subparsers(dest="audit_command", required=True)
    export = trails.add_parser("export", help="write audit records as JSON lines")
    export.add_argument("--since", type=_time, metavar="TIME", help="ISO 8601, e.g. 2026-12-01T00:00:00Z")
    export.add_argument("--until", type=_time, metavar="TIME")
    export.add_argument("--action", choices=[a.value for a in AuditAction])
    export.add_argument("--target-prefix", metavar="PREFIX", help="e.g. team/app@ or token:")
    export.add_argument("--actor", metavar="ACTOR", help="e.g. user:alice or token:ci-bot")
    export.add_argument("--output", type=Path, metavar="FILE", help="default: stdout")
    export.set_defaults(func=cmd_audit_export)
    verify = trails.add_parser("verify", help="check the hash chain (exit 1 when broken)")
    verify.set_defaults(func=cmd_audit_verify)
