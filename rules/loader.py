"""Load and strictly validate the rules (YARA files, YAML heuristics) and stamp a content-hash ruleset version.

``ruleset_version`` only hashes files, so the web process can stamp job ids without importing a YARA engine.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from workers.domain import Category, Confidence, Severity
from workers.errors import RuleLoadError

YARA_META_REQUIRED = frozenset({"id", "description", "severity", "confidence", "category", "attack"})
YARA_META_OPTIONAL = frozenset({"path_include", "references"})
HEURISTIC_KEYS_REQUIRED = frozenset(
    {"id", "description", "severity", "confidence", "category", "attack", "when", "samples"}
)
HEURISTIC_KEYS_OPTIONAL = frozenset({"references"})
# Fields of the image config a heuristic may look at; each yields a list of strings.
FIELDS = frozenset(
    {"entrypoint", "cmd", "command", "env", "env_values", "labels", "user", "history", "layer_steps", "config_steps"}
)
OPERATORS = frozenset({"matches", "contains", "equals", "exists"})
COMBINATORS = frozenset({"any", "all", "not"})
_ID_RE = re.compile(r"^[a-z0-9]+(?:[.-][a-z0-9]+)+$")
_ATTACK_RE = re.compile(r"^T\d{4}(?:\.\d{3})?$")
RULE_SUFFIXES = (".yar", ".yara", ".yaml", ".yml")


def _rule_files(rules_dir: Path, extra: Sequence[Path]) -> list[tuple[str, Path]]:
    files: list[tuple[str, Path]] = []
    for sub in ("yara", "heuristics", "iocs"):
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
    include = data.get("path_include") or ""
    if not isinstance(include, str):
        raise RuleLoadError(f"{where}: path_include must be a comma-separated string of globs")
    return RuleMeta(
        id=rule_id,
        description=description.strip(),
        severity=_enum(data.get("severity"), Severity, where, "severity"),
        confidence=_enum(data.get("confidence"), Confidence, where, "confidence"),
        category=_enum(data.get("category"), Category, where, "category"),
        attack=attack,
        kind=kind,
        source=source,
        path_include=tuple(g.strip() for g in include.split(",") if g.strip()),
    )


def _check_samples(rules_dir: Path, rule_id: str, where: str) -> None:
    for kind in ("match", "benign"):
        folder = rules_dir / "samples" / rule_id / kind
        if not folder.is_dir() or not any(p.is_file() for p in folder.iterdir()):
            raise RuleLoadError(f"{where}: needs at least one sample in samples/{rule_id}/{kind}/")


def _line_of(message: str) -> str:
    found = re.search(r"--> (.+?:\d+):\d+", message)
    return found.group(1) if found else ""


def _compile_yara(rules_dir: Path, extra: Sequence[Path]) -> tuple[Any, dict[str, RuleMeta], dict[str, str]]:
    import yara_x

    compiler = yara_x.Compiler()
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


def _load_heuristic(path: Path) -> HeuristicRule:
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
        raise RuleLoadError(f"{where}: a heuristic rule file is a YAML mapping")
    unknown = set(data) - HEURISTIC_KEYS_REQUIRED - HEURISTIC_KEYS_OPTIONAL
    missing = HEURISTIC_KEYS_REQUIRED - set(data)
    if unknown:
        raise RuleLoadError(f"{where}: unknown keys {sorted(unknown)}")
    if missing:
        raise RuleLoadError(f"{where}: missing keys {sorted(missing)}")
    meta = _meta(data, where, "heuristic", path)
    samples = data["samples"]
    if not isinstance(samples, dict) or set(samples) != {"match", "benign"}:
        raise RuleLoadError(f"{where}: samples must have exactly 'match' and 'benign' lists")
    for kind in ("match", "benign"):
        items = samples[kind]
        if not isinstance(items, list) or not items or not all(isinstance(i, dict) for i in items):
            raise RuleLoadError(f"{where}: samples.{kind} must be a non-empty list of config fragments")
    return HeuristicRule(
        meta=meta,
        when=_condition(data["when"], where),
        samples_match=tuple(samples["match"]),
        samples_benign=tuple(samples["benign"]),
    )


def load_ruleset(rules_dir: Path, extra: Sequence[Path] = ()) -> Ruleset:
    """Compile and validate every rule; any problem is a RuleLoadError naming the file (and line)."""
    version = ruleset_version(rules_dir, extra)
    compiled, metas, ids = _compile_yara(rules_dir, extra)
    heuristics: list[HeuristicRule] = []
    folder = rules_dir / "heuristics"
    for path in sorted(folder.glob("*.y*ml")) if folder.is_dir() else []:
        rule = _load_heuristic(path)
        if rule.meta.id in metas:
            raise RuleLoadError(f"{path}: duplicate rule id {rule.meta.id!r}")
        metas[rule.meta.id] = rule.meta
        heuristics.append(rule)
    return Ruleset(version=version, rules=metas, yara=compiled, heuristics=tuple(heuristics), yara_ids=ids)
