"""Strict parsing of cosign simple-signing payloads from their exact signed bytes, and their binding to a digest."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from workers.domain import Digest, parse_digest
from workers.errors import SignatureError

COSIGN_SIGNATURE_TYPE = "cosign container image signature"
SIMPLE_SIGNING_MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
# Real payloads are a few hundred bytes; annotations (-a k=v) make them grow, but never to megabytes.
MAX_PAYLOAD_BYTES = 256 * 1024
# JSON nesting deeper than this is hostile; the payload format itself is three levels deep.
MAX_JSON_DEPTH = 32


@dataclass(frozen=True)
class SimpleSigningPayload:
    """What a cosign simple-signing payload claims: the signed manifest digest, its reference and annotations."""

    manifest_digest: Digest
    docker_reference: str | None
    optional: Mapping[str, Any] | None


def go_fold_equal(left: str, right: str) -> bool:
    """Compare JSON keys as Go's encoding/json does for struct fields (simple Unicode case folding).

    Go matches ``Docker-Manifest-Digest`` (and the long s for ``s``, the Kelvin sign for ``k``) to the field tag;
    ``str.casefold`` would also equate ``ß`` with ``ss``, which Go does not, so characters are compared one by one.
    """
    if len(left) != len(right):
        return False
    return all(a == b or a.lower() == b.lower() or a.upper() == b.upper() for a, b in zip(left, right, strict=True))


def get_field(obj: Mapping[str, Any], name: str, where: str) -> Any:
    """The value of the key matching ``name`` the Go way, ``None`` when absent; two matching keys are ambiguous.

    Go would silently take the last of two case-variants; refusing them closes the door to a payload that
    means one thing to cosign and another to a reader of the JSON.
    """
    matches = [key for key in obj if go_fold_equal(key, name)]
    if len(matches) > 1:
        raise SignatureError(f"payload is ambiguous: {where} has keys {', '.join(sorted(matches))!s}")
    return obj[matches[0]] if matches else None


def check_depth(value: Any, limit: int = MAX_JSON_DEPTH) -> None:
    """Refuse parsed JSON nested deeper than ``limit`` (walked iteratively, so depth cannot exhaust the stack)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                raise SignatureError(f"JSON is nested deeper than {limit} levels")
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))


def _reject_constant(name: str) -> Any:
    # Go's decoder refuses NaN and Infinity; Python's would take them.
    raise SignatureError(f"JSON contains {name}, which is not JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise SignatureError(f"JSON has a duplicate key {key[:80]!r}")
        result[key] = value
    return result


def loads_strict(data: bytes, what: str, max_bytes: int, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse untrusted JSON bytes: bounded size and depth, strict UTF-8, no duplicate keys, no NaN.

    Every failure is a SignatureError naming ``what``; nothing else escapes.
    """
    if not isinstance(data, bytes | bytearray):
        raise SignatureError(f"{what} is not bytes")
    if len(data) > max_bytes:
        raise SignatureError(f"{what} is {len(data)} bytes, more than the {max_bytes} allowed")
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SignatureError(f"{what} is not UTF-8: {exc.reason} at byte {exc.start}") from None
    try:
        # The C decoder guards its own recursion (RecursionError, caught below); the walk then bounds depth.
        doc = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
        check_depth(doc, max_depth)
    except SignatureError as exc:
        raise SignatureError(f"{what} is not acceptable JSON: {exc}") from None
    except (ValueError, RecursionError) as exc:
        # json.JSONDecodeError is a ValueError; so is an integer literal too long to convert.
        raise SignatureError(f"{what} is not valid JSON: {str(exc)[:200]}") from None
    return doc


def parse_simple_signing(payload: bytes) -> SimpleSigningPayload:
    """Parse ``payload`` (the exact signed bytes) strictly; raise SignatureError with the reason otherwise."""
    doc = loads_strict(payload, "simple-signing payload", MAX_PAYLOAD_BYTES)
    if not isinstance(doc, dict):
        raise SignatureError("simple-signing payload is not a JSON object")
    critical = get_field(doc, "critical", "the payload")
    if not isinstance(critical, dict):
        raise SignatureError("simple-signing payload has no 'critical' object")
    kind = get_field(critical, "type", "critical")
    if kind != COSIGN_SIGNATURE_TYPE:
        shown = kind[:80] if isinstance(kind, str) else type(kind).__name__
        raise SignatureError(f"payload type is {shown!r}, not {COSIGN_SIGNATURE_TYPE!r}")
    image = get_field(critical, "image", "critical")
    if not isinstance(image, dict):
        raise SignatureError("simple-signing payload has no 'critical.image' object")
    raw_digest = get_field(image, "docker-manifest-digest", "critical.image")
    if not isinstance(raw_digest, str):
        raise SignatureError("simple-signing payload has no 'docker-manifest-digest' string")
    try:
        digest = parse_digest(raw_digest)
    except ValueError:
        raise SignatureError(f"payload digest {raw_digest[:80]!r} is not a valid digest") from None
    identity = get_field(critical, "identity", "critical")
    reference: str | None = None
    if identity is not None:
        if not isinstance(identity, dict):
            raise SignatureError("simple-signing payload 'critical.identity' is not an object")
        raw_reference = get_field(identity, "docker-reference", "critical.identity")
        if raw_reference is not None and not isinstance(raw_reference, str):
            raise SignatureError("simple-signing payload 'docker-reference' is not a string")
        reference = raw_reference
    optional = get_field(doc, "optional", "the payload")
    if optional is not None and not isinstance(optional, dict):
        raise SignatureError("simple-signing payload 'optional' is neither null nor an object")
    return SimpleSigningPayload(manifest_digest=digest, docker_reference=reference, optional=optional)


def bind_payload(payload: bytes, subject: Digest) -> SimpleSigningPayload:
    """Parse ``payload`` and require that it signs ``subject``; the reason names the digest it is for otherwise."""
    parsed = parse_simple_signing(payload)
    if parsed.manifest_digest != subject:
        raise SignatureError(f"payload is for {parsed.manifest_digest}")
    return parsed
