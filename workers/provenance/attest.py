"""After a decision is stored: build the provenance and verdict statements, sign them, publish them, record it.

Called at the end of every job that decided (workers/jobs.py ``finish_decision``). Publishing never changes
the verdict and never fails the job: the registry client retries transient failures inline, and what still
fails is recorded on the image (``provenance.publication``) and published by the next re-evaluation, which
finds the registry without the current verdict.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from workers.domain import Digest
from workers.errors import TollgateError
from workers.provenance.keys import SigningKey, load_or_create_signing_key
from workers.provenance.publish import PROVENANCE_ARTIFACT_TYPE, VERDICT_ARTIFACT_TYPE, Attestation, Publisher
from workers.provenance.verdict import (
    PROVENANCE_PREDICATE,
    VSA_PREDICATE,
    PolicyRef,
    VerdictInput,
    canonical,
    fingerprint,
    provenance_statement,
    sign_statement,
    verdict_statement,
)
from workers.registry import RegistryClient
from workers.settings import Settings
from workers.store import ImageRecord, Store

log = logging.getLogger(__name__)


def verifier_id(settings: Settings) -> str:
    """The VSA ``verifier.id`` of this Tollgate: its public URL (where its key is served)."""
    return settings.public_url.rstrip("/") + "/"


def ruleset_sha256(settings: Settings) -> str:
    """sha256 over every rule file (names and bytes), the full digest behind the short ruleset version."""
    from rules.loader import _rule_files  # the same file list the version hashes

    digest = hashlib.sha256()
    for name, path in _rule_files(settings.rules_dir, settings.rules_extra):
        data = path.read_bytes()
        digest.update(name.encode() + b"\0" + len(data).to_bytes(8, "big") + data)
    return digest.hexdigest()


def policy_ref(settings: Settings, store: Store, repository: str) -> PolicyRef:
    """The policy version in force and its text digest; the built-in default policy when there is none."""
    base = settings.public_url.rstrip("/")
    try:
        from workers.policy_versions import current_policy

        version = current_policy(store, settings)
    except ImportError:  # pragma: no cover - policy versions ship with the security-team work
        version = None
    if version is not None:
        return PolicyRef(f"{base}/api/v1/policy/versions/{version.id}", version.digest.removeprefix("sha256:"))
    from workers.policy import Policy

    default = canonical(Policy().for_repository(repository).to_json())
    return PolicyRef(f"{base}/api/v1/policy#built-in-default", hashlib.sha256(default).hexdigest())


def _inputs(record: ImageRecord, registry: str) -> list[dict[str, Any]]:
    """Every attestation the decision read: verified signed attestations and the provenance statements."""
    out: dict[str, dict[str, Any]] = {}
    for check in record.signatures:
        if not check.get("verified") or not check.get("predicate_type"):
            continue
        source = str(check.get("source") or "")
        digest = source.split("@", 1)[-1].split("#", 1)[0]
        uri = f"{registry}/{record.repository}@{digest}" if digest.startswith("sha256:") else source
        entry: dict[str, Any] = {"uri": uri}
        if digest.startswith("sha256:"):
            entry["digest"] = {"sha256": digest.removeprefix("sha256:")}
        out[uri] = entry
    for statement in record.provenance.get("inputs") or []:
        if not isinstance(statement, Mapping) or statement.get("signed"):
            continue  # signed ones are among the signature checks above
        where = str(statement.get("uri") or "")
        uri = f"{registry}/{record.repository}@{where}" if where.startswith("sha256:") else where
        out.setdefault(uri, {"uri": uri, "digest": dict(statement.get("digest") or {})})
    return list(out.values())


def _provenance_summary(provenance: Mapping[str, Any]) -> dict[str, Any]:
    dockerfile = provenance.get("dockerfile") or {}
    return {
        "source": provenance.get("source"),
        "builder": provenance.get("builder"),
        "dockerfile": {
            "path": dockerfile.get("path"),
            "sha256": dockerfile.get("sha256"),
            "matches_history": dockerfile.get("matches_history"),
        },
        "missing": list(provenance.get("missing") or []),
    }


def _signature_summary(signatures: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {
        "checked": len(signatures),
        "verified": sum(1 for s in signatures if s.get("verified")),
        "kinds": sorted({str(s.get("kind")) for s in signatures if s.get("verified")}),
    }


def build_attestations(
    settings: Settings, store: Store, record: ImageRecord, key: SigningKey
) -> tuple[Attestation, Attestation]:
    """The signed verdict and provenance attestations of a decided ``record``."""
    assert record.verdict is not None and record.action is not None
    registry = settings.registry_host
    provenance = {k: v for k, v in record.provenance.items() if k != "publication"}
    data = VerdictInput(
        registry=registry,
        repository=record.repository,
        digest=record.digest,
        verdict=record.verdict,
        action=record.action,
        explanation=record.explanation,
        ruleset=record.ruleset or "",
        ruleset_sha256=ruleset_sha256(settings),
        policy=policy_ref(settings, store, record.repository),
        verifier_id=verifier_id(settings),
        findings=record.findings,
        inputs=_inputs(record, registry),
        signatures=_signature_summary(record.signatures),
        quarantined=record.quarantined,
        provenance=_provenance_summary(provenance),
    )
    verdict = verdict_statement(data)
    observed = provenance_statement(registry, record.repository, record.digest, provenance, verifier_id(settings))
    return (
        Attestation(
            "verdict", VERDICT_ARTIFACT_TYPE, VSA_PREDICATE, sign_statement(verdict, key), fingerprint(verdict)
        ),
        Attestation(
            "provenance",
            PROVENANCE_ARTIFACT_TYPE,
            PROVENANCE_PREDICATE,
            sign_statement(observed, key),
            fingerprint(observed),
        ),
    )


def publish_decision(settings: Settings, store: Store, repository: str, digest: Digest) -> dict[str, Any]:
    """Publish the attestations of the stored decision of ``repository@digest``; the outcome, also recorded.

    Only a verdict whose content changed (or that is a day old) is pushed: Tollgate's own pushes notify the
    webhook, which re-evaluates the image, and that re-evaluation ends here instead of publishing forever.
    """
    if not settings.publish_attestations:
        return {"status": "disabled"}
    record = store.get_record(repository, digest)
    if record is None or record.verdict is None or record.action is None:
        return {"status": "skipped", "reason": "no decided record"}
    try:
        key = load_or_create_signing_key(settings.signing_key)
        verdict, provenance = build_attestations(settings, store, record, key)
        with RegistryClient.from_settings(settings) as client:
            outcome = Publisher(client, repository, digest, key=key.public).publish((verdict, provenance), force=False)
    except TollgateError as exc:
        log.warning("%s@%s: attestations not published: %s", repository, digest, exc.diagnostics())
        failure = {"status": "failed", "error": exc.diagnostics(), "retried": exc.transient}
        store.set_publication(repository, digest, failure)
        return failure
    result = outcome.to_json()
    # Recorded in both cases: a rescan's record starts from a fresh provenance without it.
    store.set_publication(repository, digest, {**result, "status": "published", "key_id": key.key_id})
    if outcome.status != "unchanged":
        log.info("%s@%s: verdict attestation published (%s)", repository, digest, outcome.referrers)
    return result
