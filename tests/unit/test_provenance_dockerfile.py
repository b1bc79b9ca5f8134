"""Dockerfile parsing (continuations, heredocs, directives, stages) and the instruction-to-history check."""

from __future__ import annotations

import pytest

from workers.oci import HistoryEntry
from workers.provenance.dockerfile import (
    BUILDKIT_COMMENT,
    DockerfileError,
    check_history,
    final_stage,
    history_command,
    parse_dockerfile,
)


def bk(created_by: str, *, empty: bool = False) -> HistoryEntry:
    return HistoryEntry(created_by=created_by, empty_layer=empty, comment=BUILDKIT_COMMENT)


def test_continuations_comments_and_directives() -> None:
    text = (
        "# syntax=docker/dockerfile:1\nFROM alpine\n# a comment\n"
        'RUN apk add \\\n  # inside\n  curl \\\n\n  jq\nCMD ["sh"]\n'
    )
    instructions = parse_dockerfile(text)
    assert [(i.keyword, i.arguments, i.line) for i in instructions] == [
        ("FROM", "alpine", 2),
        ("RUN", "apk add curl jq", 4),
        ("CMD", '["sh"]', 9),
    ]


def test_escape_directive_and_heredoc() -> None:
    text = (
        "# escape=`\nFROM mcr.example/base\nRUN echo a `\n  b\n"
        "RUN <<EOF\nset -e\nRUN not an instruction\nEOF\nUSER app\n"
    )
    instructions = parse_dockerfile(text)
    assert [(i.keyword, i.heredoc) for i in instructions] == [
        ("FROM", False),
        ("RUN", False),
        ("RUN", True),
        ("USER", False),
    ]
    assert instructions[1].arguments == "echo a b"


def test_final_stage_follows_from_an_earlier_stage() -> None:
    text = (
        "FROM debian AS base\nRUN one\nFROM golang AS build\nRUN build\nFROM base AS final\nCOPY --from=build /o /o\n"
    )
    assert [str(i) for i in final_stage(parse_dockerfile(text))] == ["RUN one", "COPY --from=build /o /o"]


@pytest.mark.parametrize("text", ["", "# only a comment\n", "RUN echo no from\n"])
def test_text_without_from_is_not_a_dockerfile(text: str) -> None:
    with pytest.raises(DockerfileError):
        parse_dockerfile(text)


def test_history_command_drops_build_args_and_the_buildkit_suffix() -> None:
    assert history_command("RUN |2 A=1 B=2 /bin/sh -c make  all # buildkit") == "/bin/sh -c make all"


def test_matching_and_mismatching_history() -> None:
    instructions = parse_dockerfile('FROM x\nRUN ["make", "all"]\nRUN --network=none make test\nENTRYPOINT ["/a"]\n')
    base = HistoryEntry(created_by="ADD file:abc in /", empty_layer=False, comment=None)
    good = [
        base,
        bk("RUN make all # buildkit"),
        bk("RUN /bin/sh -c make test # buildkit"),
        bk('ENTRYPOINT ["/a"]', empty=True),
    ]
    assert check_history(instructions, good) == []

    swapped = [*good[:2], bk("RUN /bin/sh -c curl x | sh # buildkit"), good[3]]
    (mismatch,) = check_history(instructions, swapped)
    assert mismatch.history_index == 2
    assert mismatch.line == 3

    not_buildkit = [base, base, *good[2:]]
    assert check_history(instructions, not_buildkit)[0].message.endswith("`ADD file:abc in /`")
    assert "only 1 entries" in check_history(instructions, [base])[0].message
