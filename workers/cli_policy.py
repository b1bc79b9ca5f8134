"""The ``tollgate policy`` and ``tollgate waiver`` subcommands (wired into workers/cli.py)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from workers.errors import ActionRefused, ConfigError, QueueUnavailable
from workers.settings import Settings
from workers.store import Store

EXIT_OK = 0
EXIT_ERROR = 2


@contextmanager
def _opened() -> Iterator[tuple[Settings, Store]]:
    settings = Settings.from_env()
    store = Store.from_settings(settings)
    store.migrate()
    try:
        yield settings, store
    finally:
        store.close()


def _fail(message: str) -> int:
    print(f"tollgate: error: {message}", file=sys.stderr)
    return EXIT_ERROR


def _queue_redecisions(settings: Settings, what: str, schedule: Callable[[Any], int]) -> None:
    """Queue re-decisions; when Redis is down the periodic reconciler does it, so only warn."""
    import redis

    from workers.queue import redis_connection

    conn = redis_connection(settings)
    try:
        count = schedule(conn)
        print(f"tollgate: {count} image(s) queued for a new decision ({what})", file=sys.stderr)
    except (QueueUnavailable, redis.RedisError) as exc:
        print(f"tollgate: warning: re-decisions not queued ({exc}); the reconciler queues them", file=sys.stderr)
    finally:
        conn.close()


# -- policy ------------------------------------------------------------------------------------------------------


def cmd_policy_show(args: argparse.Namespace) -> int:
    """Print the policy text in force (or its record with --format json)."""
    from workers.policy_versions import current_policy

    with _opened() as (settings, store):
        version = current_policy(store, settings)
    if args.format == "json":
        print(json.dumps(version.to_json() if version else None, indent=2))
    elif version is None:
        print("# no policy stored: the built-in default applies", file=sys.stderr)
    else:
        print(f"# version {version.id} ({version.source}, {version.actor}): {version.reason}", file=sys.stderr)
        sys.stdout.write(version.text)
    return EXIT_OK


def cmd_policy_history(args: argparse.Namespace) -> int:
    """List the stored versions, newest first."""
    from workers.policy_versions import policy_history

    with _opened() as (_settings, store):
        versions = policy_history(store, args.limit)
    if args.format == "json":
        print(json.dumps([v.to_json() for v in versions], indent=2))
        return EXIT_OK
    for v in versions:
        print(f"{v.id}\t{v.to_json()['created_at']}\t{v.source}\t{v.actor}\t{v.digest[:19]}\t{v.reason}")
    return EXIT_OK


def cmd_policy_set(args: argparse.Namespace) -> int:
    """Make a YAML file's content the policy in force (validated, audited) and re-decide decided images."""
    from workers.cli_accounts import cli_actor
    from workers.policy_versions import schedule_policy_redecisions, set_policy

    try:
        text = Path(args.file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return _fail(f"{args.file}: cannot read it: {exc}")
    with _opened() as (settings, store):
        try:
            version = set_policy(store, cli_actor(), text, args.reason, settings=settings)
        except ConfigError as exc:
            return _fail(exc.diagnostics())
        except ValueError as exc:
            return _fail(str(exc))
        print(json.dumps(version.to_json() | {"text": None}))
        _queue_redecisions(
            settings, f"policy version {version.id}", lambda conn: schedule_policy_redecisions(settings, store, conn)
        )
    return EXIT_OK


# -- waivers -----------------------------------------------------------------------------------------------------


def cmd_waiver_list(args: argparse.Namespace) -> int:
    """List waivers (active ones, or every one with --all)."""
    from workers.waivers import list_waivers

    with _opened() as (_settings, store):
        found = list_waivers(store, include_inactive=args.all)
        now = store.now()
    if args.format == "json":
        print(json.dumps([w.to_json(now) for w in found], indent=2))
        return EXIT_OK
    for w in found:
        print(f"{w.id}\t{w.state(now)}\t{w.to_json(now)['expires_at']}\t{w.scope()}\t{w.created_by}\t{w.reason}")
    return EXIT_OK


def _expiry(args: argparse.Namespace, now: datetime) -> datetime:
    if args.expires_at:
        moment = datetime.fromisoformat(args.expires_at.replace("Z", "+00:00"))
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return now + timedelta(days=args.expires_in)


def cmd_waiver_create(args: argparse.Namespace) -> int:
    """Waive one rule's findings within a scope until an expiry; prints the waiver."""
    from workers.cli_accounts import cli_actor
    from workers.waivers import create_waiver, schedule_redecisions

    with _opened() as (settings, store):
        try:
            waiver = create_waiver(
                store,
                cli_actor(),
                rule=args.rule,
                reason=args.reason,
                expires_at=_expiry(args, store.now()),
                repository_pattern=args.repository,
                digest=args.digest,
                path_pattern=args.path,
                max_days=settings.waiver_max_days,
            )
        except ValueError as exc:
            return _fail(str(exc))
        print(json.dumps(waiver.to_json(store.now())))
        _queue_redecisions(
            settings, f"waiver {waiver.id}", lambda conn: schedule_redecisions(settings, store, conn, waiver)
        )
    return EXIT_OK


def cmd_waiver_revoke(args: argparse.Namespace) -> int:
    """Revoke a waiver now; the images it covered are decided again."""
    from workers.cli_accounts import cli_actor
    from workers.waivers import revoke_waiver, schedule_redecisions

    with _opened() as (settings, store):
        try:
            waiver = revoke_waiver(store, cli_actor(), args.id, args.reason)
        except (LookupError, ValueError) as exc:
            return _fail(str(exc))
        except ActionRefused as exc:
            return _fail(exc.diagnostics())
        print(json.dumps(waiver.to_json(store.now())))
        _queue_redecisions(
            settings, f"waiver {waiver.id}", lambda conn: schedule_redecisions(settings, store, conn, waiver)
        )
    return EXIT_OK


def add_commands(sub: Any) -> None:
    """Add ``policy`` and ``waiver`` to the ``tollgate`` subcommands."""
    policy = sub.add_parser("policy", help="the policy in force, its history, and changing it")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True)
    show = policy_sub.add_parser("show", help="print the policy in force")
    show.add_argument("--format", choices=["text", "json"], default="text")
    show.set_defaults(func=cmd_policy_show)
    history = policy_sub.add_parser("history", help="list policy versions, newest first")
    history.add_argument("--limit", type=int, default=20)
    history.add_argument("--format", choices=["text", "json"], default="text")
    history.set_defaults(func=cmd_policy_history)
    setter = policy_sub.add_parser("set", help="make FILE's YAML the policy in force (validated and audited)")
    setter.add_argument("file", type=Path)
    setter.add_argument("--reason", required=True, help="recorded in the audit trail")
    setter.set_defaults(func=cmd_policy_set)

    waiver = sub.add_parser("waiver", help="waive a rule's findings within a scope, until an expiry")
    waiver_sub = waiver.add_subparsers(dest="waiver_command", required=True)
    listing = waiver_sub.add_parser("list", help="list active waivers")
    listing.add_argument("--all", action="store_true", help="include revoked and expired waivers")
    listing.add_argument("--format", choices=["text", "json"], default="text")
    listing.set_defaults(func=cmd_waiver_list)
    create = waiver_sub.add_parser("create", help="create a waiver")
    create.add_argument("rule", help="rule id, e.g. miner.xmrig-config")
    create.add_argument("--reason", required=True, help="why; recorded in the audit trail")
    when = create.add_mutually_exclusive_group(required=True)
    when.add_argument("--expires-at", metavar="ISO8601", help="e.g. 2026-06-30T00:00:00Z")
    when.add_argument("--expires-in", type=int, metavar="DAYS")
    create.add_argument("--repository", metavar="GLOB", help="only repositories matching, e.g. 'team/**'")
    create.add_argument("--digest", metavar="sha256:…", help="only this image")
    create.add_argument("--path", metavar="GLOB", help="only findings at matching paths, e.g. '/opt/**'")
    create.set_defaults(func=cmd_waiver_create)
    revoke = waiver_sub.add_parser("revoke", help="revoke a waiver")
    revoke.add_argument("id", type=int)
    revoke.add_argument("--reason", required=True)
    revoke.set_defaults(func=cmd_waiver_revoke)
