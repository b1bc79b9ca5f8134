"""Weigh each hit by its context, and combine signals across the image into findings of their own.

A string alone is not a verdict. For every file-scanner hit this stage asks: does the final filesystem still
hold it; does a package own it with a matching checksum (distribution content); is it documentation or test
data; does anything run it (entrypoint, cron, units, profiles and the scripts they call)? Script idioms
(rule scope ``exec``) count at full weight only where something runs them; artifacts (scope ``file``) count
wherever they lie. Then it adds what only the whole image shows: a miner hiding under a system program's name,
a package binary whose checksum no longer matches, executables no package owns in system or temporary paths,
pool/wallet evidence beside a miner, and the open-miner case that is policy (``pua``) rather than malware.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from rules.loader import RuleMeta, RuleScope
from workers.context import ExecutionContext, autostart_kind, execution_context, is_documentation
from workers.domain import Category, Finding, LayerInfo, Severity, clip_evidence
from workers.layerfs import MergedFilesystem
from workers.layerscan import FileFacts, LayerScan
from workers.oci import ImageConfig
from workers.packagedb import Ownership, PackageDbFile, PackageIndex
from workers.scanners.base import finding_for
from workers.unpack import EntryKind

# Findings this stage derives from the whole image. The logic is here; their metadata and samples are data
# (rules/context/<id>.yaml): a rule an operator removes from the ruleset is simply not reported.
MASQUERADE = "context.masquerading-miner"
RENAMED_MINER = "context.renamed-miner"
MODIFIED_PACKAGE_FILE = "context.modified-package-file"
UNOWNED_SYSTEM_BINARY = "context.unowned-system-binary"
HIDDEN_EXECUTABLE = "context.hidden-executable"
MINER_COMBINED = "context.miner-evidence-combined"
DERIVED_RULES = (
    MASQUERADE,
    RENAMED_MINER,
    MODIFIED_PACKAGE_FILE,
    UNOWNED_SYSTEM_BINARY,
    HIDDEN_EXECUTABLE,
    MINER_COMBINED,
)

# Program names a miner borrows to look like part of the system (THREATS.md §2 "renames").
SYSTEM_NAMES = frozenset(
    {
        "nginx",
        "httpd",
        "apache2",
        "cron",
        "crond",
        "sshd",
        "ssh",
        "dockerd",
        "docker",
        "containerd",
        "docker-cache",
        "docker-proxy",
        "kubelet",
        "systemd",
        "systemd-journald",
        "init",
        "bash",
        "sh",
        "dash",
        "kthreadd",
        "kswapd0",
        "bioset",
        "dbused",
        "mysqld",
        "redis-server",
        "postgres",
        "java",
        "node",
        "python",
        "python3",
        "portainer",
        "sleep",
        "top",
        "ps",
        "rsyslogd",
        "atd",
        "udevd",
        "cloud",
    }
)
SYSTEM_NAME_PREFIXES = ("kworker", "ksoftirqd", "migration", "systemd-")
# Names under which miners are published: a binary called so hides nothing.
MINER_NAME_PARTS = ("xmrig", "xmr-stak", "xmrstak", "miner", "cpuminer", "ethminer", "t-rex", "srbminer", "dero")
# Words by which an image discloses that it mines (repository name, title/description labels).
DISCLOSURE_WORDS = ("xmrig", "miner", "mining", "monero", "xmr", "crypto")
DISCLOSURE_LABELS = ("org.opencontainers.image.title", "org.opencontainers.image.description", "description")
SYSTEM_BIN_DIRS = ("usr/bin/", "usr/sbin/", "bin/", "sbin/", "usr/local/sbin/")
TEMP_DIRS = ("tmp/", "var/tmp/", "dev/shm/", "run/")
# Dot-directories where ordinary tools keep native code (pip, cargo, npm caches …): not hiding places.
TOOL_DOT_DIRS = frozenset({".cache", ".local", ".npm", ".cargo", ".rustup", ".m2", ".gradle", ".venv", ".git", ".nvm"})
MINER_EVIDENCE_RULES = frozenset(
    {"miner.stratum-url", "miner.pool-domain", "miner.monero-wallet", "config.miner-in-env"}
)
MINER_ARTIFACT_RULES = frozenset(
    {"miner.xmrig-binary", "miner.xmrig-config", "miner.dero-miner", MASQUERADE, RENAMED_MINER}
)
# Categories whose presence means a miner image is more than an open (if unwanted) miner.
HOSTILE_CATEGORIES = frozenset(
    {
        Category.BACKDOOR,
        Category.PERSISTENCE,
        Category.HOST_ESCAPE,
        Category.WORM,
        Category.CREDENTIAL_THEFT,
        Category.DEFENSE_EVASION,
    }
)
MAX_UNOWNED_LISTED = 20


def _cap(severity: Severity, ceiling: Severity) -> Severity:
    return severity if severity.rank <= ceiling.rank else ceiling


def _active(finding: Finding) -> bool:
    return not finding.waived and finding.severity.rank >= Severity.MEDIUM.rank


@dataclass(frozen=True)
class ImageView:
    """The image as this stage sees it: layers, their scans, the merged filesystem, the config."""

    layers: Sequence[LayerInfo]
    scans: Sequence[LayerScan]
    fs: MergedFilesystem
    config: ImageConfig

    def facts(self, layer_index: int, path: str) -> FileFacts | None:
        """Facts the layer scan recorded for ``path`` in layer ``layer_index``."""
        return self.scans[layer_index].facts.get(path)

    def final_facts(self, path: str) -> FileFacts | None:
        """Facts about the version of ``path`` that survives in the final filesystem."""
        node = self.fs.get(path)
        return self.facts(node.layer, path) if node is not None else None

    def package_index(self) -> PackageIndex:
        """Ownership from the package-database files that survive in the final filesystem."""
        surviving: list[PackageDbFile] = []
        for index, scan in enumerate(self.scans):
            surviving.extend(db for path, db in scan.package_db.items() if self.fs.in_final_fs(path, index))

        def canonical(path: str) -> str | None:
            if self.fs.get(path) is not None:
                return path
            node = self.fs.resolve(path)
            return node.path if node is not None else None

        return PackageIndex.build(surviving, canonical)


def _place(fs_path: str, context: ExecutionContext) -> str:
    """A short phrase for where a hit sits, for the finding's message."""
    why = context.why(fs_path)
    if why:
        return f"run by {why}"
    kind = autostart_kind(fs_path)
    if kind:
        return f"in a {kind} autostart file"
    return "present, but nothing in the image runs it"


def weigh_hit(
    hit: Finding,
    layer: LayerInfo,
    *,
    meta: RuleMeta | None,
    view: ImageView,
    packages: PackageIndex,
    context: ExecutionContext,
) -> Finding:
    """One file-scanner hit, attributed to its layer and step and weighed by where it sits."""
    path = (hit.path or "").lstrip("/")
    in_final = view.fs.in_final_fs(path, layer.index)
    facts = view.facts(layer.index, path)
    ownership, package = packages.check(path, facts.md5 if facts else None)
    severity = hit.severity
    notes: list[str] = []
    scope = meta.scope if meta is not None else RuleScope.FILE
    binary = facts is not None and facts.kind == "elf"

    # The package database is image content too: an attacker can list a payload in it. So ownership lowers the
    # weight only of what nothing runs (the bash man page, a library's test key), never of a file the
    # entrypoint, cron, a unit or a profile runs, and never of a miner (a packaged miner is still a miner).
    owner_counts = (
        ownership in (Ownership.VERIFIED, Ownership.OWNED)
        and not context.why(path)
        and not autostart_kind(path)
        and hit.category is not Category.MINER
    )
    if ownership in (Ownership.VERIFIED, Ownership.OWNED) and not owner_counts:
        checked = "checksum verified" if ownership == Ownership.VERIFIED else "no checksum to compare"
        notes.append(f"claimed by package {package} ({checked}), which does not lower its weight here")
    if owner_counts and ownership == Ownership.VERIFIED:
        severity = Severity.INFO
        notes.append(f"package content of {package}, checksum verified")
    elif owner_counts:
        severity = _cap(severity, Severity.LOW)
        notes.append(f"owned by package {package} (no checksum to compare)")
    elif is_documentation(path) and not binary and not context.why(path):
        severity = Severity.INFO
        notes.append("documentation or test data that nothing runs")
    elif not in_final:
        notes.append("deleted or replaced in a later layer, but still in the image's blobs")
        if scope is RuleScope.EXEC:
            severity = _cap(severity, Severity.MEDIUM)
    elif scope is RuleScope.EXEC:
        place = _place(path, context)
        notes.append(place)
        if not context.why(path) and not autostart_kind(path):
            severity = _cap(severity, Severity.MEDIUM)
    else:
        why = context.why(path)
        if why:
            notes.append(f"run by {why}")
    if ownership == Ownership.MODIFIED:
        notes.append(f"owned by package {package} but its checksum does not match")
    message = hit.message + (" — " + "; ".join(notes) if notes else "")
    return replace(
        hit,
        severity=severity,
        layer=layer.digest,
        step=layer.step,
        in_final_fs=in_final,
        message=message,
    )


class _Deriver:
    """Makes derived findings from the ruleset's context-rule metadata."""

    def __init__(self, rules: Mapping[str, RuleMeta]) -> None:
        self.rules = rules

    def __call__(self, rule_id: str, message: str, **where: Any) -> list[Finding]:
        meta = self.rules.get(rule_id)
        if meta is None:
            return []
        return [finding_for(meta, message=f"{meta.description}: {message}", evidence=clip_evidence(message), **where)]


def _is_system_name(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return name in SYSTEM_NAMES or name.startswith(SYSTEM_NAME_PREFIXES)


def _is_miner_name(path: str) -> bool:
    name = path.rsplit("/", 1)[-1].lower()
    return any(part in name for part in MINER_NAME_PARTS)


def _hidden_or_temp(path: str) -> bool:
    if path.startswith(TEMP_DIRS):
        return True
    parts = path.split("/")[:-1]
    return any(p.startswith(".") and p not in TOOL_DOT_DIRS for p in parts)


def _file_findings(
    view: ImageView, packages: PackageIndex, weighed: Sequence[Finding], derive: _Deriver
) -> list[Finding]:
    """Findings about files that only the merged view shows (masquerading, modified, unowned, hidden)."""
    out: list[Finding] = []
    by_digest = {layer.digest: layer for layer in view.layers}
    for finding in weighed:
        if finding.category is not Category.MINER or not finding.path or finding.layer is None:
            continue
        layer = by_digest[finding.layer]
        path = finding.path.lstrip("/")
        facts = view.facts(layer.index, path)
        if facts is None or facts.kind != "elf" or finding.severity is Severity.INFO:
            continue
        where = {"layer": layer.digest, "step": layer.step, "path": finding.path, "in_final_fs": finding.in_final_fs}
        if _is_system_name(path):
            message = f"/{path} is named like a system program but matches {finding.rule}"
            out += derive(MASQUERADE, message, **where)
        elif not _is_miner_name(path):
            out += derive(RENAMED_MINER, f"/{path} matches {finding.rule}", **where)
    unowned: list[str] = []
    for node in view.fs:
        if node.kind is not EntryKind.FILE:
            continue
        facts = view.facts(node.layer, node.path)
        if facts is None or facts.kind not in ("elf", "script"):
            continue
        layer = view.layers[node.layer]
        where = {"layer": layer.digest, "step": layer.step, "path": "/" + node.path, "in_final_fs": True}
        ownership, package = packages.check(node.path, facts.md5)
        # Executables only: configuration a package ships (conffiles, profiles) is edited legitimately.
        if ownership == Ownership.MODIFIED and (facts.kind == "elf" or node.mode & 0o111):
            out += derive(MODIFIED_PACKAGE_FILE, f"/{node.path} of package {package}", **where)
        elif facts.kind == "elf" and _hidden_or_temp(node.path) and ".so" not in node.path.rsplit("/", 1)[-1]:
            if ownership not in (Ownership.VERIFIED, Ownership.OWNED):
                out += derive(HIDDEN_EXECUTABLE, f"/{node.path}", **where)
        elif ownership == Ownership.UNOWNED and node.path.startswith(SYSTEM_BIN_DIRS):
            unowned.append(node.path)
            if len(unowned) <= MAX_UNOWNED_LISTED:
                out += derive(UNOWNED_SYSTEM_BINARY, f"/{node.path}", **where)
    if len(unowned) > MAX_UNOWNED_LISTED:
        more = len(unowned) - MAX_UNOWNED_LISTED
        out += derive(UNOWNED_SYSTEM_BINARY, f"and {more} more, e.g. /{unowned[MAX_UNOWNED_LISTED]}")
    return out


def _combined_miner(findings: Sequence[Finding], derive: _Deriver) -> list[Finding]:
    """Pool or wallet evidence next to a miner binary or config: the co-occurrence the issue asks for."""
    counted = [f for f in findings if not f.waived and f.severity is not Severity.INFO]
    evidence = [f for f in counted if f.rule in MINER_EVIDENCE_RULES]
    artifacts = [f for f in counted if f.rule in MINER_ARTIFACT_RULES]
    if not evidence or not artifacts:
        return []
    first_art, first_ev = artifacts[0], evidence[0]
    where_art = first_art.path or "the image config"
    where_ev = first_ev.path or "the image config"
    message = f"{first_art.rule} at {where_art} with {first_ev.rule} at {where_ev}"
    return derive(
        MINER_COMBINED,
        message,
        layer=first_art.layer,
        step=first_art.step,
        path=first_art.path,
        in_final_fs=first_art.in_final_fs,
    )


def discloses_mining(repository: str, config: ImageConfig) -> bool:
    """Does the image say what it is: a miner's name in the repository, or in its title/description labels?"""
    texts = [repository.lower(), *(str(config.labels.get(k, "")).lower() for k in DISCLOSURE_LABELS)]
    return any(word in text for text in texts for word in DISCLOSURE_WORDS)


def open_miner_as_pua(
    findings: Sequence[Finding], *, disclosed: bool, image_findings: Sequence[Finding] = ()
) -> list[Finding]:
    """An open miner is unwanted software (``pua``), not malware; anything covert about it makes it a miner.

    Open means: the image discloses that it mines (name or labels), the miner runs under its own name, and
    nothing in the image is hostile — no backdoor, persistence, host escape, spreading, credential theft or
    evasion, and no repository name imitating a well-known image (``vibersastra/ubuntu``).
    """
    active = [f for f in findings if _active(f)]
    if not disclosed or not any(f.category is Category.MINER for f in active):
        return list(findings)
    if any(f.category in HOSTILE_CATEGORIES for f in active) or any(not f.waived for f in image_findings):
        return list(findings)
    prefix = "open miner (no backdoor, persistence or evasion found): "
    return [
        replace(f, category=Category.PUA, message=prefix + f.message) if f.category is Category.MINER else f
        for f in findings
    ]


def correlate(
    view: ImageView,
    config_findings: Sequence[Finding],
    rules: Mapping[str, RuleMeta],
    *,
    repository: str = "",
    image_findings: Sequence[Finding] = (),
) -> list[Finding]:
    """Every finding of one platform image: weighed hits, config findings and the combined signals.

    ``image_findings`` are about the image as a whole (its repository name); they inform the open-miner
    decision and are reported once by the caller, not per platform.
    """
    packages = view.package_index()

    def refs_of(path: str) -> tuple[str, ...] | None:
        facts = view.final_facts(path)
        return facts.refs if facts is not None and facts.kind == "script" else None

    def verified_package_file(path: str) -> bool:
        facts = view.final_facts(path)
        return packages.check(path, facts.md5 if facts else None)[0] == Ownership.VERIFIED

    context = execution_context(view.fs, view.config, refs_of, skip_root=verified_package_file)
    weighed = [
        weigh_hit(hit, view.layers[index], meta=rules.get(hit.rule), view=view, packages=packages, context=context)
        for index, scan in enumerate(view.scans)
        for hit in scan.hits
    ]
    findings = [*weighed, *config_findings]
    derive = _Deriver(rules)
    findings += _file_findings(view, packages, weighed, derive)
    findings += _combined_miner(findings, derive)
    disclosed = discloses_mining(repository, view.config)
    return open_miner_as_pua(findings, disclosed=disclosed, image_findings=image_findings)
