"""The ``tollgate`` command line: scan, verify, attestation, serve, worker, migrate, reconcile, token, user, audit."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from workers.domain import Action, Digest, ScanStatus
from workers.errors import ConfigError, TollgateError
from workers.settings import Settings

if TYPE_CHECKING:
    from workers.policy import TrustPolicy

T = TypeVar("T")

EXIT_ALLOWED = 0
EXIT_BLOCKED = 1
EXIT_ERROR = 2


def _settings() -> Settings:
    return Settings.from_env()


def cmd_scan(args: argparse.Namespace) -> int:
    """Vet one image from a registry, an OCI layout or a docker archive, and print its record."""
    from workers.pipeline import NotAnImage, Vetter, load_scanners
    from workers.policy import cached_policy
    from workers.signatures.verify import verify_image
    from workers.sources import open_source
    from workers.store import ImageRecord

    settings = _settings()
    try:
        # --policy wins over TOLLGATE_POLICY_FILE; a bad file is an error (exit 2), never the default policy.
        policy = cached_policy(args.policy or settings.policy_file)
        scanners = load_scanners(
            settings.rules_dir,
            settings.rules_extra,
            protected_names=settings.protected_names,
            trusted_namespaces=settings.trusted_namespaces,
        )
        source, reference = open_source(args.ref, settings)
        try:
            vetter = Vetter(scanners, limits=settings.limits, policy=policy, signature_verifier=verify_image)
            report = vetter.vet(source, reference)
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()
    except NotAnImage as exc:
        _print_error(args, f"{args.ref}: {exc}")
        return EXIT_ERROR
    except TollgateError as exc:
        _print_error(args, f"{args.ref}: {exc.diagnostics()}")
        return EXIT_ERROR
    record = ImageRecord.from_report(report, tags=(), status=ScanStatus.DONE)
    if args.format == "json":
        json.dump(record.to_json(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _print_text(record.to_json())
    return EXIT_BLOCKED if report.action is Action.QUARANTINE else EXIT_ALLOWED


def _trust_from_flags(args: argparse.Namespace) -> TrustPolicy:
    """The cosign-like flags as a trust policy; ConfigError for a bad key file or an incomplete identity."""
    from workers.policy import TrustPolicy
    from workers.signatures.bundles import load_trusted_root
    from workers.signatures.identity import IdentityPolicy
    from workers.signatures.keys import load_public_key_file
    from workers.signatures.trustroot import load_trust_root

    keys = tuple(load_public_key_file(path) for path in args.key or ())
    identity_flags = (args.certificate_identity, args.certificate_identity_regexp, args.certificate_oidc_issuer)
    identities: tuple[IdentityPolicy, ...] = ()
    if any(flag is not None for flag in identity_flags):
        identities = (
            IdentityPolicy(
                issuer=args.certificate_oidc_issuer or "",
                subject=args.certificate_identity,
                subject_regexp=args.certificate_identity_regexp,
                workflow_repository=args.certificate_github_workflow_repository,
                workflow_ref=args.certificate_github_workflow_ref,
            ),
        )
    notation = None
    if args.notation_trust_store is not None:
        from workers.signatures.notation import load_trust_store, notation_trust

        certificates = load_trust_store(args.notation_trust_store)
        notation = notation_trust(certificates, args.notation_identity or ["*"], str(args.notation_trust_store))
    elif args.notation_identity:
        raise ConfigError("--notation-identity needs --notation-trust-store")
    if not keys and not identities and notation is None:
        raise ConfigError(
            "nothing to verify against: give --key FILE, or --certificate-identity[-regexp] with"
            " --certificate-oidc-issuer, or --notation-trust-store"
        )
    if args.trusted_root is not None:
        load_trust_root(args.trusted_root)  # both views, so a bad file is an error (2) and not "unverified" (1)
        load_trusted_root(args.trusted_root)
    return TrustPolicy(
        required=True, keys=keys, identities=identities, trusted_root=args.trusted_root, notation=notation
    )


def cmd_verify(args: argparse.Namespace) -> int:
    """Verify the signatures of one registry image against the given signers and print every check."""
    from workers.signatures.verify import verify_image

    settings = _settings()
    if args.ref.startswith(("oci:", "docker-archive:")):
        _print_error(args, f"{args.ref}: verify reads signatures from a registry; local sources carry none")
        return EXIT_ERROR
    try:
        trust = _trust_from_flags(args)
        repository, digest, report = _check_in_registry(
            args.ref, settings, lambda client, repo, found: verify_image(client, repo, found, trust)
        )
    except TollgateError as exc:
        _print_error(args, f"{args.ref}: {exc.diagnostics()}")
        return EXIT_ERROR
    result = {
        "reference": args.ref,
        "repository": repository,
        "digest": digest,
        "verified": report.satisfied,
        "checks": [check.to_json() for check in report.checks],
        "notes": [{"where": note.where, "reason": note.reason} for note in report.notes],
    }
    if args.format == "json":
        json.dump(result, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(f"{repository}@{digest}: {'verified' if report.satisfied else 'NOT verified'}")
        for check in report.checks:
            mark = "ok  " if check.verified else "FAIL"
            print(f"  {mark} {check.kind.value} {check.source}")
            print(f"       {check.reason}")
        for note in report.notes:
            print(f"  note {note.where}: {note.reason}")
        if not report.checks:
            print("  no signatures or attestations found")
    return EXIT_ALLOWED if report.satisfied else EXIT_BLOCKED


def cmd_attestation_verify(args: argparse.Namespace) -> int:
    """Fetch Tollgate's verdict attestation of one registry image and verify it with a public key."""
    from workers.provenance.keys import load_signing_key
    from workers.provenance.verify import verify_verdict
    from workers.signatures.keys import load_public_key, load_public_key_file

    settings = _settings()
    if args.ref.startswith(("oci:", "docker-archive:")):
        _print_error(args, f"{args.ref}: verdict attestations live in a registry; local sources carry none")
        return EXIT_ERROR
    try:
        if args.key:
            keys = [load_public_key_file(path) for path in args.key]
        else:  # this Tollgate's own key (what GET /api/v1/keys serves)
            keys = [load_public_key(load_signing_key(settings.signing_key).public_pem, "tollgate")]
        repository, digest, result = _check_in_registry(
            args.ref, settings, lambda client, repo, found: verify_verdict(client, repo, found, keys)
        )
    except TollgateError as exc:
        _print_error(args, f"{args.ref}: {exc.diagnostics()}")
        return EXIT_ERROR
    if args.format == "json":
        document = {
            "reference": args.ref,
            "repository": repository,
            "digest": digest,
            "verified": result.verified,
            "checks": [check.to_json() for check in result.checks],
        }
        json.dump(document, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(f"{repository}@{digest}: verdict attestation {'verified' if result.verified else 'NOT verified'}")
        for check in result.checks:
            print(f"  {'ok  ' if check.verified else 'FAIL'} {check.source}")
            print(f"       {check.reason}")
        if not result.checks:
            print("  no Tollgate verdict attestation found")
    return EXIT_ALLOWED if result.verified else EXIT_BLOCKED


def _check_in_registry(ref: str, settings: Settings, check: Callable[[Any, str, Digest], T]) -> tuple[str, Digest, T]:
    """Resolve ``ref`` in the registry and run ``check(client, repository, digest)``; the connection is closed after."""
    from workers.sources import RegistrySource, open_source

    source, reference = open_source(ref, settings)
    assert isinstance(source, RegistrySource)
    try:
        digest = source.get_manifest(reference).digest
        return source.repository, digest, check(source.client, source.repository, digest)
    finally:
        source.close()


def _print_error(args: argparse.Namespace, message: str) -> None:
    if getattr(args, "format", "text") == "json":
        json.dump({"status": "error", "error": message}, sys.stdout)
        sys.stdout.write("\n")
    print(f"tollgate: error: {message}", file=sys.stderr)


def _print_text(record: dict[str, object]) -> None:
    print(f"{record['repository']}@{record['digest']}")
    print(f"  verdict: {record['verdict']}  action: {record['action']}  ruleset: {record['ruleset']}")
    if record.get("explanation"):
        print(f"  why: {record['explanation']}")
    findings = record.get("findings") or []
    assert isinstance(findings, list)
    for f in findings:
        where = f.get("path") or "(config)"
        final = "" if f.get("in_final_fs") is not False else " [deleted in a later layer]"
        print(f"  - {f['severity']:<8} {f['rule']}  {where}{final}")
        if f.get("step"):
            print(f"      step: {str(f['step'])[:120]}")
        if f.get("evidence"):
            print(f"      evidence: {f['evidence']}")
    errors = record.get("errors") or []
    assert isinstance(errors, list)
    for e in errors:
        print(f"  ! {e}")


def _check_policy(settings: Settings) -> None:
    """Refuse to start on a policy or rule pack that does not load, rather than fail every scan later."""
    from workers.pipeline import load_scanners
    from workers.policy import cached_policy

    cached_policy(settings.policy_file)
    _take_in_policy(settings)
    # Compiles the shipped rules and every TOLLGATE_RULES_EXTRA pack; a compile error names file and line.
    load_scanners(settings.rules_dir, settings.rules_extra)


def _take_in_policy(settings: Settings) -> None:
    """Record an edited TOLLGATE_POLICY_FILE as the newest policy version, and check the version in force parses.

    Skipped (the first job does it) when the database is not reachable or not migrated yet.
    """
    from workers.errors import StoreUnavailable
    from workers.policy_versions import effective_policy
    from workers.store import Store

    store = Store.from_settings(settings)
    try:
        effective_policy(store, settings)
    except StoreUnavailable as exc:
        logging.getLogger(__name__).warning("policy versions not checked at start: %s", exc)
    finally:
        store.close()


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the web app (webhook, API, pages) with waitress."""
    from waitress import serve

    from service import create_app

    settings = _settings()
    _check_policy(settings)
    addr = args.addr or settings.http_addr
    host, _, port = addr.rpartition(":")
    app = create_app(settings)
    print(f"tollgate: serving on http://{addr}", flush=True)
    serve(app, host=host.strip("[]") or "127.0.0.1", port=int(port), threads=8, ident="tollgate")
    return EXIT_ALLOWED


def cmd_worker(args: argparse.Namespace) -> int:
    """Run an rq worker on the push and rescan queues."""
    from workers.queue import run_worker

    settings = _settings()
    _check_policy(settings)
    run_worker(settings, burst=args.burst, with_scheduler=not args.no_scheduler, simple=args.simple)
    return EXIT_ALLOWED


def cmd_migrate(_args: argparse.Namespace) -> int:
    """Create or upgrade the database schema."""
    from workers.store import Store

    store = Store.from_settings(_settings())
    store.migrate()
    store.close()
    print("tollgate: database is up to date")
    return EXIT_ALLOWED


def cmd_reconcile(_args: argparse.Namespace) -> int:
    """List the registry and enqueue every image never vetted under the current ruleset."""
    import redis

    from rules.loader import ruleset_version
    from workers.reconcile import reconcile
    from workers.registry import RegistryClient
    from workers.store import Store

    settings = _settings()
    store = Store.from_settings(settings)
    with RegistryClient.from_settings(settings) as client:
        report = reconcile(
            settings,
            client=client,
            store=store,
            redis_conn=redis.Redis.from_url(settings.redis_url),
            ruleset=ruleset_version(settings.rules_dir, settings.rules_extra),
        )
    print(json.dumps(report.to_json(), default=str))
    return EXIT_ERROR if report.errors else EXIT_ALLOWED


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, exposed for tests and docs."""
    parser = argparse.ArgumentParser(prog="tollgate", description="Registry-side container image vetting.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug output")
    sub = parser.add_subparsers(dest="command", required=True)

    scan = sub.add_parser("scan", help="vet one image and print its record (exit 0 allowed, 1 blocked, 2 error)")
    scan.add_argument("ref", help="host:port/repo:tag, repo@sha256:…, oci:<dir>[:<ref>] or docker-archive:<file>")
    scan.add_argument("--format", choices=["text", "json"], default="text")
    scan.add_argument("--policy", type=Path, metavar="FILE", help="policy YAML (default TOLLGATE_POLICY_FILE)")
    scan.set_defaults(func=cmd_scan)

    verify = sub.add_parser(
        "verify", help="verify an image's cosign or Notation signatures (exit 0 verified, 1 not verified, 2 error)"
    )
    verify.add_argument("ref", help="host:port/repo:tag or repo[:tag|@sha256:…] in TOLLGATE_REGISTRY_URL")
    verify.add_argument("--key", action="append", type=Path, metavar="FILE", help="cosign public key (repeatable)")
    verify.add_argument("--certificate-identity", metavar="SUBJECT", help="keyless: exact certificate subject")
    verify.add_argument(
        "--certificate-identity-regexp", metavar="REGEXP", help="keyless: subject regexp (matches the whole subject)"
    )
    verify.add_argument("--certificate-oidc-issuer", metavar="URL", help="keyless: the OIDC issuer (required)")
    verify.add_argument("--certificate-github-workflow-repository", metavar="OWNER/REPO")
    verify.add_argument("--certificate-github-workflow-ref", metavar="REF")
    verify.add_argument(
        "--trusted-root", type=Path, metavar="FILE", help="trusted_root.json (default: Sigstore production, offline)"
    )
    verify.add_argument(
        "--notation-trust-store", type=Path, metavar="PEM", help="Notation: root CA certificates (file or directory)"
    )
    verify.add_argument(
        "--notation-identity",
        action="append",
        metavar="SUBJECT",
        help='Notation: trusted X.509 subject, e.g. "C=US, O=Acme, CN=release" (repeatable; default "*")',
    )
    verify.add_argument("--format", choices=["text", "json"], default="text")
    verify.set_defaults(func=cmd_verify)

    attestation = sub.add_parser("attestation", help="Tollgate's signed verdict attestations")
    attestation_sub = attestation.add_subparsers(dest="attestation_command", required=True)
    att_verify = attestation_sub.add_parser(
        "verify", help="verify an image's Tollgate verdict attestation (exit 0 verified, 1 not verified, 2 error)"
    )
    att_verify.add_argument("ref", help="host:port/repo:tag or repo[:tag|@sha256:…] in TOLLGATE_REGISTRY_URL")
    att_verify.add_argument(
        "--key", action="append", type=Path, metavar="PEM", help="public key (default: TOLLGATE_SIGNING_KEY's)"
    )
    att_verify.add_argument("--format", choices=["text", "json"], default="text")
    att_verify.set_defaults(func=cmd_attestation_verify)

    serve = sub.add_parser("serve", help="serve the webhook, API and pages")
    serve.add_argument("--addr", help="host:port (default TOLLGATE_HTTP_ADDR)")
    serve.set_defaults(func=cmd_serve)

    worker = sub.add_parser("worker", help="run a vetting worker")
    worker.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    worker.add_argument("--simple", action="store_true", help="run jobs in-process (no fork)")
    worker.add_argument("--no-scheduler", action="store_true", help="do not run delayed retries/reconciler here")
    worker.set_defaults(func=cmd_worker)

    migrate = sub.add_parser("migrate", help="create or upgrade the database schema")
    migrate.set_defaults(func=cmd_migrate)

    rec = sub.add_parser("reconcile", help="enqueue images whose push notifications were lost")
    rec.set_defaults(func=cmd_reconcile)

    from workers.cli_accounts import add_commands

    add_commands(sub)  # token, user, audit
    from workers.cli_policy import add_commands as add_policy_commands

    add_policy_commands(sub)  # policy, waiver
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tollgate`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        code: int = args.func(args)
    except TollgateError as exc:
        print(f"tollgate: error: {exc.diagnostics()}", file=sys.stderr)
        return EXIT_ERROR
    return code


if __name__ == "__main__":
    sys.exit(main())
