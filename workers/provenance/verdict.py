"""Tollgate's verdict as an in-toto Statement with the SLSA Verification Summary predicate, DSSE-signed.

The statement (shared/docs/PROTOCOLS.md §8) names the vetted digest as its subject and carries the VSA fields
(verifier id and version, time, policy and its digest, every input attestation, PASSED/FAILED) plus Tollgate's
own: verdict, action, explanation, ruleset version and digest, a findings summary, overrides (waivers) and the
provenance summary. The envelope is what ``cosign verify-attestation --key`` reads from a legacy ``.att`` layer:
``{"payloadType": "application/vnd.in-toto+json", "payload": b64(statement), "signatures": [{"keyid", "sig"}]}``
with the signature over PAE(payloadType, statement) (ECDSA P-256, SHA-256, DER).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from workers.domain import Action, Digest, Finding, Verdict
from workers.provenance.keys import SigningKey
from workers.signatures.intoto import IN_TOTO_PAYLOAD_TYPE
from workers.signatures.keyed import pae

STATEMENT_V1 = "https://in-toto.io/Statement/v1"
VSA_PREDICATE = "https://slsa.dev/verification_summary/v1"
PROVENANCE_PREDICATE = "https://tollgate.dev/attestations/image-provenance/v1"
TOLLGATE_VERSION = "0.1"
MAX_RULES_LISTED = 50


@dataclass(frozen=True)
class PolicyRef:
    """The policy the decision was taken under: where it lives and the sha256 of its text."""

    uri: str
    sha256: str


@dataclass(frozen=True)
class VerdictInput:
    """What the verdict statement says; everything comes from the stored record and settings."""

    registry: str  # host:port, as references name it
    repository: str
    digest: Digest
    verdict: Verdict
    action: Action
    explanation: str
    ruleset: str
    ruleset_sha256: str
    policy: PolicyRef
    verifier_id: str
    findings: Sequence[Finding]
    inputs: Sequence[Mapping[str, Any]]  # inputAttestations: {"uri", "digest"}
    signatures: Mapping[str, Any]  # the trust policy's conclusion (state, verified count)
    quarantined: bool
    provenance: Mapping[str, Any]  # the summary: source, commit, Dockerfile digest, what is missing


def canonical(document: Any) -> bytes:
    """Sorted, compact JSON: the exact bytes that get signed and hashed."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _findings_summary(findings: Sequence[Finding]) -> dict[str, Any]:
    counted = [f for f in findings if not f.waived]
    return {
        "total": len(findings),
        "counted": len(counted),
        "waived": len(findings) - len(counted),
        "by_severity": dict(sorted(Counter(f.severity.value for f in counted).items())),
        "rules": sorted({f.rule for f in counted})[:MAX_RULES_LISTED],
    }


def _resource(registry: str, repository: str) -> str:
    return f"{registry}/{repository}" if registry else repository


def verdict_statement(data: VerdictInput, *, now: datetime | None = None) -> dict[str, Any]:
    """The VSA in-toto Statement about ``data.digest``."""
    moment = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    algorithm, _, hexdigest = data.digest.partition(":")
    passed = data.action is not Action.QUARANTINE
    waivers = sorted({f.waiver_id for f in data.findings if f.waived and f.waiver_id is not None})
    name = _resource(data.registry, data.repository)
    return {
        "_type": STATEMENT_V1,
        "subject": [{"name": name, "digest": {algorithm: hexdigest}}],
        "predicateType": VSA_PREDICATE,
        "predicate": {
            "verifier": {"id": data.verifier_id, "version": {"tollgate": TOLLGATE_VERSION}},
            "timeVerified": moment.isoformat().replace("+00:00", "Z"),
            "resourceUri": f"{name}@{data.digest}",
            "policy": {"uri": data.policy.uri, "digest": {"sha256": data.policy.sha256}},
            "inputAttestations": [dict(i) for i in data.inputs],
            "verificationResult": "PASSED" if passed else "FAILED",
            # Tollgate does not grade SLSA build levels; a failure is ["FAILED"] as the spec asks.
            "verifiedLevels": [] if passed else ["FAILED"],
            "slsaVersion": "1.0",
            "tollgate": {
                "verdict": data.verdict.value,
                "action": data.action.value,
                "explanation": data.explanation,
                "ruleset": {"version": data.ruleset, "digest": {"sha256": data.ruleset_sha256}},
                "findings": _findings_summary(data.findings),
                "override": {"waivers": waivers, "quarantined": data.quarantined},
                "signatures": dict(data.signatures),
                "provenance": dict(data.provenance),
            },
        },
    }


def provenance_statement(
    registry: str, repository: str, digest: Digest, record: Mapping[str, Any], verifier_id: str
) -> dict[str, Any]:
    """The provenance record as an in-toto Statement about ``digest`` (what Tollgate observed, not a build claim)."""
    algorithm, _, hexdigest = digest.partition(":")
    return {
        "_type": STATEMENT_V1,
        "subject": [{"name": _resource(registry, repository), "digest": {algorithm: hexdigest}}],
        "predicateType": PROVENANCE_PREDICATE,
        "predicate": {"observer": {"id": verifier_id}, "record": dict(record)},
    }


def fingerprint(statement: Mapping[str, Any]) -> str:
    """sha256 of the statement without its time: equal fingerprints mean nothing to publish again."""
    predicate = dict(statement.get("predicate") or {})
    predicate.pop("timeVerified", None)
    return hashlib.sha256(canonical({**statement, "predicate": predicate})).hexdigest()


def sign_statement(statement: Mapping[str, Any], key: SigningKey) -> bytes:
    """The DSSE envelope (JSON bytes) of ``statement`` signed with ``key``."""
    payload = canonical(statement)
    signature = key.sign(pae(IN_TOTO_PAYLOAD_TYPE, payload))
    envelope = {
        "payloadType": IN_TOTO_PAYLOAD_TYPE,
        "payload": base64.b64encode(payload).decode("ascii"),
        # cosign writes an empty keyid and so does Tollgate: verifiers pick the key, not the envelope.
        "signatures": [{"keyid": "", "sig": base64.b64encode(signature).decode("ascii")}],
    }
    return canonical(envelope)
