"""Pure extraction of an image's provenance record: digests, platform, layers, history, labels, build attestations.

Sources, each kept with where it came from (shared/docs/PROTOCOLS.md §3, §7, §8):

1. the manifests and configs themselves: manifest/config digests, platform, layers with their diff_ids, and
   the build steps from ``history`` aligned to the layers (entries with ``empty_layer`` consume none); when the
   counts disagree the alignment is "unavailable", never guessed;
2. OCI annotations (index, manifest) and config labels, with the label-schema equivalents;
3. in-toto Statements (v0.1, v1) carrying SLSA provenance (v0.2, v1): BuildKit's unsigned ones from an index's
   attestation manifests, and signed ones verified by the signature checks. From each: builder, source
   repository and git commit, Dockerfile path, materials/resolved dependencies, build args (max mode) and the
   Dockerfile text (max mode), whose sha256 is recorded and whose instructions are checked against the history.

Hostile statements (too large, malformed, wrong types, too deep) are recorded problems, never exceptions.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from workers.domain import Category, Confidence, Digest, Finding, Severity, clip_evidence
from workers.errors import SignatureError
from workers.oci import HistoryEntry, ImageConfig, ImageManifest
from workers.provenance.dockerfile import DockerfileError, check_history, parse_dockerfile
from workers.signatures.intoto import MAX_STATEMENT_BYTES, STATEMENT_TYPES
from workers.signatures.simplesigning import loads_strict

RECORD_SCHEMA = "https://tollgate.dev/provenance-record/v1"
SLSA_V02 = "https://slsa.dev/provenance/v0.2"
SLSA_V1 = "https://slsa.dev/provenance/v1"
PROVENANCE_TYPES = frozenset({SLSA_V02, SLSA_V1})
BUILDKIT_METADATA_V02 = "https://mobyproject.org/buildkit@v1#metadata"
MAX_STATEMENT_DEPTH = 64
MAX_LISTED = 500  # materials, args, history entries kept on the record: enough for real builds, bounded for floods
MAX_TEXT = 2048  # any one string copied from attacker-controlled provenance onto the record
DOCKERFILE_MISMATCH_RULE = "tollgate.provenance.dockerfile-mismatch"

OCI_ANNOTATIONS = {
    "org.opencontainers.image.source": "source",
    "org.opencontainers.image.revision": "revision",
    "org.opencontainers.image.created": "created",
    "org.opencontainers.image.version": "version",
    "org.opencontainers.image.base.name": "base_name",
    "org.opencontainers.image.base.digest": "base_digest",
    "org.opencontainers.image.title": "title",
    "org.opencontainers.image.description": "description",
    "org.opencontainers.image.licenses": "licenses",
    "org.opencontainers.image.vendor": "vendor",
    "org.opencontainers.image.url": "url",
    "org.opencontainers.image.authors": "authors",
}
LABEL_SCHEMA = {
    "org.label-schema.vcs-url": "source",
    "org.label-schema.vcs-ref": "revision",
    "org.label-schema.build-date": "created",
    "org.label-schema.version": "version",
    "org.label-schema.name": "title",
    "org.label-schema.description": "description",
    "org.label-schema.vendor": "vendor",
    "org.label-schema.url": "url",
}


@dataclass(frozen=True)
class PlatformFacts:
    """One platform image as the pipeline read it (manifest and config already digest-verified)."""

    platform: str
    manifest_digest: Digest
    manifest: ImageManifest
    config: ImageConfig


@dataclass(frozen=True)
class StatementInput:
    """An in-toto Statement offered as provenance: BuildKit's (raw bytes, unsigned) or a verified attestation's."""

    origin: str  # "buildkit-attestation" or "signed-attestation"
    where: str  # the attestation manifest or signature source it came from
    payload: bytes | None = None  # raw statement bytes (BuildKit layers)
    statement: Mapping[str, Any] | None = None  # already parsed and verified (signature checks)
    digest: Digest | None = None  # of the statement blob, for the verdict's input attestations
    signer: str | None = None  # who signed it (signed attestations)
    platform_manifest: Digest | None = None  # the platform manifest the attestation is attached to


@dataclass(frozen=True)
class ProvenanceResult:
    """The record stored on the image, and the findings the Dockerfile check produced."""

    record: dict[str, Any]
    findings: tuple[Finding, ...] = ()
    inputs: tuple[dict[str, Any], ...] = field(default_factory=tuple)  # provenance statements read, for the VSA


# ---------------------------------------------------------------------------------------------- safe access


def _text(value: Any) -> str | None:
    """A string from untrusted JSON, clipped; anything else is None."""
    if not isinstance(value, str):
        return None
    return value if len(value) <= MAX_TEXT else value[: MAX_TEXT - 1] + "…"


def _get(document: Any, *path: str) -> Any:
    """``document[path[0]][path[1]]…`` through objects only; None when any step is missing or not an object."""
    current = document
    for key in path:
        if not isinstance(current, Mapping):
            return None
        current = current.get(key)
    return current


def _digest_set(value: Any) -> dict[str, str]:
    """A DigestSet (``{"sha256": …, "sha1": …}``) with string values only."""
    if not isinstance(value, Mapping):
        return {}
    return {str(k)[:32]: v[:256] for k, v in list(value.items())[:8] if isinstance(v, str)}


def _materials(value: Any, problems: list[str], where: str) -> list[dict[str, Any]]:
    """Materials / resolvedDependencies as ``{uri, digest}``, bounded."""
    if value is None:
        return []
    if not isinstance(value, list):
        problems.append(f"{where}: materials are not a list")
        return []
    if len(value) > MAX_LISTED:
        problems.append(f"{where}: {len(value)} materials; only the first {MAX_LISTED} are kept")
    out = []
    for entry in value[:MAX_LISTED]:
        if not isinstance(entry, Mapping):
            continue
        uri = _text(entry.get("uri")) or _text(entry.get("name"))
        out.append({"uri": uri, "digest": _digest_set(entry.get("digest"))})
    return out


def _build_args(value: Any) -> dict[str, str]:
    """``build-arg:NAME`` entries of the frontend args (max mode), as NAME → value."""
    if not isinstance(value, Mapping):
        return {}
    out: dict[str, str] = {}
    for key, arg in list(value.items())[: MAX_LISTED * 4]:
        if isinstance(key, str) and key.startswith("build-arg:") and isinstance(arg, str):
            out[key.removeprefix("build-arg:")[:256]] = _text(arg) or ""
        if len(out) >= MAX_LISTED:
            break
    return out


def _commit(digest: dict[str, str]) -> str | None:
    """The git commit of a configSource / material digest: ``sha1`` (BuildKit) or ``gitCommit`` (in-toto v1)."""
    return digest.get("gitCommit") or digest.get("sha1")


# ---------------------------------------------------------------------------------------------- statements


def parse_provenance_statement(payload: bytes, where: str) -> dict[str, Any]:
    """An in-toto Statement from untrusted bytes: bounded size and depth; SignatureError saying why not."""
    doc = loads_strict(payload, f"statement at {where}", MAX_STATEMENT_BYTES, MAX_STATEMENT_DEPTH)
    if not isinstance(doc, dict):
        raise SignatureError(f"statement at {where} is not a JSON object")
    if doc.get("_type") not in STATEMENT_TYPES:
        shown = _text(doc.get("_type")) or type(doc.get("_type")).__name__
        raise SignatureError(f"statement at {where}: _type {shown[:80]!r} is not an in-toto Statement v0.1 or v1")
    if not isinstance(doc.get("predicateType"), str):
        raise SignatureError(f"statement at {where} has no predicateType")
    if doc.get("predicate") is not None and not isinstance(doc.get("predicate"), dict):
        raise SignatureError(f"statement at {where}: predicate is not an object")
    return doc


def _subjects(statement: Mapping[str, Any]) -> list[dict[str, Any]]:
    subjects = statement.get("subject")
    if not isinstance(subjects, list):
        return []
    return [
        {"name": _text(s.get("name")), "digest": _digest_set(s.get("digest"))}
        for s in subjects[:16]
        if isinstance(s, Mapping)
    ]


def _dockerfile_source(metadata: Any, problems: list[str], where: str) -> tuple[str | None, bytes | None]:
    """(filename, text bytes) of the Dockerfile in BuildKit's max-mode ``source.infos``, when present."""
    infos = _get(metadata, "source", "infos")
    if infos is None:
        return None, None
    if not isinstance(infos, list):
        problems.append(f"{where}: source.infos is not a list")
        return None, None
    for info in infos[:64]:
        if not isinstance(info, Mapping):
            continue
        language = info.get("language")
        if language not in (None, "Dockerfile"):
            continue
        data = info.get("data")
        if not isinstance(data, str):
            continue
        try:
            text = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            problems.append(f"{where}: the Dockerfile source is not valid base64")
            return _text(info.get("filename")), None
        return _text(info.get("filename")), text
    return None, None


def summarize_slsa(statement: Mapping[str, Any], problems: list[str], where: str) -> dict[str, Any]:
    """Builder, source, git commit, Dockerfile, materials, args and mode of a SLSA v0.2 or v1 predicate."""
    predicate_type = statement.get("predicateType")
    predicate = statement.get("predicate") or {}
    out: dict[str, Any] = {"statement_type": _text(statement.get("_type")), "predicate_type": _text(predicate_type)}
    if predicate_type == SLSA_V02:
        config_source = _get(predicate, "invocation", "configSource")
        parameters = _get(predicate, "invocation", "parameters")
        metadata = _get(predicate, "metadata")
        buildkit = _get(metadata, BUILDKIT_METADATA_V02)
        out.update(
            builder=_text(_get(predicate, "builder", "id")),
            build_type=_text(_get(predicate, "buildType")),
            source_uri=_text(_get(config_source, "uri")),
            source_digest=_digest_set(_get(config_source, "digest")),
            dockerfile_path=_text(_get(config_source, "entryPoint")),
            frontend=_text(_get(parameters, "frontend")),
            build_args=_build_args(_get(parameters, "args")),
            materials=_materials(_get(predicate, "materials"), problems, where),
            invocation_id=_text(_get(metadata, "buildInvocationID")) or _text(_get(metadata, "buildInvocationId")),
            started=_text(_get(metadata, "buildStartedOn")),
            finished=_text(_get(metadata, "buildFinishedOn")),
            llb=_get(predicate, "buildConfig", "llbDefinition") is not None,
        )
    else:
        build = _get(predicate, "buildDefinition")
        config_source = _get(build, "externalParameters", "configSource")
        request = _get(build, "externalParameters", "request")
        metadata = _get(predicate, "runDetails", "metadata")
        buildkit = _get(metadata, "buildkit_metadata")
        out.update(
            builder=_text(_get(predicate, "runDetails", "builder", "id")),
            build_type=_text(_get(build, "buildType")),
            source_uri=_text(_get(config_source, "uri")),
            source_digest=_digest_set(_get(config_source, "digest")),
            dockerfile_path=_text(_get(config_source, "path")),
            frontend=_text(_get(request, "frontend")),
            build_args=_build_args(_get(request, "args")),
            materials=_materials(_get(build, "resolvedDependencies"), problems, where),
            invocation_id=_text(_get(metadata, "invocationID")) or _text(_get(metadata, "invocationId")),
            started=_text(_get(metadata, "startedOn")),
            finished=_text(_get(metadata, "finishedOn")),
            llb=_get(build, "internalParameters", "buildConfig", "llbDefinition") is not None,
        )
    args = _get(predicate, "invocation", "parameters", "args") or _get(
        predicate, "buildDefinition", "externalParameters", "request", "args"
    )
    if not out["dockerfile_path"] and isinstance(args, Mapping):
        out["dockerfile_path"] = _text(args.get("filename"))
    vcs = _get(buildkit, "vcs")
    # vcs comes from client options and is not verified by BuildKit: a hint, recorded as such.
    out["vcs"] = {"source": _text(_get(vcs, "source")), "revision": _text(_get(vcs, "revision")), "verified": False}
    filename, text = _dockerfile_source(buildkit, problems, where)
    # Max mode adds the build args, the LLB and the source maps; min mode has none of them.
    out["mode"] = "max" if (text is not None or out["llb"] or _get(buildkit, "layers") is not None) else "min"
    out["dockerfile_text"] = text
    if text is not None and filename and not out["dockerfile_path"]:
        out["dockerfile_path"] = filename
    return out


# ---------------------------------------------------------------------------------------------- layers, history


def _steps(history: Sequence[HistoryEntry], layer_count: int) -> tuple[list[dict[str, Any]], bool, str | None]:
    """Every history entry with the layer it made (aligned), or with none when the counts disagree."""
    producing = sum(1 for h in history if not h.empty_layer)
    aligned = bool(history) and producing == layer_count
    reason = None
    if not history:
        reason = "the image config has no history"
    elif not aligned:
        reason = f"history has {producing} layer-producing entries for {layer_count} layers"
    steps: list[dict[str, Any]] = []
    layer = 0
    for entry in history[:MAX_LISTED]:
        made: int | None = None
        if not entry.empty_layer:
            made = layer if aligned else None
            layer += 1
        steps.append(
            {
                "created_by": _text(entry.created_by),
                "created": _text(entry.created),
                "comment": _text(entry.comment),
                "empty_layer": entry.empty_layer,
                "layer": made,
            }
        )
    return steps, aligned, reason


def _platform_record(facts: PlatformFacts) -> dict[str, Any]:
    config = facts.config
    manifest = facts.manifest
    steps, aligned, reason = _steps(config.history, len(manifest.layers))
    producing = [s for s in steps if not s["empty_layer"]]
    layers = []
    for index, descriptor in enumerate(manifest.layers[:MAX_LISTED]):
        step = producing[index]["created_by"] if aligned and index < len(producing) else None
        layers.append(
            {
                "index": index,
                "digest": descriptor.digest,
                "diff_id": config.diff_ids[index] if index < len(config.diff_ids) else None,
                "size": descriptor.size,
                "media_type": descriptor.media_type,
                "step": step,
            }
        )
    return {
        "platform": facts.platform,
        "manifest": facts.manifest_digest,
        "config": manifest.config.digest,
        "os": config.os,
        "architecture": config.architecture,
        "variant": config.variant,
        "created": config.created,
        "layers": layers,
        "history": {"status": "aligned" if aligned else "unavailable", "reason": reason, "steps": steps},
        "annotations": {k: _text(v) for k, v in list(manifest.annotations.items())[:MAX_LISTED]},
        "labels": {k: _text(v) for k, v in list(config.labels.items())[:MAX_LISTED]},
    }


def _image_metadata(
    index_annotations: Mapping[str, str], platforms: Sequence[PlatformFacts]
) -> tuple[dict[str, Any], dict[str, str]]:
    """OCI annotation/label facts (source, revision, created …) and where each came from (first found wins)."""
    found: dict[str, Any] = {}
    origin: dict[str, str] = {}
    places: list[tuple[str, Mapping[str, str]]] = [("index annotation", index_annotations)]
    places += [("manifest annotation", p.manifest.annotations) for p in platforms]
    places += [("config label", p.config.labels) for p in platforms]
    for kind, mapping in places:
        for key, name in OCI_ANNOTATIONS.items():
            if name not in found and isinstance(mapping.get(key), str):
                found[name], origin[name] = _text(mapping[key]), f"{kind} {key}"
    for _, mapping in places:
        for key, name in LABEL_SCHEMA.items():
            if name not in found and isinstance(mapping.get(key), str):
                found[name], origin[name] = _text(mapping[key]), f"label-schema {key}"
    return found, origin


# ---------------------------------------------------------------------------------------------- assembly


def _dockerfile_finding(message: str, platform: PlatformFacts, history_index: int | None) -> Finding:
    step = None
    layer = None
    if history_index is not None and history_index < len(platform.config.history):
        entry = platform.config.history[history_index]
        step = entry.created_by
        if not entry.empty_layer:
            producing = sum(1 for h in platform.config.history[:history_index] if not h.empty_layer)
            aligned = sum(1 for h in platform.config.history if not h.empty_layer) == len(platform.manifest.layers)
            if aligned and producing < len(platform.manifest.layers):
                layer = platform.manifest.layers[producing].digest
    return Finding(
        rule=DOCKERFILE_MISMATCH_RULE,
        severity=Severity.MEDIUM,
        category=Category.INTEGRITY,
        confidence=Confidence.MEDIUM,
        # A history that is not what the declared Dockerfile builds: a tampered image or a forged provenance.
        attack="T1195.002",
        message=f"the provenance's Dockerfile does not match the image history: {message}",
        layer=layer,
        step=step,
        evidence=clip_evidence(message),
        platform=platform.platform,
    )


def _attestation_record(
    offered: StatementInput,
    platforms: Sequence[PlatformFacts],
    problems: list[str],
    findings: list[Finding],
    inputs: list[dict[str, Any]],
) -> dict[str, Any] | None:
    """One provenance statement on the record (None when it is not provenance or not readable)."""
    statement: Mapping[str, Any] | None = offered.statement
    if statement is None and offered.payload is not None:
        try:
            statement = parse_provenance_statement(offered.payload, offered.where)
        except SignatureError as exc:
            problems.append(str(exc))
            return None
    if statement is None or statement.get("predicateType") not in PROVENANCE_TYPES:
        return None
    try:
        summary = summarize_slsa(statement, problems, offered.where)
    except (TypeError, ValueError, AttributeError) as exc:  # a shape none of the guards foresaw: a reason
        problems.append(f"{offered.where}: unreadable provenance ({type(exc).__name__})")
        return None
    text: bytes | None = summary.pop("dockerfile_text")
    summary.pop("llb")
    subjects = _subjects(statement)
    record: dict[str, Any] = {
        "origin": offered.origin,
        "where": offered.where,
        "signed": offered.origin == "signed-attestation",
        "signer": offered.signer,
        "subject": subjects,
        **summary,
        "git_commit": _commit(summary["source_digest"]),
        "dockerfile": None,
    }
    inputs.append(
        {
            "uri": offered.where,
            "digest": {"sha256": offered.digest.removeprefix("sha256:")} if offered.digest else {},
            "predicate_type": summary["predicate_type"],
            "signed": record["signed"],
        }
    )
    if text is not None:
        record["dockerfile"] = _check_dockerfile(text, record, offered, platforms, problems=problems, findings=findings)
    return record


def _check_dockerfile(
    text: bytes,
    record: Mapping[str, Any],
    offered: StatementInput,
    platforms: Sequence[PlatformFacts],
    *,
    problems: list[str],
    findings: list[Finding],
) -> dict[str, Any]:
    """The Dockerfile's digest and whether its final stage matches the history of the platform it built."""
    result: dict[str, Any] = {
        "path": record.get("dockerfile_path"),
        "sha256": hashlib.sha256(text).hexdigest(),
        "size": len(text),
        "matches_history": None,
        "mismatches": [],
    }
    # The platform the statement is about: by its attachment, else by its subject digests.
    named = {offered.platform_manifest} if offered.platform_manifest else set()
    for subject in record["subject"]:
        if "sha256" in subject["digest"]:
            named.add(Digest("sha256:" + subject["digest"]["sha256"].lower()))
    targets = [p for p in platforms if p.manifest_digest in named] or (list(platforms) if len(platforms) == 1 else [])
    if not targets:
        result["reason"] = "the statement names no platform image that was scanned"
        return result
    try:
        instructions = parse_dockerfile(text.decode("utf-8", errors="replace"))
    except DockerfileError as exc:
        problems.append(f"{offered.where}: {exc}")
        result["reason"] = str(exc)
        return result
    matches = True
    for platform in targets:
        for mismatch in check_history(instructions, platform.config.history)[:20]:
            matches = False
            result["mismatches"].append({"platform": platform.platform, "message": mismatch.message})
            findings.append(_dockerfile_finding(mismatch.message, platform, mismatch.history_index))
    result["matches_history"] = matches
    return result


def build_record(
    subject: Digest,
    media_type: str,
    platforms: Sequence[PlatformFacts],
    *,
    index_annotations: Mapping[str, str] | None = None,
    statements: Sequence[StatementInput] = (),
    problems: Sequence[str] = (),
) -> ProvenanceResult:
    """The provenance record of image ``subject`` and the findings of its Dockerfile checks."""
    found_problems = list(problems)
    findings: list[Finding] = []
    inputs: list[dict[str, Any]] = []
    attestations = [
        r
        for r in (_attestation_record(s, platforms, found_problems, findings, inputs) for s in statements)
        if r is not None
    ]
    image, origin = _image_metadata(index_annotations or {}, platforms)
    # The best-supported source and commit: a git configSource (authoritative for remote contexts), then the
    # vcs hint, then labels; each with where it came from.
    source: dict[str, Any] = {"repository": None, "commit": None, "from": None}
    for attestation in attestations:
        if attestation["git_commit"]:
            source = {"repository": attestation["source_uri"], "commit": attestation["git_commit"]}
            source["from"] = f"{attestation['origin']} configSource"
            break
    if source["commit"] is None:
        for attestation in attestations:
            if attestation["vcs"]["revision"]:
                source = {"repository": attestation["vcs"]["source"], "commit": attestation["vcs"]["revision"]}
                source["from"] = f"{attestation['origin']} vcs (unverified hint)"
                break
    if source["commit"] is None and image.get("revision"):
        source = {"repository": image.get("source"), "commit": image["revision"], "from": origin["revision"]}
    if source["repository"] is None and image.get("source"):
        source["repository"] = image["source"]
    dockerfile = next((a["dockerfile"] for a in attestations if a["dockerfile"]), None)
    dockerfile_path = next((a["dockerfile_path"] for a in attestations if a["dockerfile_path"]), None)
    missing = []
    if not attestations:
        missing.append("build provenance attestation (SLSA v0.2/v1, BuildKit or signed)")
    if source["repository"] is None:
        missing.append("source repository")
    if source["commit"] is None:
        missing.append("git commit")
    if dockerfile_path is None:
        missing.append("Dockerfile path")
    if dockerfile is None:
        missing.append("Dockerfile text (max-mode provenance)")
    platform_records = [_platform_record(p) for p in platforms]
    if any(p["history"]["status"] != "aligned" for p in platform_records):
        missing.append("build steps aligned to layers")
    if not any(a["materials"] for a in attestations):
        missing.append("materials / resolved dependencies")
    record = {
        "schema": RECORD_SCHEMA,
        "subject": {"digest": subject, "media_type": media_type},
        "image": image,
        "image_origin": origin,
        "source": source,
        "builder": next((a["builder"] for a in attestations if a["builder"]), None),
        "dockerfile": dockerfile or ({"path": dockerfile_path} if dockerfile_path else None),
        "platforms": platform_records,
        "attestations": attestations,
        "missing": missing,
        "problems": [clip_evidence(p, 400) for p in found_problems[:MAX_LISTED]],
        "inputs": inputs,
    }
    return ProvenanceResult(record=record, findings=tuple(findings), inputs=tuple(inputs))
