"""The vetting pipeline: resolve → fetch → unpack → scan → decide, for one image from any ImageSource.

Stages, in order (ARCHITECTURE.md §1):
  1. resolve the manifest by digest or tag; an index fans out to every runnable platform;
  2. fetch the config and each layer, verifying every digest (blob digests while streaming, diff_ids after);
  3. unpack each layer as a stream, never touching the host filesystem, and scan every regular file (YARA):
     a layer scan depends only on the layer's bytes and the ruleset, so it is cached by digest;
  4. merge the layers into a whiteout-aware view, scan the config and build history (heuristics), and
     correlate: weigh each hit by its context (package ownership, documentation, what runs it) and combine
     signals across the image (workers/correlate.py);
  5. verify signatures (registry images whose repository has a trust policy): every signature and
     attestation is checked (workers/signatures/verify.py) and the trust policy judged, with its grace
     period after the push (signatures arrive after the image);
  6. decide: waivers mark the findings they cover (shown, not counted), then findings → verdict → action,
     at least the trust policy's ``unsigned`` action when it requires a signature, none verified and the
     grace period is over.
  7. provenance (workers/provenance/): digests, layers, history, labels and build attestations on the record;
     a max-mode Dockerfile that does not match the history is a finding, decided with the others.
Quarantine and publishing (the signed verdict attestation) run after the decision is stored (workers/jobs.py).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import astuple, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from rules.loader import RuleMeta
from workers.context import is_autostart
from workers.correlate import ImageView, correlate
from workers.domain import (
    Category,
    Confidence,
    Digest,
    Finding,
    LayerInfo,
    PlatformReport,
    ScanReport,
    Severity,
    clip_evidence,
)
from workers.errors import IntegrityError, UnsupportedMediaType
from workers.layerfs import MergedFilesystem
from workers.layerscan import ANALYZER_VERSION, LayerScan, scan_layer
from workers.oci import (
    MAX_CONFIG_BYTES,
    ImageIndex,
    ImageManifest,
    align_history,
    empty_steps,
    parse_config,
    parse_manifest,
)
from workers.policy import Decision, Policy, decide, judge_signatures
from workers.provenance.collect import collect_provenance
from workers.registry import RegistryClient
from workers.scanners.base import ConfigContext, ConfigScanner, FileScanner
from workers.scanners.names import NameScanner
from workers.settings import UnpackLimits
from workers.signatures.model import SignatureCheck
from workers.signatures.verify import SignatureVerifier
from workers.sources import ImageSource, RegistrySource

log = logging.getLogger(__name__)

MAX_INDEX_DEPTH = 2  # an index of indexes is legal but rare; deeper nesting is refused
ProgressCallback = Callable[[str], None]
# (findings, repository, digest) → the findings with waived marks; the scan job binds the waivers in force.
WaiveHook = Callable[[Sequence[Finding], str, Digest], tuple[Finding, ...]]


class LayerCache(Protocol):
    """Layer scans by (layer digest, key); the key names the ruleset, analyzer and limits they depend on."""

    def get(self, digest: Digest, key: str) -> LayerScan | None:
        """A stored scan, or None."""
        ...

    def put(self, scan: LayerScan, key: str) -> None:
        """Store a complete scan (idempotent)."""
        ...


def _utcnow() -> datetime:
    return datetime.now(UTC)


def decide_with_signatures(
    findings: Sequence[Finding],
    repository: str,
    digest: Digest,
    policy: Policy,
    *,
    client: RegistryClient | None,
    verifier: SignatureVerifier | None,
    pushed_at: datetime,
    now: datetime,
    not_checked: str = "local source",
) -> tuple[Decision, tuple[SignatureCheck, ...]]:
    """The decision for ``findings`` with the repository's trust policy applied, and the signature checks.

    ``client`` None (a local source) or ``verifier`` None means signatures cannot be checked: the
    explanation says so (``not_checked``) and nothing is pretended. The grace period runs from
    ``pushed_at``; ``now`` is the clock. Both the pipeline and signature re-evaluation (a ``.sig``, ``.att``
    or referrer pushed after the image: same findings, new signatures) decide through here.
    Registry outages raise (TransientError): the caller retries rather than record "unsigned".
    """
    effective = policy.for_repository(repository)
    trust = effective.signatures
    checks: tuple[SignatureCheck, ...] | None = None
    if trust.configured and client is not None and verifier is not None:
        checks = verifier(client, repository, digest, trust).checks
    elif verifier is None and client is not None:
        not_checked = "no signature verifier configured"
    status = judge_signatures(
        trust, checks, pushed_at=pushed_at, now=now, scope=effective.match, not_checked=not_checked
    )
    return decide(findings, repository, policy, signatures=status), checks or ()


class NotAnImage(UnsupportedMediaType):
    """The manifest is an artifact (signature, attestation, SBOM …), not a runnable image."""


@dataclass(frozen=True)
class Scanners:
    """The compiled rule engines one worker process uses for every image."""

    ruleset: str
    file_scanners: tuple[FileScanner, ...]
    config_scanners: tuple[ConfigScanner, ...]
    names: NameScanner | None = None  # about the repository, not a platform: runs once per image
    rules: Mapping[str, RuleMeta] = field(default_factory=dict)  # rule id → metadata (scope) for correlation


_SCANNERS_CACHE: dict[tuple[Path, tuple[Path, ...], tuple[str, ...], tuple[str, ...]], Scanners] = {}


def load_scanners(
    rules_dir: Path,
    extra: Sequence[Path] = (),
    *,
    protected_names: Sequence[str] = (),
    trusted_namespaces: Sequence[str] = (),
) -> Scanners:
    """Compile the ruleset once per process (keyed by its content version) and build the scanners."""
    from rules.loader import load_ruleset, ruleset_version
    from workers.scanners.hashes import HashScanner
    from workers.scanners.heuristics import HeuristicScanner
    from workers.scanners.yara_scanner import ConfigIndicatorScanner, YaraScanner

    key = (rules_dir, tuple(extra), tuple(protected_names), tuple(trusted_namespaces))
    version = ruleset_version(rules_dir, extra)
    cached = _SCANNERS_CACHE.get(key)
    if cached is not None and cached.ruleset == version:
        return cached
    ruleset = load_ruleset(rules_dir, extra)
    scanners = Scanners(
        ruleset=ruleset.version,
        file_scanners=(YaraScanner(ruleset), HashScanner(ruleset)),
        config_scanners=(HeuristicScanner(ruleset), ConfigIndicatorScanner(ruleset)),
        names=NameScanner(protected_names, trusted_namespaces),
        rules=ruleset.rules,
    )
    _SCANNERS_CACHE[key] = scanners
    return scanners


def _integrity_finding(
    rule: str,
    message: str,
    layer: LayerInfo,
    *,
    severity: Severity = Severity.HIGH,
    path: str | None = None,
    evidence: str | None = None,
) -> Finding:
    """A finding about the image being malformed or hostile to the scanner (never a pass)."""
    return Finding(
        rule=rule,
        severity=severity,
        category=Category.INTEGRITY,
        confidence=Confidence.MEDIUM,
        message=message,
        attack="T1027",
        layer=layer.digest,
        step=layer.step,
        path=path,
        evidence=evidence,
    )


@dataclass
class _PlatformScan:
    """Mutable accumulator while one platform image is scanned."""

    platform: str
    findings: list[Finding]
    errors: list[str]
    files: int = 0
    bytes: int = 0


class Vetter:
    """Runs the pipeline for one image; stateless between images apart from the compiled scanners."""

    def __init__(
        self,
        scanners: Scanners,
        *,
        limits: UnpackLimits | None = None,
        policy: Policy | None = None,
        progress: ProgressCallback | None = None,
        layer_cache: LayerCache | None = None,
        signature_verifier: SignatureVerifier | None = None,
        clock: Callable[[], datetime] = _utcnow,
        waive: WaiveHook | None = None,
    ) -> None:
        self.scanners = scanners
        self.waive = waive
        # Injected rather than imported so tests run the pipeline without a registry; jobs pass verify_image.
        self.signature_verifier = signature_verifier
        self.clock = clock
        self.limits = limits or UnpackLimits()
        self.policy = policy or Policy()
        self.progress = progress or (lambda _stage: None)
        self.layer_cache = layer_cache
        self.cache_hits = 0  # layers whose scan came from the cache (for logs and benchmarks)
        self._image_findings: tuple[Finding, ...] = ()

    # 1. resolve
    def vet(self, source: ImageSource, reference: str, *, pushed_at: datetime | None = None) -> ScanReport:
        """Vet the image ``reference`` (tag or digest) of ``source`` and return the full report.

        ``pushed_at`` (when the image was first seen) starts the trust policy's grace period; None is now.
        """
        self.progress("resolve")
        # About the repository, not a platform: computed once, reported once, and known to correlation.
        names = self.scanners.names
        self._image_findings = tuple(names.scan_repository(source.repository)) if names is not None else ()
        fetched = source.get_manifest(reference)
        parsed = parse_manifest(fetched.media_type, fetched.raw)
        scans: list[_PlatformScan] = []
        platforms: list[PlatformReport] = []
        if isinstance(parsed, ImageIndex):
            self._vet_index(source, parsed, scans, platforms, depth=1)
            if not platforms:
                raise NotAnImage("index lists no runnable platform image")
        else:
            if not parsed.is_image:
                kind = parsed.artifact_type or parsed.config.media_type
                raise NotAnImage(f"artifact of type {kind!r}, not a runnable image")
            report, scan = self._vet_platform(source, fetched.digest, parsed, platform_hint=None)
            scans.append(scan)
            platforms.append(report)

        findings = tuple(f for scan in scans for f in scan.findings) + self._image_findings
        errors = tuple(e for scan in scans for e in scan.errors)
        if self.waive is not None:
            findings = self.waive(findings, source.repository, fetched.digest)
        # 5. verify signatures, 6. decide
        self.progress("verify signatures")
        now = self.clock()
        decision, checks = decide_with_signatures(
            findings,
            source.repository,
            fetched.digest,
            self.policy,
            client=source.client if isinstance(source, RegistrySource) else None,
            verifier=self.signature_verifier,
            pushed_at=pushed_at or now,
            now=now,
        )
        # 7. provenance, with the verified attestations: a Dockerfile that does not build this history is a
        # finding, decided (and waivable) with the others.
        self.progress("provenance")
        scanned = [(p.platform, p.manifest_digest) for p in platforms]
        provenance = collect_provenance(source, fetched.digest, parsed, scanned, checks)
        if provenance.findings:
            extra = provenance.findings
            if self.waive is not None:
                extra = self.waive(extra, source.repository, fetched.digest)
            findings = findings + tuple(extra)
            decision = decide(findings, source.repository, self.policy, signatures=decision.signatures)
        self.progress("decide")
        return ScanReport(
            repository=source.repository,
            digest=fetched.digest,
            media_type=parsed.media_type,
            verdict=decision.verdict,
            action=decision.action,
            ruleset=self.scanners.ruleset,
            findings=findings,
            platforms=tuple(platforms),
            errors=errors,
            explanation=decision.explanation,
            provenance=provenance.record,
            signatures=checks,
            signature_status=decision.signatures,
        )

    def _vet_index(
        self,
        source: ImageSource,
        index: ImageIndex,
        scans: list[_PlatformScan],
        platforms: list[PlatformReport],
        *,
        depth: int,
    ) -> None:
        if depth > MAX_INDEX_DEPTH:
            raise IntegrityError(f"index nesting deeper than {MAX_INDEX_DEPTH}")
        for child in index.runnable():
            fetched = source.get_manifest(child.digest)
            parsed = parse_manifest(fetched.media_type, fetched.raw)
            if isinstance(parsed, ImageIndex):
                self._vet_index(source, parsed, scans, platforms, depth=depth + 1)
                continue
            if not parsed.is_image:
                continue  # e.g. an attestation manifest without the BuildKit annotation
            hint = str(child.platform) if child.platform else None
            report, scan = self._vet_platform(source, fetched.digest, parsed, platform_hint=hint)
            scans.append(scan)
            platforms.append(report)

    # 2-4. fetch, unpack, scan one platform image
    def _vet_platform(
        self,
        source: ImageSource,
        manifest_digest: Digest,
        manifest: ImageManifest,
        *,
        platform_hint: str | None,
    ) -> tuple[PlatformReport, _PlatformScan]:
        self.progress("fetch")
        config_raw = source.get_blob(manifest.config.digest, max_bytes=MAX_CONFIG_BYTES)
        config = parse_config(config_raw)
        platform = platform_hint or str(config.platform)
        scan = _PlatformScan(platform=platform, findings=[], errors=[])

        layer_count = len(manifest.layers)
        steps, aligned = align_history(config.history, layer_count)
        if len(config.diff_ids) != layer_count:
            raise IntegrityError(
                f"{platform}: manifest has {layer_count} layers but config lists {len(config.diff_ids)} diff_ids"
            )
        layers = tuple(
            LayerInfo(
                index=i,
                digest=desc.digest,
                media_type=desc.media_type,
                size=desc.size,
                diff_id=config.diff_ids[i],
                step=steps[i],
            )
            for i, desc in enumerate(manifest.layers)
        )

        scans: list[LayerScan] = []
        for layer in layers:
            self.progress(f"unpack layer {layer.index + 1}/{layer_count}")
            scans.append(self._layer_scan(source, layer))

        fs = MergedFilesystem()
        for layer, layer_scan in zip(layers, scans, strict=True):
            fs.apply(layer.index, layer_scan.entries)
            scan.files += layer_scan.files
            scan.bytes += layer_scan.scanned_bytes
            scan.errors.extend(f"layer {layer.index} ({layer.digest}): {e}" for e in layer_scan.errors)
            scan.findings.extend(_layer_integrity_findings(layer, layer_scan))

        self.progress("scan config")
        context = ConfigContext(
            config=config,
            layer_steps=steps,
            config_steps=empty_steps(config.history),
            repository=source.repository,
        )
        config_findings = [f for cs in self.scanners.config_scanners for f in cs.scan_config(context)]
        self.progress("correlate")
        view = ImageView(layers=layers, scans=scans, fs=fs, config=config)
        scan.findings.extend(
            correlate(
                view,
                config_findings,
                self.scanners.rules,
                repository=source.repository,
                image_findings=self._image_findings,
            )
        )
        scan.findings = [replace(f, platform=platform) for f in scan.findings]

        report = PlatformReport(
            platform=platform,
            manifest_digest=manifest_digest,
            config_digest=manifest.config.digest,
            layers=layers,
            history_aligned=aligned,
            files_scanned=scan.files,
            bytes_scanned=scan.bytes,
        )
        return report, scan

    def _layer_scan(self, source: ImageSource, layer: LayerInfo) -> LayerScan:
        """The layer's scan from the cache when this ruleset already saw it, else streamed and verified."""
        key = self._cache_key()
        cached = self.layer_cache.get(layer.digest, key) if self.layer_cache is not None else None
        if cached is not None:
            self.cache_hits += 1
            layer_scan = cached
        else:
            with source.open_blob(layer.digest, expected_size=layer.size) as blob:
                layer_scan = scan_layer(
                    blob,
                    layer.digest,
                    file_scanners=self.scanners.file_scanners,
                    limits=self.limits,
                    is_autostart=is_autostart,
                )
        if layer_scan.diff_id is not None and layer.diff_id is not None and layer_scan.diff_id != layer.diff_id:
            raise IntegrityError(
                f"layer {layer.index} ({layer.digest}): uncompressed content hashes to {layer_scan.diff_id}, "
                f"config says diff_id {layer.diff_id}"
            )
        if cached is None and layer_scan.cacheable and self.layer_cache is not None:
            self.layer_cache.put(layer_scan, key)
        return layer_scan

    def _cache_key(self) -> str:
        """What, besides the layer digest, a cached layer scan depends on."""
        limits = self.limits
        fingerprint = hashlib.sha256(repr(astuple(limits)).encode()).hexdigest()[:12]
        return f"{self.scanners.ruleset}/{ANALYZER_VERSION}/{fingerprint}"


def _layer_integrity_findings(layer: LayerInfo, layer_scan: LayerScan) -> list[Finding]:
    """A layer the unpacker refused entries of, or could not read to the end: never a silent pass."""
    out: list[Finding] = []
    for error in layer_scan.errors:
        message = f"layer {layer.index} ({layer.digest}): {error}"
        out.append(_integrity_finding(layer_scan.error_rule or "tollgate.unpack.corrupt", message, layer))
    for refusal in layer_scan.refusals:
        out.append(
            _integrity_finding(
                "tollgate.unpack.refused-entry",
                f"refused tar entry: {refusal.reason}",
                layer,
                severity=Severity.MEDIUM,
                path="/" + refusal.path,
                evidence=clip_evidence(refusal.path),
            )
        )
    return out
