"""The pure helpers behind the status pages: grouping and capping findings, badges, CSV cells, links."""

from __future__ import annotations

from typing import Any

import pytest

from service.pages import (
    BADGE_COLOURS,
    attack_url,
    badge_svg,
    group_findings,
    image_path,
    live_state,
    safe_cell,
    short_digest,
    target_url,
)
from tests.support.storage import digest_of


def finding(severity: str, index: int = 0, **extra: Any) -> dict[str, Any]:
    return {"rule": f"r{index}", "severity": severity, "waived": False, "evidence": "x", **extra}


def test_findings_are_grouped_most_severe_first_with_waived_ones_last() -> None:
    found = [finding("low", 1), finding("critical", 2, waived=True), finding("critical", 3), finding("info", 4)]
    groups, hidden = group_findings(found, cap=None)
    assert [g["severity"] for g in groups] == ["critical", "low", "info"] and hidden == 0
    assert [f["rule"] for f in groups[0]["items"]] == ["r3", "r2"] and groups[0]["waived"] == 1
    assert all(g["open"] for g in groups)  # few findings: every group starts open


def test_many_findings_are_capped_across_groups() -> None:
    found = [finding("critical", i) for i in range(80)] + [finding("medium", i) for i in range(80, 300)]
    groups, hidden = group_findings(found, cap=100)
    assert [len(g["items"]) for g in groups] == [80, 20] and hidden == 200
    assert [g["count"] for g in groups] == [80, 220]
    assert groups[0]["open"] and not groups[1]["open"]


def test_long_evidence_is_cut() -> None:
    [group], _ = group_findings([finding("high", evidence="a" * 5000)], cap=None)
    item = group["items"][0]
    assert len(item["evidence_excerpt"]) == 400 and item["evidence_cut"]


@pytest.mark.parametrize(
    ("technique", "url"),
    [
        ("T1496", "https://attack.mitre.org/techniques/T1496/"),
        ("T1053.003", "https://attack.mitre.org/techniques/T1053/003/"),
        ("javascript:alert(1)", None),
        ("T14x", None),
        (None, None),
    ],
)
def test_attack_links_only_for_technique_ids(technique: str | None, url: str | None) -> None:
    assert attack_url(technique) == url


def test_badges_escape_and_colour() -> None:
    for word, colour in BADGE_COLOURS.items():
        svg = badge_svg(word)
        assert svg.startswith("<svg") and f">{word}</text>" in svg and colour in svg
    hostile = badge_svg('<script>"x"</script>')
    assert "<script>" not in hostile and "&lt;script&gt;" in hostile and BADGE_COLOURS["unknown"] in hostile


def test_csv_cells_never_start_a_formula() -> None:
    for value in ("=1+1", "+1", "-1", "@A1", "\tx", "\rx"):
        assert safe_cell(value) == "'" + value
    assert safe_cell("plain") == "plain" and safe_cell(3) == "3" and safe_cell(True) == "true"


def test_links() -> None:
    digest = digest_of("x")
    assert image_path("team/app", digest) == f"/images/team/app@{digest}"
    assert short_digest(digest) == digest[:19] and short_digest(None) == ""
    assert target_url(f"team/app@{digest}") == f"/images/team/app@{digest}"
    assert target_url("waiver:12") == "/waivers#waiver-12"
    assert target_url("user:alice") is None and target_url("x@y") is None


def test_live_while_vetting_or_moving() -> None:
    assert live_state({"status": "queued"}) and live_state({"status": "scanning"})
    assert not live_state({"status": "done", "quarantine": None, "action": "allow"})
    assert live_state({"status": "done", "quarantine": {"state": "preserving"}})
    assert not live_state({"status": "done", "quarantine": {"state": "held"}})
    assert not live_state({"status": "error", "quarantine": {"state": "released"}})
