"""Dockerfile text to instructions, and the check that the final stage's instructions match the image history."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from workers.oci import HistoryEntry

MAX_DOCKERFILE_BYTES = 1024 * 1024  # BuildKit caps a whole attestation at 40 MiB; real Dockerfiles are KiB
MAX_INSTRUCTIONS = 10_000
BUILDKIT_COMMENT = "buildkit.dockerfile.v0"

_DIRECTIVE_RE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_HEREDOC_RE = re.compile(r"<<(-?)\s*([\"']?)([A-Za-z_][A-Za-z0-9_]*)\2")
# BuildKit prefixes a RUN that sees build args with ``|<n> k=v …`` (the args in its environment).
_ARGS_PREFIX_RE = re.compile(r"^\|(\d+)\s+")
_FROM_RE = re.compile(r"^(?:--\S+\s+)*(\S+)(?:\s+as\s+(\S+))?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction: upper-case keyword, its arguments (continuations joined), its first line."""

    keyword: str
    arguments: str
    line: int
    heredoc: bool = False

    def __str__(self) -> str:
        return f"{self.keyword} {self.arguments}".strip()


@dataclass(frozen=True)
class Mismatch:
    """One place where the Dockerfile and the image history disagree."""

    message: str
    history_index: int | None  # index into the config's history, when the disagreement names an entry
    line: int | None  # Dockerfile line, when it names an instruction


class DockerfileError(ValueError):
    """The text cannot be read as a Dockerfile (too large, too many instructions, no FROM)."""


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions in order: comments and parser directives dropped, continuations joined, heredocs consumed."""
    if len(text.encode("utf-8", errors="replace")) > MAX_DOCKERFILE_BYTES:
        raise DockerfileError(f"Dockerfile is larger than {MAX_DOCKERFILE_BYTES} bytes")
    lines = text.splitlines()
    escape = "\\"
    position = 0
    # Parser directives only count before the first instruction or other comment-free line.
    while position < len(lines):
        match = _DIRECTIVE_RE.match(lines[position].strip())
        if not match:
            break
        if match.group(1).lower() == "escape" and match.group(2) in ("`", "\\"):
            escape = match.group(2)
        position += 1
    out: list[Instruction] = []
    while position < len(lines):
        raw = lines[position]
        start = position
        position += 1
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        parts = [stripped]
        # A line ending in the escape character continues; comment and empty lines inside are skipped.
        continuing = stripped.endswith(escape)
        if continuing:
            parts[0] = stripped[: -len(escape)]
        while continuing and position < len(lines):
            follow = lines[position].strip()
            position += 1
            if not follow or follow.startswith("#"):
                continue
            continuing = follow.endswith(escape)
            parts.append(follow[: -len(escape)] if continuing else follow)
        logical = " ".join(part.strip() for part in parts if part.strip())
        keyword, _, arguments = logical.partition(" ")
        heredoc = False
        if keyword.upper() in {"RUN", "COPY", "ADD"}:
            for match in _HEREDOC_RE.finditer(arguments):
                heredoc = True
                terminator = match.group(3)
                while position < len(lines):
                    body = lines[position]
                    position += 1
                    check = body.lstrip("\t") if match.group(1) == "-" else body
                    if check == terminator:
                        break
        out.append(Instruction(keyword.upper(), arguments.strip(), start + 1, heredoc))
        if len(out) > MAX_INSTRUCTIONS:
            raise DockerfileError(f"Dockerfile has more than {MAX_INSTRUCTIONS} instructions")
    if not any(i.keyword == "FROM" for i in out):
        raise DockerfileError("Dockerfile has no FROM instruction")
    return out


def final_stage(instructions: Sequence[Instruction]) -> list[Instruction]:
    """The instructions the final image's history records: its stage, after the stages it is ``FROM``.

    ``FROM <earlier stage>`` continues that stage's image, so its instructions come first (recursively).
    """
    stages: list[tuple[str | None, str, list[Instruction]]] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            match = _FROM_RE.match(instruction.arguments)
            base = match.group(1) if match else instruction.arguments
            name = match.group(2).lower() if match and match.group(2) else None
            stages.append((name, base.lower(), []))
        elif stages:
            stages[-1][2].append(instruction)
    if not stages:
        return []
    chain: list[Instruction] = []
    index = len(stages) - 1
    seen: set[int] = set()
    while index not in seen:
        seen.add(index)
        _, base, body = stages[index]
        chain = body + chain
        earlier = [i for i, (name, _, _) in enumerate(stages[:index]) if name == base]
        if not earlier:
            break
        index = earlier[-1]
    return chain


def _collapse(text: str) -> str:
    return " ".join(text.split())


def history_keyword(created_by: str) -> str:
    """The instruction keyword a BuildKit history entry records (``RUN``, ``COPY`` …), upper case."""
    return created_by.strip().partition(" ")[0].upper()


def history_command(created_by: str) -> str:
    """The command of a BuildKit ``RUN`` history entry without ``# buildkit`` and the ``|n k=v`` prefix."""
    text = created_by.strip()
    text = text.removesuffix("# buildkit").rstrip()
    _, _, rest = text.partition(" ")
    rest = rest.strip()
    match = _ARGS_PREFIX_RE.match(rest)
    if match:
        count = int(match.group(1))
        tokens = rest[match.end() :].split(" ")
        rest = " ".join(tokens[min(count, len(tokens)) :])
    return _collapse(rest)


def _dockerfile_command(arguments: str) -> str:
    """What BuildKit records for a RUN's arguments: flags (``--mount=…``) dropped, exec form joined."""
    tokens = arguments.split()
    while tokens and tokens[0].startswith("--"):
        tokens.pop(0)
    rest = " ".join(tokens)
    if rest.startswith("["):
        try:
            parsed = json.loads(rest)
        except ValueError:
            parsed = None
        if isinstance(parsed, list) and all(isinstance(p, str) for p in parsed):
            return _collapse(" ".join(parsed))
    return _collapse(rest)


def _clip(text: str, limit: int = 120) -> str:
    cleaned = "".join(c if c.isprintable() else "?" for c in text)
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


def check_history(instructions: Sequence[Instruction], history: Sequence[HistoryEntry]) -> list[Mismatch]:
    """Disagreements between the final stage of ``instructions`` and the tail of ``history``.

    BuildKit records one history entry per instruction after ``FROM``, in order, so the final stage's
    instructions must be the last entries of the history: same keywords, and for ``RUN`` the same command
    (BuildKit keeps the text and prefixes the shell and build args, so the Dockerfile's command must end
    the recorded one). Other instructions are compared by keyword only: BuildKit rewrites their arguments.
    """
    stage = final_stage(instructions)
    if not stage:
        return [Mismatch("the Dockerfile's final stage has no instructions to compare", None, None)]
    if len(history) < len(stage):
        return [
            Mismatch(
                f"the Dockerfile's final stage has {len(stage)} instructions but the image history only "
                f"{len(history)} entries",
                None,
                stage[0].line,
            )
        ]
    offset = len(history) - len(stage)
    mismatches: list[Mismatch] = []
    for position, instruction in enumerate(stage):
        index = offset + position
        entry = history[index]
        created_by = entry.created_by or ""
        keyword = history_keyword(created_by)
        where = f"Dockerfile line {instruction.line} `{_clip(str(instruction))}`"
        recorded = f"history[{index}] `{_clip(created_by)}`"
        if entry.comment != BUILDKIT_COMMENT:
            mismatches.append(Mismatch(f"{where} has no BuildKit history entry: {recorded}", index, instruction.line))
        elif keyword != instruction.keyword:
            mismatches.append(Mismatch(f"{where} but the image history has {recorded}", index, instruction.line))
        elif instruction.keyword == "RUN" and not instruction.heredoc:
            expected = _dockerfile_command(instruction.arguments)
            if expected and not history_command(created_by).endswith(expected):
                mismatches.append(Mismatch(f"{where} runs something else than {recorded}", index, instruction.line))
    return mismatches
