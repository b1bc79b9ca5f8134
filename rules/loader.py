"""Load and strictly validate the rules (YARA files, YAML heuristics, IOC lists) and stamp a content-hash version.

``ruleset_version`` only hashes files, so the web process can stamp job ids without importing a YARA engine.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import yaml

from workers.domain import Category, Confidence, Severity
from workers.errors import RuleLoadError

YARA_META_REQUIRED = frozenset({"id", "description", "severity", "confidence", "category", "attack"})
YARA_META_OPTIONAL = frozenset({"path_include", "path_exclude", "references", "scope", "validate"})
# Checks a scanner applies to each matched string of a rule (see workers/scanners/yara_scanner.py).
VALIDATORS = frozenset({"monero-address"})
HEURISTIC_KEYS_REQUIRED = frozenset(
    {"id", "description", "severity", "confidence", "category", "attack", "when", "samples"}
)
HEURISTIC_KEYS_OPTIONAL = frozenset({"references"})
IOC_KEYS_REQUIRED = frozenset(
    {"id", "description", "severity", "confidence", "category", "attack", "indicators", "samples"}
)
IOC_KEYS_OPTIONAL = frozenset({"references", "scope"})
INDICATOR_KEYS = frozenset({"type", "value", "source"})
INDICATOR_TYPES = frozenset({"ipv4", "domain", "url", "sha256"})
# Fields of the image config a heuristic may look at; each yields a list of strings.
FIELDS = frozenset(
    {"entrypoint", "cmd", "command", "env", "env_values", "labels", "user", "history", "layer_steps", "config_steps"}
)
OPERATORS = frozenset({"matches", "contains", "equals", "exists"})
COMBINATORS = frozenset({"any", "all", "not"})
_ID_RE = re.compile(r"^[a-z0-9]+(?:[.-][a-z0-9]+)+$")
_ATTACK_RE = re.compile(r"^T\d{4}(?:\.\d{3})?$")
_DOMAIN_RE = re.compile(r"^(?=.{4,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
RULE_SUFFIXES = (".yar", ".yara", ".yaml", ".yml")


def _rule_files(rules_dir: Path, extra: Sequence[Path]) -> list[tuple[str, Path]]:
    files: list[tuple[str, Path]] = []
    for sub in ("yara", "heuristics", "iocs", "context"):
        base = rules_dir / sub
        if base.is_dir():
            files += [(f"{sub}/{p.name}", p) for p in sorted(base.iterdir()) if p.suffix in RULE_SUFFIXES]
    for pack in extra:
        paths = sorted(pack.rglob("*.yar*")) if pack.is_dir() else [pack]
        files += [(f"extra/{p.name}", p) for p in paths]
    return files


def ruleset_version(rules_dir: Path, extra: Sequence[Path] = ()) -> str:
    """A short content hash over every rule file (names and bytes); changes whenever any rule changes."""
    digest = hashlib.sha256()
    for name, path in _rule_files(rules_dir, extra):
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise RuleLoadError(f"{path}: cannot read rule file: {exc}") from None
        digest.update(name.encode() + b"\0" + len(data).to_bytes(8, "big") + data)
    return "rs-" + digest.hexdigest()[:16]


class RuleScope(StrEnum):
    """Where a rule's hit counts at full weight (see workers/correlate.py)."""

    EXEC = "exec"
    FILE = "file"


@dataclass(frozen=True)
class RuleMeta:
    """What every rule carries, whatever its engine."""

    id: str
    description: str
    severity: Severity
    confidence: Confidence
    category: Category
    attack: str | None
    kind: str  # "yara" | "heuristic"
    source: Path
    path_include: tuple[str, ...] = ()
    path_exclude: tuple[str, ...] = ()  # globs where the rule never applies (wins over path_include)
    validate: str | None = None  # a VALIDATORS name checked against each matched string
    # "exec": a script idiom that is only an attack where something runs it (entrypoint, cron, unit, profile);
    # "file": an artifact whose presence is the signal wherever it lies (miner binary, implanted key, secret).
    scope: RuleScope = RuleScope.FILE


@dataclass(frozen=True)
class Condition:
    """One node of a heuristic's condition tree: an operator over a field, or a combinator over children."""

    op: str
    field: str | None = None
    value: str | None = None
    pattern: re.Pattern[str] | None = None
    children: tuple[Condition, ...] = ()


@dataclass(frozen=True)
class HeuristicRule:
    """A declarative check over the image config and build history."""

    meta: RuleMeta
    when: Condition
    samples_match: tuple[Mapping[str, Any], ...]
    samples_benign: tuple[Mapping[str, Any], ...]


@dataclass(frozen=True)
class Ruleset:
    """The compiled, validated rules of one version."""

    version: str
    rules: Mapping[str, RuleMeta]
    yara: Any  # yara_x.Rules
    heuristics: tuple[HeuristicRule, ...]
    yara_ids: Mapping[str, str] = field(default_factory=dict)  # YARA identifier → rule id
    iocs: tuple[IocList, ...] = ()
    ioc_hashes: Mapping[str, str] = field(default_factory=dict)  # lowercase sha256 hex → IOC list id
    context: tuple[ContextRule, ...] = ()  # image-level findings of workers/correlate.py
    yara_path_scoped: Any = None  # yara_x.Rules of the rules with path_include, run only on files they cover


@dataclass(frozen=True)
class Indicator:
    """One indicator of compromise and the report it comes from."""

    type: str  # ipv4 | domain | url | sha256
    value: str
    source: str


@dataclass(frozen=True)
class IocList:
    """A list of indicators from one campaign; network indicators compile into one generated YARA rule."""

    meta: RuleMeta
    indicators: tuple[Indicator, ...]
    samples_match: tuple[str, ...]
    samples_benign: tuple[str, ...]


def yara_identifier(rule_id: str) -> str:
    """The YARA rule name for a rule id: '.' and '-' become '_'."""
    return rule_id.replace(".", "_").replace("-", "_")


def _enum(value: Any, kind: type[Any], where: str, key: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(m.value for m in kind)
        raise RuleLoadError(f"{where}: {key} {value!r} is not one of {allowed}") from None


def _meta(data: Mapping[str, Any], where: str, kind: str, source: Path) -> RuleMeta:
    rule_id = data.get("id")
    if not isinstance(rule_id, str) or not _ID_RE.match(rule_id):
        raise RuleLoadError(f"{where}: id {rule_id!r} must look like 'family.name' (lowercase, dots, dashes)")
    if rule_id != source.stem:
        raise RuleLoadError(f"{where}: id {rule_id!r} must equal the file name {source.stem!r}")
    description = data.get("description")
    if not isinstance(description, str) or not description.strip():
        raise RuleLoadError(f"{where}: description must be a non-empty string")
    attack = data.get("attack")
    if not isinstance(attack, str) or not _ATTACK_RE.match(attack):
        raise RuleLoadError(f"{where}: attack {attack!r} must be a MITRE ATT&CK technique id like T1496")
    globs: dict[str, tuple[str, ...]] = {}
    for key in ("path_include", "path_exclude"):
        text = data.get(key) or ""
        if not isinstance(text, str):
            raise RuleLoadError(f"{where}: {key} must be a comma-separated string of globs")
        globs[key] = tuple(g.strip() for g in text.split(",") if g.strip())
    validate = data.get("validate")
    if validate is not None and validate not in VALIDATORS:
        raise RuleLoadError(f"{where}: validate {validate!r} is not one of {', '.join(sorted(VALIDATORS))}")
    return RuleMeta(
        id=rule_id,
        description=description.strip(),
        severity=_enum(data.get("severity"), Severity, where, "severity"),
        confidence=_enum(data.get("confidence"), Confidence, where, "confidence"),
        category=_enum(data.get("category"), Category, where, "category"),
        attack=attack,
        kind=kind,
        source=source,
        path_include=globs["path_include"],
        path_exclude=globs["path_exclude"],
        validate=validate,
        scope=_enum(data.get("scope", RuleScope.FILE.value), RuleScope, where, "scope"),
    )


def _check_samples(rules_dir: Path, rule_id: str, where: str) -> None:
    for kind in ("match", "benign"):
        folder = rules_dir / "samples" / rule_id / kind
        if not folder.is_dir() or not any(p.is_file() for p in folder.iterdir()):
            raise RuleLoadError(f"{where}: needs at least one sample in samples/{rule_id}/{kind}/")


def _line_of(message: str) -> str:
    found = re.search(r"--> (.+?:\d+):\d+", message)
    return found.group(1) if found else ""


def _compile_yara(
    rules_dir: Path, extra: Sequence[Path], iocs: Sequence[IocList] = ()
) -> tuple[Any, dict[str, RuleMeta], dict[str, str]]:
    import yara_x

    compiler = yara_x.Compiler()
    # Each IOC list's generated rule lives in its own namespace, so it can never clash with a hand-written rule.
    generated: dict[str, IocList] = {}
    for index, ioc in enumerate(iocs):
        source = _ioc_yara_source(ioc)
        if source is None:
            continue  # hashes only: matched by the layer scan through Ruleset.ioc_hashes, not by YARA
        namespace = f"ioc{index}"
        compiler.new_namespace(namespace)
        try:
            compiler.add_source(source, origin=str(ioc.meta.source))
        except yara_x.CompileError as exc:
            raise RuleLoadError(f"{ioc.meta.source}: generated rule does not compile: {exc}") from None
        generated[namespace] = ioc
    own = sorted((rules_dir / "yara").glob("*.yar")) if (rules_dir / "yara").is_dir() else []
    origins: dict[str, tuple[Path, bool]] = {}
    for index, path in enumerate([*own, *_extra_files(extra)]):
        is_extra = index >= len(own)
        namespace = f"extra{index}" if is_extra else "tollgate"
        compiler.new_namespace(namespace)
        try:
            compiler.add_source(path.read_text(encoding="utf-8"), origin=str(path))
        except yara_x.CompileError as exc:
            text = str(exc)
            location = _line_of(text) or str(path)
            first = text.splitlines()[0] if text else "compile error"
            raise RuleLoadError(f"{location}: {first}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise RuleLoadError(f"{path}: cannot read: {exc}") from None
        origins[namespace if is_extra else f"tollgate:{path.stem}"] = (path, is_extra)
    compiled = compiler.build()

    metas: dict[str, RuleMeta] = {}
    ids: dict[str, str] = {}
    own_by_ident = {yara_identifier(p.stem): p for p in own}
    for rule in compiled:
        meta = dict(rule.metadata)
        key = f"{rule.namespace}:{rule.identifier}"
        if rule.namespace in generated:
            ioc = generated[rule.namespace]
            ids[key] = ioc.meta.id
            continue  # its meta is the list's own, registered by load_ruleset
        if rule.namespace == "tollgate":
            own_path = own_by_ident.get(rule.identifier)
            if own_path is None:
                raise RuleLoadError(f"rules/yara: rule {rule.identifier} is not named after its file")
            path = own_path
            where = str(path)
            unknown = set(meta) - YARA_META_REQUIRED - YARA_META_OPTIONAL
            missing = YARA_META_REQUIRED - set(meta)
            if unknown:
                raise RuleLoadError(f"{where}: unknown meta keys {sorted(unknown)}")
            if missing:
                raise RuleLoadError(f"{where}: missing meta keys {sorted(missing)}")
            parsed = _meta(meta, where, "yara", path)
            _check_samples(rules_dir, parsed.id, where)
        else:
            path = origins[rule.namespace][0]
            parsed = _extra_meta(rule.identifier, meta, path)
        if parsed.id in metas:
            raise RuleLoadError(f"{path}: duplicate rule id {parsed.id!r}")
        metas[parsed.id] = parsed
        ids[key] = parsed.id
    own_ids = {m.id for m in metas.values() if m.kind == "yara"}
    for path in own:
        if path.stem not in own_ids:
            raise RuleLoadError(f"{path}: defines no rule named {yara_identifier(path.stem)}")
    return compiled, metas, ids


def _split_path_scoped(
    rules_dir: Path, extra: Sequence[Path], iocs: Sequence[IocList], metas: Mapping[str, RuleMeta]
) -> tuple[Any, Any]:
    """(rules for every file, rules only for files under some rule's path_include), both compiled.

    A rule limited to a few paths (crontabs, units, *.jpg) would otherwise be searched over every byte of
    every layer and its matches thrown away; compiled apart, it only sees the files it applies to.
    Everything was validated by :func:`_compile_yara`, so these compiles cannot fail differently.
    """
    import yara_x

    own = sorted((rules_dir / "yara").glob("*.yar")) if (rules_dir / "yara").is_dir() else []
    scoped = [p for p in own if metas[p.stem].path_include]
    general, limited = yara_x.Compiler(), yara_x.Compiler()
    for index, ioc in enumerate(iocs):
        source = _ioc_yara_source(ioc)
        if source is not None:
            general.new_namespace(f"ioc{index}")
            general.add_source(source, origin=str(ioc.meta.source))
    for index, path in enumerate([*own, *_extra_files(extra)]):
        target = limited if path in scoped else general
        target.new_namespace(f"extra{index}" if index >= len(own) else "tollgate")
        target.add_source(path.read_text(encoding="utf-8"), origin=str(path))
    return general.build(), (limited.build() if scoped else None)


def _extra_files(extra: Sequence[Path]) -> list[Path]:
    out: list[Path] = []
    for pack in extra:
        if pack.is_dir():
            out += sorted(p for p in pack.rglob("*") if p.suffix in (".yar", ".yara"))
        elif pack.is_file():
            out.append(pack)
        else:
            raise RuleLoadError(f"{pack}: TOLLGATE_RULES_EXTRA path does not exist")
    return out


def _extra_meta(identifier: str, meta: Mapping[str, Any], path: Path) -> RuleMeta:
    """Operator packs carry whatever meta they have; fill safe defaults (they inform, they do not convict)."""

    def pick(kind: type[Any], key: str, default: Any) -> Any:
        try:
            return kind(meta.get(key, default))
        except ValueError:
            return default

    attack = meta.get("attack") or meta.get("mitre")
    return RuleMeta(
        id=f"extra.{identifier.lower().replace('_', '-')}",
        description=str(meta.get("description") or identifier),
        severity=pick(Severity, "severity", Severity.MEDIUM),
        confidence=pick(Confidence, "confidence", Confidence.LOW),
        category=pick(Category, "category", Category.PUA),
        attack=attack if isinstance(attack, str) and _ATTACK_RE.match(attack) else None,
        kind="yara",
        source=path,
    )


def _condition(node: Any, where: str) -> Condition:
    if not isinstance(node, dict) or len(node) != 1:
        raise RuleLoadError(f"{where}: each condition is a mapping with exactly one operator, got {node!r}")
    ((op, arg),) = node.items()
    if op in COMBINATORS:
        children = arg if isinstance(arg, list) else [arg]
        if not children or (op == "not" and len(children) != 1):
            raise RuleLoadError(f"{where}: '{op}' needs {'one condition' if op == 'not' else 'a list of conditions'}")
        return Condition(op=op, children=tuple(_condition(c, where) for c in children))
    if op not in OPERATORS:
        raise RuleLoadError(f"{where}: unknown operator {op!r} (allowed: {sorted(OPERATORS | COMBINATORS)})")
    if not isinstance(arg, dict) or set(arg) - {"field", "value"} or "field" not in arg:
        raise RuleLoadError(f"{where}: '{op}' takes {{field, value}}, got {arg!r}")
    field_name = arg["field"]
    if field_name not in FIELDS:
        raise RuleLoadError(f"{where}: unknown field {field_name!r} (allowed: {sorted(FIELDS)})")
    value = arg.get("value")
    if op == "exists":
        return Condition(op=op, field=field_name)
    if not isinstance(value, str) or not value:
        raise RuleLoadError(f"{where}: '{op}' needs a non-empty string value")
    pattern = None
    if op == "matches":
        try:
            pattern = re.compile(value)
        except re.error as exc:
            raise RuleLoadError(f"{where}: bad regular expression {value!r}: {exc}") from None
    return Condition(op=op, field=field_name, value=value, pattern=pattern)


def _rule_document(
    path: Path, what: str, kind: str, required: frozenset[str], optional: frozenset[str]
) -> tuple[dict[str, Any], RuleMeta]:
    """A YAML rule file's mapping, its keys checked strictly, and its metadata."""
    where = str(path)
    data = _yaml_file(path, what)
    unknown = set(data) - required - optional
    missing = required - set(data)
    if unknown:
        raise RuleLoadError(f"{where}: unknown keys {sorted(unknown)}")
    if missing:
        raise RuleLoadError(f"{where}: missing keys {sorted(missing)}")
    return data, _meta(data, where, kind, path)


def _inline_samples(
    data: Mapping[str, Any], where: str, what: str, check: Callable[[Any], bool]
) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """(match, benign) samples written in the rule file: two non-empty lists whose items pass ``check``."""
    samples = data["samples"]
    if not isinstance(samples, dict) or set(samples) != {"match", "benign"}:
        raise RuleLoadError(f"{where}: samples must have exactly 'match' and 'benign' lists")
    for kind in ("match", "benign"):
        items = samples[kind]
        if not isinstance(items, list) or not items or not all(check(i) for i in items):
            raise RuleLoadError(f"{where}: samples.{kind} must be a non-empty list of {what}")
    return tuple(samples["match"]), tuple(samples["benign"])


def _load_heuristic(path: Path) -> HeuristicRule:
    where = str(path)
    data, meta = _rule_document(path, "a heuristic rule", "heuristic", HEURISTIC_KEYS_REQUIRED, HEURISTIC_KEYS_OPTIONAL)
    samples_match, samples_benign = _inline_samples(data, where, "config fragments", lambda i: isinstance(i, dict))
    return HeuristicRule(
        meta=meta, when=_condition(data["when"], where), samples_match=samples_match, samples_benign=samples_benign
    )


CONTEXT_KEYS_REQUIRED = frozenset({"id", "description", "severity", "confidence", "category", "attack", "samples"})
CONTEXT_KEYS_OPTIONAL = frozenset({"references"})
# One sample image: layers (each a mapping of path → file), config fragment, repository name.
CONTEXT_SAMPLE_KEYS = frozenset({"layers", "config", "repository", "why"})
CONTEXT_FILE_KEYS = frozenset({"text", "elf", "mode", "symlink"})


@dataclass(frozen=True)
class ContextRule:
    """Metadata of a finding the correlation stage derives from the whole image (workers/correlate.py).

    The logic is code; what it reports (severity, confidence, category, technique) is data, and so are its
    samples: small images, built by the rule harness, that must and must not produce the finding.
    """

    meta: RuleMeta
    samples_match: tuple[Mapping[str, Any], ...]
    samples_benign: tuple[Mapping[str, Any], ...]


def _check_context_sample(sample: Any, where: str) -> None:
    if not isinstance(sample, dict) or set(sample) - CONTEXT_SAMPLE_KEYS or "layers" not in sample:
        raise RuleLoadError(f"{where}: a sample is a mapping with 'layers' (and optional config, repository, why)")
    layers = sample["layers"]
    if not isinstance(layers, list) or not layers or not all(isinstance(layer, dict) for layer in layers):
        raise RuleLoadError(f"{where}: sample 'layers' must be a non-empty list of path → file mappings")
    for layer in layers:
        for path, spec in layer.items():
            if not isinstance(path, str) or not path or path.startswith("/") or ".." in path.split("/"):
                raise RuleLoadError(f"{where}: sample path {path!r} must be relative without '..'")
            if isinstance(spec, str):
                continue
            if not isinstance(spec, dict) or set(spec) - CONTEXT_FILE_KEYS or not spec:
                raise RuleLoadError(
                    f"{where}: sample file {path!r} must be text or a mapping of {sorted(CONTEXT_FILE_KEYS)}"
                )
    if not isinstance(sample.get("config", {}), dict) or not isinstance(sample.get("repository", ""), str):
        raise RuleLoadError(f"{where}: sample 'config' must be a mapping and 'repository' a string")


def _load_context_rule(path: Path) -> ContextRule:
    where = str(path)
    data, meta = _rule_document(path, "a context rule", "context", CONTEXT_KEYS_REQUIRED, CONTEXT_KEYS_OPTIONAL)

    def sample_image(item: Any) -> bool:
        _check_context_sample(item, where)  # raises with the precise problem
        return True

    samples_match, samples_benign = _inline_samples(data, where, "sample images", sample_image)
    return ContextRule(meta=meta, samples_match=samples_match, samples_benign=samples_benign)


def _yaml_file(path: Path, what: str) -> dict[str, Any]:
    where = str(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise RuleLoadError(f"{where}{line}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RuleLoadError(f"{where}: cannot read: {exc}") from None
    if not isinstance(data, dict):
        raise RuleLoadError(f"{where}: {what} file is a YAML mapping")
    return data


def _indicator(item: Any, where: str) -> Indicator:
    if not isinstance(item, dict):
        raise RuleLoadError(f"{where}: each indicator is a mapping {{type, value, source}}, got {item!r}")
    unknown = set(item) - INDICATOR_KEYS
    if unknown:
        raise RuleLoadError(f"{where}: indicator {item!r} has unknown keys {sorted(unknown)}")
    kind, value, source = item.get("type"), item.get("value"), item.get("source")
    if kind not in INDICATOR_TYPES:
        raise RuleLoadError(f"{where}: indicator type {kind!r} is not one of {', '.join(sorted(INDICATOR_TYPES))}")
    if not isinstance(value, str) or not value.strip():
        raise RuleLoadError(f"{where}: {kind} indicator needs a non-empty string value")
    if not isinstance(source, str) or not source.strip():
        raise RuleLoadError(f"{where}: indicator {value!r} needs a source (the report it comes from)")
    value = value.strip()
    if kind == "ipv4":
        try:
            ipaddress.IPv4Address(value)
        except ValueError:
            raise RuleLoadError(f"{where}: {value!r} is not a valid IPv4 address") from None
    elif kind == "domain":
        value = value.lower()
        if not _DOMAIN_RE.match(value):
            raise RuleLoadError(f"{where}: {value!r} is not a valid domain name")
    elif kind == "url":
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https", "ftp") or not parts.hostname or any(c.isspace() for c in value):
            raise RuleLoadError(f"{where}: {value!r} is not an http(s) or ftp URL with a host")
    else:
        value = value.lower()
        if not _SHA256_RE.match(value):
            raise RuleLoadError(f"{where}: {value!r} is not a sha256 (64 hex digits)")
    return Indicator(type=kind, value=value, source=source.strip())


def _load_ioc_list(path: Path) -> IocList:
    where = str(path)
    data, meta = _rule_document(path, "an IOC list", "ioc", IOC_KEYS_REQUIRED, IOC_KEYS_OPTIONAL)
    items = data["indicators"]
    if not isinstance(items, list) or not items:
        raise RuleLoadError(f"{where}: indicators must be a non-empty list")
    indicators = tuple(_indicator(item, where) for item in items)
    seen: set[tuple[str, str]] = set()
    for ind in indicators:
        if (ind.type, ind.value) in seen:
            raise RuleLoadError(f"{where}: duplicate indicator {ind.value!r}")
        seen.add((ind.type, ind.value))
    samples_match, samples_benign = _inline_samples(data, where, "strings", lambda t: isinstance(t, str) and bool(t))
    return IocList(meta=meta, indicators=indicators, samples_match=samples_match, samples_benign=samples_benign)


def _yara_regex_literal(text: str) -> str:
    # Every non-alphanumeric character as \xHH: no indicator value can break out of the regular expression.
    return "".join(c if c.isascii() and c.isalnum() else f"\\x{ord(c):02x}" for c in text)


# Left and right boundaries: an indicator must not be a piece of a longer address or name, so 142.44.191.1220,
# 1142.44.191.122, teamtnt.redirect and noteamtnt.red do not match, while www.teamtnt.red and "…122/d.sh" do.
_IOC_BOUNDS = {
    "ipv4": ("(^|[^0-9.])", "([^0-9.]|\\.[^0-9]|\\.?$)"),
    "domain": ("(^|[^A-Za-z0-9\\-])", "([^A-Za-z0-9\\-.]|\\.[^A-Za-z0-9\\-]|\\.?$)"),
    "url": ("", "([^A-Za-z0-9\\-._~%\\/]|$)"),
}


def _ioc_yara_source(ioc: IocList) -> str | None:
    """The generated YARA rule matching any of the list's network indicators; None when it has none."""
    strings = []
    for index, ind in enumerate(i for i in ioc.indicators if i.type in _IOC_BOUNDS):
        left, right = _IOC_BOUNDS[ind.type]
        strings.append(f"        $i{index} = /{left}{_yara_regex_literal(ind.value)}{right}/ nocase")
    if not strings:
        return None
    body = "\n".join(strings)
    return f"rule {yara_identifier(ioc.meta.id)}\n{{\n    strings:\n{body}\n    condition:\n        any of them\n}}\n"


_Loaded = TypeVar("_Loaded", HeuristicRule, ContextRule)


def _load_folder(folder: Path, load: Callable[[Path], _Loaded], metas: dict[str, RuleMeta]) -> tuple[_Loaded, ...]:
    """Every YAML rule of ``folder``, registered in ``metas``; an id already taken is refused."""
    loaded: list[_Loaded] = []
    for path in sorted(folder.glob("*.y*ml")) if folder.is_dir() else []:
        rule = load(path)
        if rule.meta.id in metas:
            raise RuleLoadError(f"{path}: duplicate rule id {rule.meta.id!r}")
        metas[rule.meta.id] = rule.meta
        loaded.append(rule)
    return tuple(loaded)


def load_ruleset(rules_dir: Path, extra: Sequence[Path] = ()) -> Ruleset:
    """Compile and validate every rule; any problem is a RuleLoadError naming the file (and line)."""
    version = ruleset_version(rules_dir, extra)
    folder = rules_dir / "iocs"
    iocs = [_load_ioc_list(p) for p in sorted(folder.glob("*.y*ml"))] if folder.is_dir() else []
    _validated, metas, ids = _compile_yara(rules_dir, extra, iocs)
    compiled, path_scoped = _split_path_scoped(rules_dir, extra, iocs, metas)
    hashes: dict[str, str] = {}
    for ioc in iocs:
        if ioc.meta.id in metas:
            raise RuleLoadError(f"{ioc.meta.source}: duplicate rule id {ioc.meta.id!r}")
        metas[ioc.meta.id] = ioc.meta
        for ind in ioc.indicators:
            if ind.type == "sha256":
                hashes.setdefault(ind.value, ioc.meta.id)
    heuristics = _load_folder(rules_dir / "heuristics", _load_heuristic, metas)
    context = _load_folder(rules_dir / "context", _load_context_rule, metas)
    return Ruleset(
        version=version,
        rules=metas,
        yara=compiled,
        heuristics=heuristics,
        yara_ids=ids,
        iocs=tuple(iocs),
        ioc_hashes=hashes,
        context=context,
        yara_path_scoped=path_scoped,
    )
