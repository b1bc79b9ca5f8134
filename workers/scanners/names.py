"""Repository names that imitate well-known images (``ubuntu1``, ``alpineos``, ``someone/nginx``)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from workers.domain import Category, Confidence, Finding, Severity

RULE_ID = "names.look-alike"
_DECORATION = re.compile(r"^(?P<core>[a-z]+?)(?:[-_.]?(?:[0-9]+|os|img|image|official|latest|new))$")


def _distance(a: str, b: str, limit: int = 2) -> int:
    """Levenshtein distance, giving up early past ``limit`` (names are short)."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        if min(current) > limit:
            return limit + 1
        previous = current
    return previous[-1]


class NameScanner:
    """Flags a repository whose last path component imitates a protected name outside trusted namespaces.

    A name is context, not a verdict: the finding is medium severity with low confidence, so it raises a
    verdict only together with other signals, and the page shows it either way.
    """

    name = "names"

    def __init__(self, protected: Iterable[str], trusted_namespaces: Iterable[str]) -> None:
        self.protected = frozenset(p.strip().lower() for p in protected if p.strip())
        self.trusted = frozenset(n.strip().lower().strip("/") for n in trusted_namespaces if n.strip())

    def imitation(self, repository: str) -> str | None:
        """The protected name ``repository`` imitates, with why; None when it does not."""
        namespace, _, base = repository.lower().rpartition("/")
        if namespace in self.trusted or (not namespace and base in self.protected):
            return None
        if base in self.protected:
            return f"'{base}' is a protected name used outside a trusted namespace ({namespace or 'none'})"
        decorated = _DECORATION.match(base)
        if decorated and decorated.group("core") in self.protected:
            return f"'{base}' decorates the protected name '{decorated.group('core')}'"
        for name in sorted(self.protected):
            if len(name) >= 5 and _distance(base, name, 1) == 1:
                return f"'{base}' is one edit away from the protected name '{name}'"
        return None

    def scan_repository(self, repository: str) -> list[Finding]:
        """A finding when the repository name imitates a protected image name."""
        why = self.imitation(repository)
        if why is None:
            return []
        return [
            Finding(
                rule=RULE_ID,
                severity=Severity.MEDIUM,
                category=Category.PUA,
                confidence=Confidence.LOW,
                attack="T1036.005",
                message="Repository name imitates a well-known image (typosquatting or masquerading)",
                evidence=why,
            )
        ]
