"""Decide: roll findings up to a verdict with an explanation, and map it to an action by per-repository policy.

The policy file (``TOLLGATE_POLICY_FILE``, or ``tollgate scan --policy FILE``) is YAML::

    version: 1                      # required, must be 1
    default:                        # optional; applies to every repository
      actions: {clean: allow, suspicious: warn, malicious: quarantine}
      block_categories: []
    repositories:                   # optional; checked in the order listed, the first match wins
      - match: "prod/**"
        actions: {suspicious: quarantine}
        block_categories: [pua]

Semantics:

- ``match`` is a glob over the whole repository name: ``*`` matches within one path component, ``?`` one
  character of a component, and ``**`` (only as a whole component) any number of components: ``team/*``
  matches ``team/app`` but not ``team/app/api``; ``team/**`` matches both but not ``team`` itself;
  ``**/cache`` matches ``cache`` and ``a/b/cache``; ``team/**/api`` matches ``team/api`` and ``team/x/api``.
- Repository entries are tried in the order listed; the first whose ``match`` matches decides and the rest
  are not consulted. A repository that matches none gets ``default``.
- An entry inherits what it does not say from ``default``: ``actions`` is merged verdict by verdict, a
  ``block_categories`` list given in an entry replaces the default's (``[]`` unblocks). ``default`` itself
  inherits unspecified verdicts from the built-in ``clean: allow, suspicious: warn, malicious: quarantine``.
- The effective actions may not get milder as the verdict gets worse (``suspicious: quarantine`` with
  ``malicious: warn`` is refused).
- ``block_categories``: when any unwaived, verdict-relevant finding (one whose severity x confidence on
  its own reaches at least suspicious) has a listed category, the action is ``quarantine`` whatever the
  verdict maps to, and the explanation says which category and rule did it. Findings below that bar (a
  look-alike repository name, an installer's ``curl | sh`` in history) are context and never block.
- ``signatures`` (per entry and in ``default``) is the signature trust policy (:class:`TrustPolicy`)::

      signatures:
        required: true          # at least one verified signature by these signers (default false)
        unsigned: quarantine    # quarantine | warn | allow when none verified after the grace period
        grace_seconds: 600      # how long after the push an unsigned image is left alone (default 600)
        keys: [keys/release.pub]            # cosign public keys (PEM); relative to the policy file
        identities:                         # keyless signers: issuer and exactly one of subject/subject_regexp
          - {issuer: "https://token.actions.githubusercontent.com", subject_regexp: "https://github.com/acme/.+"}
        trusted_root: trusted_root.json     # optional private Sigstore root; default the production root
        notation:                           # Notation (Notary Project) JWS signatures
          trust_store: notation-ca.pem      # root CA certificates (a PEM file or a directory of them)
          identities: ["C=US, O=Acme, CN=release"]   # X.509 subjects the leaf must hold; "*" any

  An entry's ``signatures`` inherits each key it leaves out from ``default.signatures``; a ``keys`` or
  ``identities`` list given replaces the default's (``[]`` clears). Key files and the trusted root are
  loaded when the policy is, so an unreadable or invalid one refuses the file; ``required: true`` with no
  keys and no identities (after inheritance) is refused: nothing could ever satisfy it.
- Any other unknown key, a bad value, a wrong type, a duplicate key, an empty or malformed ``match`` is a
  ConfigError naming the file, the line and the key.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import yaml

from workers.domain import (
    Action,
    Category,
    Confidence,
    Finding,
    Severity,
    SignatureState,
    SignatureStatus,
    Verdict,
)
from workers.errors import ConfigError
from workers.signatures.identity import IdentityPolicy
from workers.signatures.keys import PublicKey, load_public_key_file
from workers.signatures.model import SignatureCheck, SignatureKind
from workers.signatures.notation import NotationTrust, load_trust_store, notation_trust

DEFAULT_ACTIONS: Mapping[Verdict, Action] = {
    Verdict.CLEAN: Action.ALLOW,
    Verdict.SUSPICIOUS: Action.WARN,
    Verdict.MALICIOUS: Action.QUARANTINE,
}

POLICY_VERSION = 1
EXPLANATION_LIMIT = 300

_ORDER = {Verdict.CLEAN: 0, Verdict.SUSPICIOUS: 1, Verdict.MALICIOUS: 2}
_ACTION_ORDER = {Action.ALLOW: 0, Action.WARN: 1, Action.QUARANTINE: 2}
_CONFIDENCE_RANK = {Confidence.LOW: 0, Confidence.MEDIUM: 1, Confidence.HIGH: 2}
# A leaked key or an open miner is a risk to the owner, not proof of malice: such findings alone stop at
# suspicious (a policy can still block them by category).
_CAPPED_AT_SUSPICIOUS = frozenset({Category.SECRET, Category.PUA})
# An image that breaks the unpacker is hostile to the scanner: it never passes as clean.
_FLOORED_AT_SUSPICIOUS = frozenset({Category.INTEGRITY})


DEFAULT_GRACE_SECONDS = 600
MAX_GRACE_SECONDS = 7 * 24 * 3600  # a week: longer is not a grace period but an exemption
SIGNATURE_KINDS = frozenset({SignatureKind.COSIGN_KEYED, SignatureKind.COSIGN_KEYLESS, SignatureKind.NOTATION})
_TRUST_KEYS = ("required", "unsigned", "grace_seconds", "keys", "identities", "trusted_root", "notation")
_NOTATION_KEYS = ("trust_store", "identities")
_IDENTITY_KEYS = ("issuer", "subject", "subject_regexp", "workflow_repository", "workflow_ref")


# --------------------------------------------------------------------------------------------- policy model


@dataclass(frozen=True)
class TrustPolicy:
    """Who must have signed a repository's images, and what happens to an image none of them signed."""

    required: bool = False
    unsigned: Action = Action.QUARANTINE
    grace_seconds: int = DEFAULT_GRACE_SECONDS
    keys: tuple[PublicKey, ...] = ()
    identities: tuple[IdentityPolicy, ...] = ()
    trusted_root: Path | None = None  # None: Sigstore's production root embedded in the sigstore package
    notation: NotationTrust | None = None  # Notation trust store and identities

    @property
    def has_signers(self) -> bool:
        """True when some signer could satisfy the policy (keys, keyless identities or a Notation trust store)."""
        return bool(self.keys or self.identities or (self.notation is not None and self.notation.identities))

    @property
    def configured(self) -> bool:
        """True when there is anything to verify against (or a requirement to enforce)."""
        return self.required or self.has_signers

    def describe_signers(self) -> str:
        """The accepted signers in a few words, for explanations."""
        parts = [f"key {key.name}" for key in self.keys[:2]] + [i.describe() for i in self.identities[:2]]
        notation = self.notation.identities if self.notation is not None else ()
        parts += [f"notation {identity.text}" for identity in notation[:1]]
        rest = len(self.keys) + len(self.identities) + len(notation) - len(parts)
        text = ", ".join(parts) or "no signers"
        return f"{text} and {rest} more" if rest > 0 else text

    def to_json(self) -> dict[str, Any]:
        """For the image record and pages: the trust policy that applied."""
        return {
            "required": self.required,
            "unsigned": self.unsigned.value,
            "grace_seconds": self.grace_seconds,
            "keys": [key.name for key in self.keys],
            "identities": [i.describe() for i in self.identities],
            "trusted_root": str(self.trusted_root) if self.trusted_root else None,
            "notation": (
                {"trust_store": self.notation.source, "identities": [i.text for i in self.notation.identities]}
                if self.notation is not None
                else None
            ),
        }


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """Compile a repository glob; ValueError says what is wrong with it."""
    if not pattern:
        raise ValueError("must not be empty")
    parts = pattern.split("/")
    if any(not part for part in parts):
        raise ValueError("has an empty path component (leading, trailing or doubled '/')")
    out: list[str] = []
    need_sep = False
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        if part == "**":
            if last:
                out.append("/.+" if need_sep else ".+")
            else:
                out.append("/(?:.+/)?" if need_sep else "(?:.+/)?")
                need_sep = False
            continue
        if "**" in part:
            raise ValueError("'**' must be a whole path component (as in 'team/**' or 'team/**/api')")
        piece = []
        for char in part:
            if char == "*":
                piece.append("[^/]*")
            elif char == "?":
                piece.append("[^/]")
            elif re.fullmatch(r"[a-z0-9._-]", char):
                piece.append(re.escape(char))
            else:
                raise ValueError(
                    f"has {char!r}; repository names are lowercase letters, digits and . _ - /, "
                    "and only * ? ** are wildcards"
                )
        out.append(("/" if need_sep else "") + "".join(piece))
        need_sep = True
    return re.compile("".join(out))


def repository_glob(pattern: str) -> re.Pattern[str]:
    """The compiled repository glob of ``match`` (and of waivers' repository patterns); ValueError says why not."""
    return _glob_regex(pattern)


@dataclass(frozen=True)
class RepositoryPolicy:
    """The effective policy of one repository: ``default`` with its first matching entry applied."""

    actions: Mapping[Verdict, Action]
    block_categories: frozenset[Category] = frozenset()
    match: str | None = None  # the entry that applied; None when only ``default`` did
    signatures: TrustPolicy = field(default_factory=TrustPolicy)

    def action_for(self, verdict: Verdict) -> Action:
        """The action this policy takes for ``verdict`` (before ``block_categories``)."""
        return self.actions[verdict]

    def to_json(self) -> dict[str, Any]:
        """For the image record and pages: which entry applied and what it does."""
        return {
            "match": self.match,
            "actions": {v.value: self.actions[v].value for v in Verdict},
            "block_categories": sorted(c.value for c in self.block_categories),
            **({"signatures": self.signatures.to_json()} if self.signatures.configured else {}),
        }


@dataclass(frozen=True)
class PolicyEntry:
    """One ``repositories`` entry: a glob and what it overrides."""

    match: str
    actions: Mapping[Verdict, Action] = field(default_factory=dict)
    block_categories: frozenset[Category] | None = None  # None: inherit default's
    line: int | None = None
    signatures: TrustPolicy | None = None  # None: inherit default's (already merged over it when given)
    _regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            regex = _glob_regex(self.match)
        except ValueError as exc:
            raise ConfigError(f"{self.match!r}: {exc}") from None
        object.__setattr__(self, "_regex", regex)

    def matches(self, repository: str) -> bool:
        """True when the glob matches the whole repository name."""
        return self._regex.fullmatch(repository) is not None


@dataclass(frozen=True)
class Policy:
    """Maps verdicts to actions per repository; built from the policy file or the built-in default."""

    actions: Mapping[Verdict, Action] = field(default_factory=lambda: dict(DEFAULT_ACTIONS))
    block_categories: frozenset[Category] = frozenset()
    repositories: tuple[PolicyEntry, ...] = ()
    source: str | None = None  # the file it was read from, for messages
    signatures: TrustPolicy = field(default_factory=TrustPolicy)

    def for_repository(self, repository: str) -> RepositoryPolicy:
        """The effective policy of ``repository``: the first matching entry over ``default``."""
        base = {**DEFAULT_ACTIONS, **self.actions}
        for entry in self.repositories:
            if entry.matches(repository):
                blocked = self.block_categories if entry.block_categories is None else entry.block_categories
                trust = self.signatures if entry.signatures is None else entry.signatures
                return RepositoryPolicy({**base, **entry.actions}, blocked, entry.match, trust)
        return RepositoryPolicy(base, self.block_categories, None, self.signatures)

    def action_for(self, verdict: Verdict, repository: str) -> Action:
        """The action for ``verdict`` in ``repository`` (before ``block_categories``)."""
        return self.for_repository(repository).action_for(verdict)


# --------------------------------------------------------------------------------------------- loader


class _Map(dict[str, Any]):
    """A YAML mapping that remembers its own line and the line of each key."""

    line: int | None = None
    lines: dict[str, int]


class _Seq(list[Any]):
    """A YAML sequence that remembers its own line and the line of each item."""

    line: int | None = None
    lines: list[int]


class _LineLoader(yaml.SafeLoader):
    """SafeLoader whose mappings and sequences carry line numbers and refuse duplicate or non-string keys."""


def _construct_map(loader: yaml.SafeLoader, node: yaml.MappingNode) -> _Map:
    loader.flatten_mapping(node)
    result = _Map()
    result.line = node.start_mark.line + 1
    result.lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        key_line = key_node.start_mark.line + 1
        if not isinstance(key, str):
            raise _YamlShapeError(key_line, f"key {key!r} must be a string")
        if key in result:
            raise _YamlShapeError(key_line, f"duplicate key {key!r}")
        result[key] = loader.construct_object(value_node, deep=True)
        result.lines[key] = key_line
    return result


def _construct_seq(loader: yaml.SafeLoader, node: yaml.SequenceNode) -> _Seq:
    result = _Seq(loader.construct_object(child, deep=True) for child in node.value)
    result.line = node.start_mark.line + 1
    result.lines = [child.start_mark.line + 1 for child in node.value]
    return result


_LineLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_LineLoader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)


class _YamlShapeError(Exception):
    """Raised inside YAML construction; turned into a ConfigError with the file name."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


class _Reader:
    """Validates the parsed document, turning every problem into a ConfigError naming file, line and key."""

    def __init__(self, source: str, base_dir: Path | None = None) -> None:
        self.source = source
        self.base_dir = base_dir  # relative key and trusted-root paths are read from here
        self._keys: dict[Path, PublicKey] = {}

    def fail(self, line: int | None, key: str, message: str) -> ConfigError:
        where = f"{self.source}:{line}" if line else self.source
        return ConfigError(f"policy file {where}: {key}: {message}" if key else f"policy file {where}: {message}")

    def keys(self, data: _Map, key: str, allowed: Sequence[str]) -> None:
        for name in data:
            path = f"{key}.{name}" if key else name
            if name not in allowed:
                raise self.fail(data.lines[name], path, f"unknown key; expected one of {', '.join(allowed)}")

    def mapping(self, value: Any, line: int | None, key: str) -> _Map:
        if not isinstance(value, _Map):
            raise self.fail(line, key, f"must be a mapping, got {_kind(value)}")
        return value

    def actions(self, data: _Map, key: str) -> dict[Verdict, Action]:
        raw = self.mapping(data["actions"], data.lines["actions"], key)
        verdicts = [v.value for v in Verdict]
        self.keys(raw, key, verdicts)
        out: dict[Verdict, Action] = {}
        for name, value in raw.items():
            if not isinstance(value, str) or value not in {a.value for a in Action}:
                raise self.fail(
                    raw.lines[name],
                    f"{key}.{name}",
                    f"{value!r} is not an action; expected one of {', '.join(a.value for a in Action)}",
                )
            out[Verdict(name)] = Action(value)
        return out

    def categories(self, data: _Map, key: str) -> frozenset[Category]:
        raw = data["block_categories"]
        line = data.lines["block_categories"]
        if not isinstance(raw, _Seq):
            raise self.fail(line, key, f"must be a list of categories, got {_kind(raw)}")
        out: set[Category] = set()
        for index, value in enumerate(raw):
            if not isinstance(value, str) or value not in {c.value for c in Category}:
                raise self.fail(
                    raw.lines[index],
                    f"{key}[{index}]",
                    f"{value!r} is not a category; expected one of {', '.join(c.value for c in Category)}",
                )
            out.add(Category(value))
        return frozenset(out)

    def monotonic(self, actions: Mapping[Verdict, Action], line: int | None, key: str) -> None:
        ordered = [(v, actions[v]) for v in sorted(Verdict, key=_ORDER.__getitem__)]
        for (milder_verdict, first), (worse_verdict, second) in pairwise(ordered):
            if _ACTION_ORDER[second] < _ACTION_ORDER[first]:
                raise self.fail(
                    line,
                    key,
                    f"{worse_verdict.value}: {second.value} is milder than {milder_verdict.value}: {first.value}; "
                    "the action may not get milder as the verdict gets worse",
                )

    def policy(self, document: Any) -> Policy:
        if document is None:
            raise self.fail(None, "", f"is empty; expected a mapping starting with 'version: {POLICY_VERSION}'")
        if not isinstance(document, _Map):
            raise self.fail(getattr(document, "line", None), "", f"must be a mapping, got {_kind(document)}")
        self.keys(document, "", ("version", "default", "repositories"))
        if "version" not in document:
            raise self.fail(document.line, "version", f"required; this Tollgate reads version {POLICY_VERSION}")
        version = document["version"]
        if type(version) is not int or version != POLICY_VERSION:  # bool and float compare equal to 1
            raise self.fail(
                document.lines["version"], "version", f"{version!r} is not supported; expected {POLICY_VERSION}"
            )

        actions: dict[Verdict, Action] = {}
        blocked: frozenset[Category] = frozenset()
        trust = TrustPolicy()
        if "default" in document:
            default = self.mapping(document["default"], document.lines["default"], "default")
            self.keys(default, "default", ("actions", "block_categories", "signatures"))
            if "actions" in default:
                actions = self.actions(default, "default.actions")
            if "block_categories" in default:
                blocked = self.categories(default, "default.block_categories")
            if "signatures" in default:
                trust = self.trust(default, "default.signatures", TrustPolicy())
            self.monotonic({**DEFAULT_ACTIONS, **actions}, document.lines["default"], "default.actions")

        entries: list[PolicyEntry] = []
        if "repositories" in document:
            raw = document["repositories"]
            if not isinstance(raw, _Seq):
                raise self.fail(document.lines["repositories"], "repositories", f"must be a list, got {_kind(raw)}")
            for index, item in enumerate(raw):
                entries.append(self.entry(item, raw.lines[index], f"repositories[{index}]", actions, trust))
        return Policy(
            actions={**DEFAULT_ACTIONS, **actions},
            block_categories=blocked,
            repositories=tuple(entries),
            source=self.source,
            signatures=trust,
        )

    def entry(
        self,
        item: Any,
        line: int,
        key: str,
        default_actions: Mapping[Verdict, Action],
        default_trust: TrustPolicy,
    ) -> PolicyEntry:
        data = self.mapping(item, line, key)
        self.keys(data, key, ("match", "actions", "block_categories", "signatures"))
        if "match" not in data:
            raise self.fail(line, f"{key}.match", "required (a repository glob such as 'team/**')")
        match = data["match"]
        if not isinstance(match, str):
            raise self.fail(data.lines["match"], f"{key}.match", f"must be a string, got {_kind(match)}")
        actions = self.actions(data, f"{key}.actions") if "actions" in data else {}
        blocked = self.categories(data, f"{key}.block_categories") if "block_categories" in data else None
        trust = self.trust(data, f"{key}.signatures", default_trust) if "signatures" in data else None
        self.monotonic({**DEFAULT_ACTIONS, **default_actions, **actions}, line, f"{key}.actions")
        try:
            return PolicyEntry(match=match, actions=actions, block_categories=blocked, line=line, signatures=trust)
        except ConfigError as exc:
            raise self.fail(data.lines["match"], f"{key}.match", str(exc)) from None

    # ----------------------------------------------------------------------------------------- signatures

    def trust(self, data: _Map, key: str, inherited: TrustPolicy) -> TrustPolicy:
        """The ``signatures`` mapping of ``data`` over ``inherited``, every key file and root loaded now."""
        raw = self.mapping(data["signatures"], data.lines["signatures"], key)
        self.keys(raw, key, _TRUST_KEYS)
        changes: dict[str, Any] = {}
        if "required" in raw:
            if not isinstance(raw["required"], bool):
                raise self.fail(
                    raw.lines["required"], f"{key}.required", f"must be true or false, got {_kind(raw['required'])}"
                )
            changes["required"] = raw["required"]
        if "unsigned" in raw:
            value = raw["unsigned"]
            if not isinstance(value, str) or value not in {a.value for a in Action}:
                raise self.fail(
                    raw.lines["unsigned"],
                    f"{key}.unsigned",
                    f"{value!r} is not an action; expected one of {', '.join(a.value for a in Action)}",
                )
            changes["unsigned"] = Action(value)
        if "grace_seconds" in raw:
            value = raw["grace_seconds"]
            if type(value) is not int or not 0 <= value <= MAX_GRACE_SECONDS:  # bool is an int subclass
                raise self.fail(
                    raw.lines["grace_seconds"],
                    f"{key}.grace_seconds",
                    f"{value!r} is not a whole number of seconds from 0 to {MAX_GRACE_SECONDS}",
                )
            changes["grace_seconds"] = value
        if "keys" in raw:
            changes["keys"] = self.key_files(raw, f"{key}.keys")
        if "identities" in raw:
            changes["identities"] = self.identities(raw, f"{key}.identities")
        if "trusted_root" in raw:
            changes["trusted_root"] = self.trusted_root(raw, f"{key}.trusted_root")
        if "notation" in raw:
            changes["notation"] = self.notation(raw, f"{key}.notation")
        trust = replace(inherited, **changes)
        if trust.required and not trust.has_signers:
            raise self.fail(
                data.lines["signatures"],
                key,
                "required: true needs keys, identities or notation identities (here or in default.signatures)",
            )
        return trust

    def _path(self, value: Any, line: int, key: str) -> Path:
        if not isinstance(value, str) or not value:
            raise self.fail(line, key, f"must be a file path, got {_kind(value)}")
        path = Path(value)
        return path if path.is_absolute() or self.base_dir is None else self.base_dir / path

    def key_files(self, raw: _Map, key: str) -> tuple[PublicKey, ...]:
        items = raw["keys"]
        if not isinstance(items, _Seq):
            raise self.fail(raw.lines["keys"], key, f"must be a list of public key files, got {_kind(items)}")
        out: list[PublicKey] = []
        for index, value in enumerate(items):
            path = self._path(value, items.lines[index], f"{key}[{index}]")
            if path not in self._keys:
                try:
                    self._keys[path] = load_public_key_file(path)
                except ConfigError as exc:
                    raise self.fail(items.lines[index], f"{key}[{index}]", str(exc)) from None
            out.append(self._keys[path])
        return tuple(out)

    def identities(self, raw: _Map, key: str) -> tuple[IdentityPolicy, ...]:
        items = raw["identities"]
        if not isinstance(items, _Seq):
            raise self.fail(raw.lines["identities"], key, f"must be a list of identities, got {_kind(items)}")
        out: list[IdentityPolicy] = []
        for index, item in enumerate(items):
            where = f"{key}[{index}]"
            data = self.mapping(item, items.lines[index], where)
            self.keys(data, where, _IDENTITY_KEYS)
            for name, value in data.items():
                if not isinstance(value, str) or not value:
                    raise self.fail(
                        data.lines[name], f"{where}.{name}", f"must be a non-empty string, got {_kind(value)}"
                    )
            if "issuer" not in data:
                # Without an issuer anyone with an account at any OIDC provider could claim the subject.
                raise self.fail(data.line, f"{where}.issuer", "required (the OIDC issuer that vouches for the subject)")
            try:
                out.append(IdentityPolicy(**data))
            except ConfigError as exc:
                raise self.fail(items.lines[index], where, str(exc)) from None
        return tuple(out)

    def notation(self, raw: _Map, key: str) -> NotationTrust:
        data = self.mapping(raw["notation"], raw.lines["notation"], key)
        self.keys(data, key, _NOTATION_KEYS)
        if "trust_store" not in data:
            raise self.fail(data.line, f"{key}.trust_store", "required (the root CA certificates signers chain to)")
        path = self._path(data["trust_store"], data.lines["trust_store"], f"{key}.trust_store")
        items = data.get("identities")
        if not isinstance(items, _Seq) or not items:
            line = data.lines["identities"] if "identities" in data else data.line
            raise self.fail(line, f"{key}.identities", 'must be a non-empty list of X.509 subjects (or "*")')
        texts: list[str] = []
        for index, item in enumerate(items):
            if not isinstance(item, str) or not item.strip():
                raise self.fail(
                    items.lines[index], f"{key}.identities[{index}]", f"must be a string, got {_kind(item)}"
                )
            texts.append(item)
        try:
            return notation_trust(load_trust_store(path), texts, str(path))
        except ConfigError as exc:
            raise self.fail(data.line, key, str(exc)) from None

    def trusted_root(self, raw: _Map, key: str) -> Path:
        from workers.signatures.bundles import load_trusted_root
        from workers.signatures.trustroot import load_trust_root

        path = self._path(raw["trusted_root"], raw.lines["trusted_root"], key)
        try:
            # Both views are checked now (the legacy verifier's and sigstore's) so no scan fails on them later.
            load_trust_root(path)
            load_trusted_root(path)
        except ConfigError as exc:
            raise self.fail(raw.lines["trusted_root"], key, str(exc)) from None
        return path


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, _Map):
        return "a mapping"
    if isinstance(value, _Seq):
        return "a list"
    return f"{type(value).__name__} {value!r}"[:80]


def parse_policy(text: str, source: str = "<policy>", base_dir: Path | None = None) -> Policy:
    """Parse and validate policy YAML; ``source`` names the file in error messages.

    Relative key and trusted-root paths are read from ``base_dir`` (the policy file's directory), else
    from the working directory.
    """
    try:
        document = yaml.load(text, Loader=_LineLoader)  # noqa: S506 - _LineLoader is a SafeLoader
    except _YamlShapeError as exc:
        raise ConfigError(f"policy file {source}:{exc.line}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise ConfigError(f"policy file {where}: invalid YAML: {getattr(exc, 'problem', None) or exc}") from None
    return _Reader(source, base_dir).policy(document)


def load_policy(path: Path) -> Policy:
    """Read and validate the policy file at ``path``; any problem is a ConfigError naming the file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"policy file {path}: not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"policy file {path}: cannot read it: {exc.strerror or exc}") from None
    return parse_policy(text, str(path), Path(path).parent)


_CACHE: dict[str, tuple[tuple[int, int], Policy]] = {}


def cached_policy(path: Path | None) -> Policy:
    """The policy at ``path`` (built-in default when None), re-read only when the file's mtime or size changes.

    Jobs read settings per job; this keeps that cheap while an edited file takes effect on the next job.
    A file that became invalid raises again on every call (never a stale policy in silence).
    """
    if path is None:
        return Policy()
    key = str(Path(path).resolve())
    try:
        stat = Path(path).stat()
    except OSError as exc:
        raise ConfigError(f"policy file {path}: cannot read it: {exc.strerror or exc}") from None
    stamp = (stat.st_mtime_ns, stat.st_size)
    hit = _CACHE.get(key)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    policy = load_policy(path)
    _CACHE[key] = (stamp, policy)
    return policy


# --------------------------------------------------------------------------------------------- rollup


@dataclass(frozen=True)
class Decision:
    """A verdict, the action policy takes for it, and why."""

    verdict: Verdict
    action: Action
    explanation: str
    policy: RepositoryPolicy | None = None  # the effective repository policy that chose the action
    blocked_categories: tuple[Category, ...] = ()  # block_categories that forced quarantine
    signatures: SignatureStatus | None = None  # the trust policy's conclusion, when it was consulted


def _weight(finding: Finding) -> Verdict:
    """What a single finding is worth on its own, by severity x confidence."""
    sev, conf = finding.severity, finding.confidence
    if sev is Severity.CRITICAL and conf is not Confidence.LOW:
        return Verdict.MALICIOUS
    if sev is Severity.HIGH and conf is Confidence.HIGH:
        return Verdict.MALICIOUS
    if sev.rank >= Severity.HIGH.rank or (sev is Severity.MEDIUM and conf is not Confidence.LOW):
        return Verdict.SUSPICIOUS
    return Verdict.CLEAN


def _counted(finding: Finding) -> Verdict:
    """A finding's weight after the category rules (secret and pua capped, integrity floored)."""
    weight = _weight(finding)
    if finding.category in _CAPPED_AT_SUSPICIOUS and weight is Verdict.MALICIOUS:
        return Verdict.SUSPICIOUS
    if finding.category in _FLOORED_AT_SUSPICIOUS and weight is Verdict.CLEAN:
        return Verdict.SUSPICIOUS
    return weight


def is_verdict_relevant(finding: Finding) -> bool:
    """Unwaived and, on its own severity x confidence, at least suspicious: the bar for block_categories."""
    return not finding.waived and _ORDER[_weight(finding)] >= _ORDER[Verdict.SUSPICIOUS]


def _sort_key(finding: Finding) -> tuple[int, int, str, str]:
    return (-finding.severity.rank, -_CONFIDENCE_RANK[finding.confidence], finding.rule, finding.path or "")


def _describe(findings: Sequence[Finding]) -> str:
    """``rule (severity, category) at /path and 2 more`` for the findings of one rule (best first)."""
    first = findings[0]
    text = f"{first.rule} ({first.severity.value}, {first.category.value})"
    if first.path:
        text += f" at {first.path}"
    if len(findings) > 1:
        text += f" and {len(findings) - 1} more"
    return text


def _by_rule(findings: Iterable[Finding]) -> list[list[Finding]]:
    groups: dict[str, list[Finding]] = {}
    for finding in sorted(findings, key=_sort_key):
        groups.setdefault(finding.rule, []).append(finding)
    return sorted(groups.values(), key=lambda group: _sort_key(group[0]))


def _join(groups: Sequence[Sequence[Finding]], shown: int) -> str:
    described = [_describe(g) for g in groups[:shown]]
    rest = len(groups) - shown
    if rest > 0:
        described.append(f"{rest} more rule{'s' if rest > 1 else ''}")
    if len(described) == 1:
        return described[0]
    return f"{described[0]} combined with " + (
        described[1] if len(described) == 2 else ", ".join(described[1:-1]) + f" and {described[-1]}"
    )


def _fit(build: Callable[[int], str], suffix: str, limit: int = EXPLANATION_LIMIT) -> str:
    """``build(shown) + suffix`` for the largest shown in 3..1 that fits ``limit``; the head is clipped last.

    The suffix (waivers, the block reason) is never clipped: it says why the action differs from the verdict.
    """
    head = ""
    for shown in (3, 2, 1):
        head = build(shown)
        if len(head) + len(suffix) <= limit:
            return head + suffix
    room = max(limit - len(suffix) - 1, 20)
    return head[:room] + "…" + suffix


def _explain(findings: Sequence[Finding], verdict: Verdict, tail: str = "") -> str:
    active = [f for f in findings if not f.waived]
    waived = sorted({f.rule for f in findings if f.waived})
    waived_note = f"; waived, not counted: {', '.join(waived[:3])}{' …' if len(waived) > 3 else ''}" if waived else ""
    if verdict is Verdict.CLEAN:
        if not active:
            head = "clean: no findings" if not waived else "clean: every finding is waived"
        else:
            names = sorted({f.rule for f in active})
            head = f"clean: no finding reaches suspicious ({len(active)} minor: {', '.join(names[:3])}"
            head += " …)" if len(names) > 3 else ")"
        return _fit(lambda _shown: head, waived_note + tail)

    deciding = [f for f in active if _counted(f) is verdict]
    groups = _by_rule(deciding)
    notes = []
    capped = sorted(
        {f.category.value for f in deciding if f.category in _CAPPED_AT_SUSPICIOUS and _weight(f) is Verdict.MALICIOUS}
    )
    floored = sorted(
        {f.category.value for f in deciding if f.category in _FLOORED_AT_SUSPICIOUS and _weight(f) is Verdict.CLEAN}
    )
    if capped:
        notes.append(f"{' and '.join(capped)} findings count as suspicious at most")
    if floored:
        notes.append(f"{' and '.join(floored)} findings count as suspicious at least")
    note = f" ({'; '.join(notes)})" if notes else ""
    return _fit(lambda shown: f"{verdict.value}: {_join(groups, shown)}{note}", waived_note + tail)


def _verdict(findings: Iterable[Finding]) -> Verdict:
    verdict = Verdict.CLEAN
    for finding in findings:
        if finding.waived:
            continue
        counted = _counted(finding)
        if _ORDER[counted] > _ORDER[verdict]:
            verdict = counted
    return verdict


def rollup(findings: Iterable[Finding]) -> tuple[Verdict, str]:
    """The worst verdict any unwaived finding supports after the category rules, and a sentence saying why.

    Each unwaived finding weighs clean, suspicious or malicious by severity x confidence; ``secret`` and
    ``pua`` findings weigh at most suspicious, ``integrity`` findings at least suspicious; the image gets
    the worst weight. Waived findings never count and are named in the explanation.
    """
    items = list(findings)
    verdict = _verdict(items)
    return verdict, _explain(items, verdict)


def judge_signatures(
    trust: TrustPolicy,
    checks: Sequence[SignatureCheck] | None,
    *,
    pushed_at: datetime,
    now: datetime,
    scope: str | None = None,
    not_checked: str = "local source",
) -> SignatureStatus:
    """What ``trust`` concludes from ``checks`` (None: not checked, for the reason ``not_checked``).

    Only signatures count (cosign keyed or keyless), not attestations. A required signature missing within
    ``grace_seconds`` of ``pushed_at`` changes nothing yet (signatures are pushed after the image) and says
    until when; after that the action is at least ``trust.unsigned``. ``scope`` names the policy entry.
    """
    if not trust.configured:
        return SignatureStatus(SignatureState.NOT_CONFIGURED)
    if checks is None:
        return SignatureStatus(SignatureState.NOT_CHECKED, trust.required, f"signatures not checked ({not_checked})")
    verified = [c for c in checks if c.verified and c.kind in SIGNATURE_KINDS]
    if verified:
        more = f" (+{len(verified) - 1} more)" if len(verified) > 1 else ""
        return SignatureStatus(
            SignatureState.VERIFIED, trust.required, f"signature verified: {verified[0].reason[:120]}{more}"
        )
    seen = f"{len(checks)} checked, none verified" if checks else "none found"
    if not trust.required:
        return SignatureStatus(SignatureState.UNSIGNED, False, f"no verified signature ({seen}; not required)")
    deadline = pushed_at + timedelta(seconds=trust.grace_seconds)
    if now < deadline:
        stamp = deadline.isoformat(timespec="seconds").replace("+00:00", "Z")
        return SignatureStatus(
            SignatureState.GRACE,
            True,
            f"unsigned ({seen}), within the grace period until {stamp}",
            grace_until=deadline,
        )
    where = f"for {scope}" if scope else "by default"
    return SignatureStatus(
        SignatureState.UNSIGNED,
        True,
        f"unsigned ({seen}): policy {where} requires a signature by {trust.describe_signers()}"
        f" (unsigned: {trust.unsigned.value})",
        floor=trust.unsigned,
    )


def decide(
    findings: Iterable[Finding],
    repository: str,
    policy: Policy | None = None,
    *,
    signatures: SignatureStatus | None = None,
) -> Decision:
    """Findings → verdict → action under the repository's policy, with the explanation shown to developers.

    ``signatures`` (from :func:`judge_signatures`) can only make the action stricter (its ``floor``) and
    ends the explanation with its clause.
    """
    items = list(findings)
    verdict = _verdict(items)
    effective = (policy or Policy()).for_repository(repository)
    action = effective.action_for(verdict)
    blockers = [f for f in items if f.category in effective.block_categories and is_verdict_relevant(f)]
    blocked = tuple(sorted({f.category for f in blockers}, key=lambda c: c.value))
    tail = ""
    if blocked:
        action = Action.QUARANTINE
        scope = f"for {effective.match}" if effective.match else "by default"
        rules = sorted({f.rule for f in blockers})
        tail = (
            f"; quarantined: policy {scope} blocks {', '.join(c.value for c in blocked)} "
            f"({', '.join(rules[:2])}{' …' if len(rules) > 2 else ''})"
        )
    if signatures is not None:
        if signatures.floor is not None and _ACTION_ORDER[signatures.floor] > _ACTION_ORDER[action]:
            action = signatures.floor
        if signatures.explanation:
            tail += f"; {signatures.explanation}"
    return Decision(
        verdict=verdict,
        action=action,
        explanation=_explain(items, verdict, tail),
        policy=effective,
        blocked_categories=blocked,
        signatures=signatures,
    )
