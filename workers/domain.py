"""Typed domain of Tollgate: digests, references, findings, verdicts and the image record."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, NewType

if TYPE_CHECKING:  # the signature model imports this module; only the annotation needs it
    from workers.signatures.model import SignatureCheck

Digest = NewType("Digest", str)
"""A content digest such as ``sha256:<64 hex>``; only built by :func:`parse_digest` or :func:`sha256_digest`."""

_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$|^sha512:[0-9a-f]{128}$")
# distribution's repository grammar: path components of lowercase alnum joined by separators.
_REPOSITORY_RE = re.compile(r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$")
_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_HOST_RE = re.compile(rf"^{_HOST_LABEL}(?:\.{_HOST_LABEL})*(?::[0-9]{{1,5}})?$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")


def parse_digest(value: str) -> Digest:
    """Validate ``value`` as a digest string and return it typed; raise ValueError otherwise."""
    if not isinstance(value, str) or not _DIGEST_RE.match(value):
        raise ValueError(f"not a valid digest: {str(value)[:80]!r}")
    return Digest(value)


def sha256_digest(data: bytes) -> Digest:
    """The sha256 digest of ``data`` in ``sha256:<hex>`` form."""
    return Digest("sha256:" + hashlib.sha256(data).hexdigest())


def is_repository_name(value: str) -> bool:
    """True when ``value`` follows distribution's repository name grammar (max 255 chars)."""
    return isinstance(value, str) and len(value) <= 255 and bool(_REPOSITORY_RE.match(value))


def is_tag(value: str) -> bool:
    """True when ``value`` is a valid OCI tag."""
    return isinstance(value, str) and bool(_TAG_RE.match(value))


class MediaType(StrEnum):
    """Media types Tollgate reads."""

    OCI_INDEX = "application/vnd.oci.image.index.v1+json"
    OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
    DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
    DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
    OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
    DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
    OCI_EMPTY = "application/vnd.oci.empty.v1+json"


INDEX_MEDIA_TYPES = frozenset({MediaType.OCI_INDEX, MediaType.DOCKER_LIST})
IMAGE_MANIFEST_MEDIA_TYPES = frozenset({MediaType.OCI_MANIFEST, MediaType.DOCKER_MANIFEST})
MANIFEST_MEDIA_TYPES = INDEX_MEDIA_TYPES | IMAGE_MANIFEST_MEDIA_TYPES
IMAGE_CONFIG_MEDIA_TYPES = frozenset({MediaType.OCI_CONFIG, MediaType.DOCKER_CONFIG})
MANIFEST_ACCEPT = ", ".join(
    [MediaType.OCI_INDEX, MediaType.OCI_MANIFEST, MediaType.DOCKER_LIST, MediaType.DOCKER_MANIFEST]
)


class ScanStatus(StrEnum):
    """Where an image is in the vetting pipeline."""

    QUEUED = "queued"
    SCANNING = "scanning"
    DONE = "done"
    ERROR = "error"


class Verdict(StrEnum):
    """What the findings say about an image."""

    CLEAN = "clean"
    SUSPICIOUS = "suspicious"
    MALICIOUS = "malicious"


class Action(StrEnum):
    """What policy does with a verdict."""

    ALLOW = "allow"
    WARN = "warn"
    QUARANTINE = "quarantine"


class Role(StrEnum):
    """What a person or a machine may do; each role includes the ones before it."""

    VIEWER = "viewer"  # read records, findings, the audit trail
    DEVELOPER = "developer"  # and rescan images of the repositories the credential is scoped to
    SECURITY = "security"  # and release, quarantine, waive findings and change policy

    def allows(self, needed: Role) -> bool:
        """True when this role includes ``needed``."""
        return _ROLE_RANK[self] >= _ROLE_RANK[needed]


_ROLE_RANK = {Role.VIEWER: 0, Role.DEVELOPER: 1, Role.SECURITY: 2}


class ActorKind(StrEnum):
    """Who acted: Tollgate itself, a machine with an API token, or a person."""

    SYSTEM = "system"
    TOKEN = "token"  # noqa: S105 - a kind of actor, not a secret
    USER = "user"


@dataclass(frozen=True)
class Actor:
    """The author of an action, as the audit trail names it (``token:ci-bot``, ``user:alice``, ``system:worker``)."""

    kind: ActorKind
    name: str
    role: Role | None = None
    repositories: tuple[str, ...] = ()  # glob patterns a scoped credential is limited to; empty means all

    def __str__(self) -> str:
        return f"{self.kind.value}:{self.name}"


SYSTEM_ACTOR = Actor(ActorKind.SYSTEM, "tollgate")


class MoveKind(StrEnum):
    """A registry move of an image: out of service into the quarantine repository, or back."""

    QUARANTINE = "quarantine"
    RELEASE = "release"


class Severity(StrEnum):
    """How bad a finding is if true."""

    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """Ordering key: info < low < medium < high < critical."""
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {
    Severity.INFO: 0,
    Severity.LOW: 1,
    Severity.MEDIUM: 2,
    Severity.HIGH: 3,
    Severity.CRITICAL: 4,
}


class Confidence(StrEnum):
    """How specific a rule is to malice (how rarely it fires on benign content)."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class Category(StrEnum):
    """What kind of harm a finding points at."""

    MINER = "miner"
    BACKDOOR = "backdoor"
    PERSISTENCE = "persistence"
    HOST_ESCAPE = "host-escape"
    WORM = "worm"
    CREDENTIAL_THEFT = "credential-theft"
    DEFENSE_EVASION = "defense-evasion"
    DOS = "dos"
    PUA = "pua"
    SECRET = "secret"  # noqa: S105 - a category name, not a credential
    INTEGRITY = "integrity"  # the image itself is malformed or hostile to the scanner


@dataclass(frozen=True)
class Platform:
    """An OS/architecture pair from an index entry or an image config."""

    os: str
    architecture: str
    variant: str | None = None

    def __str__(self) -> str:
        base = f"{self.os}/{self.architecture}"
        return f"{base}/{self.variant}" if self.variant else base

    @property
    def runnable(self) -> bool:
        """False for BuildKit attestation entries (``unknown/unknown``)."""
        return not (self.os == "unknown" or self.architecture == "unknown")


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor."""

    media_type: str
    digest: Digest
    size: int
    platform: Platform | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)
    artifact_type: str | None = None
    urls: tuple[str, ...] = ()


@dataclass(frozen=True)
class ImageReference:
    """A parsed registry reference ``[host[:port]/]repository[:tag][@digest]``."""

    registry: str | None
    repository: str
    tag: str | None = None
    digest: Digest | None = None

    @property
    def reference(self) -> str:
        """The tag or digest to ask the registry for (digest wins)."""
        if self.digest:
            return self.digest
        return self.tag or "latest"

    def __str__(self) -> str:
        head = f"{self.registry}/{self.repository}" if self.registry else self.repository
        if self.digest:
            return f"{head}@{self.digest}"
        return f"{head}:{self.tag or 'latest'}"


def parse_reference(text: str) -> ImageReference:
    """Parse ``host:port/repo:tag``, ``repo@sha256:…`` and friends; raise ValueError when malformed."""
    if not text or len(text) > 1024 or any(c.isspace() for c in text):
        raise ValueError(f"not an image reference: {text[:80]!r}")
    rest = text
    digest: Digest | None = None
    if "@" in rest:
        rest, _, raw_digest = rest.partition("@")
        digest = parse_digest(raw_digest)
    registry: str | None = None
    first, sep, remainder = rest.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        if not _HOST_RE.match(first):
            raise ValueError(f"not a valid registry host: {first[:80]!r}")
        registry, rest = first, remainder
    tag: str | None = None
    last_slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > last_slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not is_tag(tag):
            raise ValueError(f"not a valid tag: {tag[:80]!r}")
    if not is_repository_name(rest):
        raise ValueError(f"not a valid repository name: {rest[:80]!r}")
    return ImageReference(registry=registry, repository=rest, tag=tag, digest=digest)


@dataclass(frozen=True)
class Finding:
    """One thing a scanner saw, attributed to where it came from in the image."""

    rule: str
    severity: Severity
    category: Category
    message: str
    confidence: Confidence = Confidence.MEDIUM
    attack: str | None = None
    layer: Digest | None = None
    step: str | None = None
    path: str | None = None
    in_final_fs: bool | None = None
    evidence: str | None = None
    platform: str | None = None
    waived: bool = False  # a waiver matched at decision time: still shown, no longer counted
    waiver_id: int | None = None  # which waiver (workers/waivers.py), when waived

    def to_json(self) -> dict[str, Any]:
        """The API representation (ARCHITECTURE.md §3)."""
        return {
            "rule": self.rule,
            "severity": self.severity.value,
            "confidence": self.confidence.value,
            "category": self.category.value,
            "attack": self.attack,
            "message": self.message,
            "layer": self.layer,
            "step": self.step,
            "path": self.path,
            "in_final_fs": self.in_final_fs,
            "evidence": self.evidence,
            "platform": self.platform,
            "waived": self.waived,
            "waiver_id": self.waiver_id,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Finding:
        """Inverse of :meth:`to_json` for rows the store wrote itself."""
        layer = data.get("layer")
        return cls(
            rule=str(data["rule"]),
            severity=Severity(data["severity"]),
            category=Category(data["category"]),
            message=str(data.get("message") or ""),
            confidence=Confidence(data.get("confidence") or Confidence.MEDIUM),
            attack=data.get("attack"),
            layer=Digest(layer) if layer else None,
            step=data.get("step"),
            path=data.get("path"),
            in_final_fs=data.get("in_final_fs"),
            evidence=data.get("evidence"),
            platform=data.get("platform"),
            waived=bool(data.get("waived", False)),
            waiver_id=_optional_int(data.get("waiver_id")),
        )


def _optional_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def clip_evidence(text: str | bytes, limit: int = 200) -> str:
    """A short, printable excerpt for a finding; never the whole payload."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    cleaned = "".join(c if c.isprintable() or c == " " else "." for c in text)
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


@dataclass(frozen=True)
class LayerInfo:
    """A layer of one platform image, aligned with its diff_id and history step."""

    index: int
    digest: Digest
    media_type: str
    size: int
    diff_id: Digest | None
    step: str | None  # created_by of the history entry; None when history cannot be aligned


@dataclass(frozen=True)
class PlatformReport:
    """Scan result for one runnable platform manifest."""

    platform: str
    manifest_digest: Digest
    config_digest: Digest
    layers: tuple[LayerInfo, ...]
    history_aligned: bool
    files_scanned: int
    bytes_scanned: int


class SignatureState(StrEnum):
    """What the repository's trust policy concluded about an image's signatures."""

    NOT_CONFIGURED = "not-configured"  # the repository has no trust policy: nothing was checked
    NOT_CHECKED = "not-checked"  # e.g. a local source, which carries no registry signatures
    VERIFIED = "verified"  # at least one signature by an accepted signer
    GRACE = "grace"  # required, none verified yet, still within the grace period after the push
    UNSIGNED = "unsigned"  # none verified (after the grace period when required)


@dataclass(frozen=True)
class SignatureStatus:
    """The trust policy's conclusion: its state, the action floor it imposes, and the grace deadline."""

    state: SignatureState
    required: bool = False
    explanation: str = ""  # the clause the verdict explanation ends with ("" when nothing to say)
    floor: Action | None = None  # the decision's action is at least this (policy ``unsigned``), when set
    grace_until: datetime | None = None  # GRACE: when the image is acted on unless a signature arrives

    def to_json(self) -> dict[str, Any]:
        """For job results and logs."""
        return {
            "state": self.state.value,
            "required": self.required,
            "explanation": self.explanation,
            "floor": self.floor.value if self.floor else None,
            "grace_until": self.grace_until.astimezone(UTC).isoformat() if self.grace_until else None,
        }


@dataclass(frozen=True)
class ScanReport:
    """What one vetting run produced for a (repository, digest)."""

    repository: str
    digest: Digest
    media_type: str
    verdict: Verdict
    action: Action
    ruleset: str
    findings: tuple[Finding, ...]
    platforms: tuple[PlatformReport, ...]
    errors: tuple[str, ...] = ()
    explanation: str = ""
    provenance: Mapping[str, Any] = field(default_factory=dict)
    signatures: tuple[SignatureCheck, ...] = ()  # every signature and attestation check (verified or why not)
    signature_status: SignatureStatus | None = None  # None: the pipeline did not get to signatures
