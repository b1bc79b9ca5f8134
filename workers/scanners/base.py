"""What scanners see and return: file and config contexts, and the scanner protocols."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from rules.loader import RuleMeta
from workers.domain import Digest, Finding
from workers.oci import ImageConfig


@dataclass(frozen=True)
class FileContext:
    """One regular file of one layer, with its (possibly truncated) content."""

    path: str  # root-relative, no leading '/'
    layer_index: int
    layer_digest: Digest
    step: str | None
    mode: int
    size: int
    content: bytes


@dataclass(frozen=True)
class ConfigContext:
    """The image config and its build history, aligned to layers where possible."""

    config: ImageConfig
    layer_steps: tuple[str | None, ...]
    config_steps: tuple[str, ...]
    repository: str


class FileScanner(Protocol):
    """Looks at file contents."""

    name: str

    def scan_file(self, ctx: FileContext) -> list[Finding]:
        """Findings about one file."""
        ...


class ConfigScanner(Protocol):
    """Looks at the image config and history."""

    name: str

    def scan_config(self, ctx: ConfigContext) -> list[Finding]:
        """Findings about the config."""
        ...


def finding_for(meta: RuleMeta, *, message: str | None = None, **where: Any) -> Finding:
    """A finding of rule ``meta``: its grading from the rule, the message and ``where`` (path, layer, …) given."""
    return Finding(
        rule=meta.id,
        severity=meta.severity,
        category=meta.category,
        confidence=meta.confidence,
        attack=meta.attack,
        message=message if message is not None else meta.description,
        **where,
    )
