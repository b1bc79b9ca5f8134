"""Known-bad file hashes from the IOC lists (rules/iocs/*.yaml, sha256 indicators), checked on executables."""

from __future__ import annotations

import hashlib

from rules.loader import Ruleset
from workers.domain import Finding
from workers.scanners.base import FileContext, finding_for

ELF_MAGIC = b"\x7fELF"


class HashScanner:
    """sha256 of every ELF file read whole, looked up in the ruleset's hash indicators.

    Only executables are hashed: published malware hashes are of binaries, and hashing every file would
    add a second full sha256 pass over the layer to the unavoidable one (the diff_id).
    """

    name = "hashes"

    def __init__(self, ruleset: Ruleset) -> None:
        self._hashes = dict(ruleset.ioc_hashes)
        self._rules = ruleset.rules

    def scan_file(self, ctx: FileContext) -> list[Finding]:
        """A finding when ``ctx`` is an ELF whose sha256 is a listed indicator."""
        if not self._hashes or ctx.content[:4] != ELF_MAGIC or len(ctx.content) != ctx.size:
            return []
        digest = hashlib.sha256(ctx.content).hexdigest()
        rule_id = self._hashes.get(digest)
        meta = self._rules.get(rule_id) if rule_id else None
        if meta is None:
            return []
        return [
            finding_for(
                meta,
                message=f"{meta.description} (file sha256 {digest} is a listed indicator)",
                layer=ctx.layer_digest,
                path="/" + ctx.path,
                evidence=f"sha256:{digest}",
            )
        ]
