"""Strict parsing of in-toto Statements from their exact signed bytes, and their binding to an image digest."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from workers.domain import Digest
from workers.errors import SignatureError
from workers.signatures.model import printable
from workers.signatures.simplesigning import loads_strict

IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPES = frozenset({"https://in-toto.io/Statement/v0.1", "https://in-toto.io/Statement/v1"})
# SBOM attestations run to megabytes; nothing legitimate is larger than this.
MAX_STATEMENT_BYTES = 32 * 1024 * 1024
# Predicates (SBOM component trees) nest deeper than a simple-signing payload.
MAX_STATEMENT_DEPTH = 64
# The digests a mismatching statement names are quoted in the reason: three sha512 ones fit, a flood does not.
MAX_SHOWN_DIGESTS = 500


def parse_statement(payload: bytes) -> dict[str, Any]:
    """Parse an in-toto Statement (v0.1 or v1) strictly enough to trust its subject and predicateType."""
    doc = loads_strict(payload, "in-toto statement", MAX_STATEMENT_BYTES, MAX_STATEMENT_DEPTH)
    if not isinstance(doc, dict):
        raise SignatureError("in-toto statement is not a JSON object")
    statement_type = doc.get("_type")
    if statement_type not in STATEMENT_TYPES:
        shown = statement_type[:80] if isinstance(statement_type, str) else type(statement_type).__name__
        raise SignatureError(f"statement _type is {shown!r}, not an in-toto Statement v0.1 or v1")
    subjects = doc.get("subject")
    if not isinstance(subjects, list) or not subjects:
        raise SignatureError("statement has no subject list")
    for index, entry in enumerate(subjects):
        digests = entry.get("digest") if isinstance(entry, dict) else None
        if not isinstance(digests, dict) or not digests:
            raise SignatureError(f"statement subject[{index}] has no digest object")
        if not all(isinstance(value, str) for value in digests.values()):
            raise SignatureError(f"statement subject[{index}] digest values are not strings")
        name = entry.get("name")
        if name is not None and not isinstance(name, str):
            raise SignatureError(f"statement subject[{index}] name is not a string")
    predicate_type = doc.get("predicateType")
    if not isinstance(predicate_type, str) or not predicate_type:
        raise SignatureError("statement has no predicateType")
    predicate = doc.get("predicate")
    if predicate is not None and not isinstance(predicate, dict):
        raise SignatureError("statement predicate is not an object")
    return doc


def bind_statement(statement: Mapping[str, Any], subject: Digest) -> None:
    """Require that a parsed statement names ``subject`` among its subjects; the reason lists what it names."""
    algorithm, _, wanted = subject.partition(":")
    found: list[str] = []
    for entry in statement["subject"]:
        value = entry["digest"].get(algorithm)
        if isinstance(value, str) and value.lower() == wanted:
            return
        found.extend(f"{alg}:{value}" for alg, value in entry["digest"].items())
    shown = ", ".join(found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
    raise SignatureError(f"statement is for {printable(shown, MAX_SHOWN_DIGESTS)}, not {subject}")
