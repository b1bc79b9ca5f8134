"""BuildKit-shaped images for provenance tests: the history a Dockerfile build records, and SLSA provenance
attestations (v0.2 and v1, min and max mode) laid out in an index as BuildKit does (shared/docs/PROTOCOLS.md §7)."""

from __future__ import annotations

import base64
import copy
import hashlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.support.oci import OCI_INDEX, OCI_MANIFEST, LayerBlob, _canonical, _Layout, tar_layer

COMMIT = "4b22d7b6c0e1f9a8d3c2b1a0f9e8d7c6b5a4f3e2"
REPO_URL = "https://git.example/team/app.git"
CONTEXT_URI = f"{REPO_URL}#refs/tags/v1.2"
BUILDER = "https://ci.example/runners/7"
BASE_PURL = "pkg:docker/debian@bookworm-slim?platform=linux%2Famd64"
BASE_DIGEST = "a" * 64
DOCKERFILE_PATH = "docker/Dockerfile"
IN_TOTO = "application/vnd.in-toto+json"
ATTESTATION_ARTIFACT = "application/vnd.docker.attestation.manifest.v1+json"
EMPTY_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
SLSA_V02 = "https://slsa.dev/provenance/v0.2"
SLSA_V1 = "https://slsa.dev/provenance/v1"
CREATED = "2026-11-22T14:00:00Z"

DOCKERFILE = """\
# syntax=docker/dockerfile:1
ARG BASE=debian:bookworm-slim
FROM golang:1.23 AS build
WORKDIR /src
RUN go build -o /out/app ./cmd/app

FROM ${BASE}
ARG VERSION=1.2
# tools first: they change less often
RUN --mount=type=cache,target=/var/cache/apt apt-get update && \\
    apt-get install -y --no-install-recommends ca-certificates
COPY --from=build /out/app /app
ENV PATH=/app:/usr/bin
USER 10001
ENTRYPOINT ["/app"]
"""

# What BuildKit records for DOCKERFILE's final stage over a Debian base (one base layer, two of its own).
HISTORY: list[dict[str, Any]] = [
    {
        "created": CREATED,
        "created_by": "# debian.sh --arch 'amd64' out/ 'bookworm' '@1700000000'",
        "comment": "debuerreotype 0.15",
    },
    {"created": CREATED, "created_by": "ARG VERSION=1.2", "comment": "buildkit.dockerfile.v0", "empty_layer": True},
    {
        "created": CREATED,
        "created_by": "RUN |1 VERSION=1.2 /bin/sh -c apt-get update &&     apt-get install -y --no-install-recommends "
        "ca-certificates # buildkit",
        "comment": "buildkit.dockerfile.v0",
    },
    {"created": CREATED, "created_by": "COPY /out/app /app # buildkit", "comment": "buildkit.dockerfile.v0"},
    {
        "created": CREATED,
        "created_by": "ENV PATH=/app:/usr/bin",
        "comment": "buildkit.dockerfile.v0",
        "empty_layer": True,
    },
    {"created": CREATED, "created_by": "USER 10001", "comment": "buildkit.dockerfile.v0", "empty_layer": True},
    {"created": CREATED, "created_by": 'ENTRYPOINT ["/app"]', "comment": "buildkit.dockerfile.v0", "empty_layer": True},
]
LABELS = {
    "org.opencontainers.image.source": "https://git.example/team/app",
    "org.opencontainers.image.revision": COMMIT,
    "org.opencontainers.image.base.name": "docker.io/library/debian:bookworm-slim",
}


def layers() -> list[LayerBlob]:
    """Three small layers matching HISTORY's three layer-producing entries."""
    return [
        tar_layer({"etc/os-release": b'ID=debian\nVERSION_ID="12"\n'}),
        tar_layer({"etc/ssl/certs/ca.pem": b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"}),
        tar_layer({"app": b"\x7fELF placeholder binary"}),
    ]


def config(
    history: Sequence[Mapping[str, Any]] | None = None, labels: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """An image config with BuildKit's history (or ``history``) and OCI labels."""
    return {
        "history": copy.deepcopy(list(HISTORY if history is None else history)),
        "config": {"Labels": dict(LABELS if labels is None else labels), "User": "10001", "Entrypoint": ["/app"]},
    }


def _materials() -> list[dict[str, Any]]:
    return [
        {"uri": BASE_PURL, "digest": {"sha256": BASE_DIGEST}},
        {"uri": "pkg:docker/golang@1.23?platform=linux%2Famd64", "digest": {"sha256": "b" * 64}},
        {"uri": CONTEXT_URI, "digest": {"sha1": COMMIT}},
    ]


def _source(dockerfile: str) -> dict[str, Any]:
    return {
        "locations": {"step0": {"locations": [{"ranges": [{"start": {"line": 3}, "end": {"line": 3}}]}]}},
        "infos": [
            {
                "filename": DOCKERFILE_PATH,
                "language": "Dockerfile",
                "data": base64.b64encode(dockerfile.encode()).decode(),
                "llbDefinition": [{"data": "AAAA"}],
            }
        ],
    }


def provenance_v02(subject: str, *, mode: str = "max", dockerfile: str = DOCKERFILE) -> dict[str, Any]:
    """A BuildKit (before v0.28) SLSA v0.2 provenance statement (in-toto Statement v0.1) about ``subject``."""
    buildkit: dict[str, Any] = {"vcs": {"source": REPO_URL, "revision": COMMIT}}
    parameters: dict[str, Any] = {"frontend": "dockerfile.v0"}
    predicate: dict[str, Any] = {
        "builder": {"id": BUILDER},
        "buildType": "https://mobyproject.org/buildkit@v1",
        "materials": _materials(),
        "invocation": {
            "configSource": {"uri": CONTEXT_URI, "digest": {"sha1": COMMIT}, "entryPoint": DOCKERFILE_PATH},
            "parameters": parameters,
            "environment": {"platform": "linux/amd64"},
        },
        "metadata": {
            "buildInvocationID": "inv-1",
            "buildStartedOn": "2026-11-22T14:00:00Z",
            "buildFinishedOn": "2026-11-22T14:03:10Z",
            "completeness": {"parameters": mode == "max", "environment": True, "materials": False},
            "reproducible": False,
            "https://mobyproject.org/buildkit@v1#metadata": buildkit,
        },
    }
    if mode == "max":
        parameters["args"] = {"build-arg:VERSION": "1.2", "source": "docker/dockerfile:1"}
        parameters["locals"] = [{"name": "context"}, {"name": "dockerfile"}]
        predicate["buildConfig"] = {"llbDefinition": [{"id": "step0", "op": {"Op": {"source": {}}}}]}
        buildkit["source"] = _source(dockerfile)
        buildkit["layers"] = {"step0:0": [[{"mediaType": "x", "digest": "sha256:" + "c" * 64, "size": 1}]]}
    return {
        "_type": "https://in-toto.io/Statement/v0.1",
        "predicateType": SLSA_V02,
        "subject": [{"name": "pkg:docker/team/app@v1.2?platform=linux%2Famd64", "digest": {"sha256": _hex(subject)}}],
        "predicate": predicate,
    }


def provenance_v1(subject: str, *, mode: str = "max", dockerfile: str = DOCKERFILE) -> dict[str, Any]:
    """A BuildKit (v0.31+) SLSA v1 provenance statement (in-toto Statement v1) about ``subject``."""
    buildkit: dict[str, Any] = {"vcs": {"source": REPO_URL, "revision": COMMIT}}
    request: dict[str, Any] = {"frontend": "dockerfile.v0"}
    internal: dict[str, Any] = {"builderPlatform": "linux/amd64"}
    if mode == "max":
        request["args"] = {"build-arg:VERSION": "1.2", "source": "docker/dockerfile:1"}
        request["secrets"] = [{"id": "npmrc"}]
        internal["buildConfig"] = {"llbDefinition": [{"id": "step0"}]}
        buildkit["source"] = _source(dockerfile)
        buildkit["layers"] = {"step0:0": [[{"mediaType": "x", "digest": "sha256:" + "c" * 64, "size": 1}]]}
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "predicateType": SLSA_V1,
        "subject": [{"name": "pkg:docker/team/app@v1.2?platform=linux%2Famd64", "digest": {"sha256": _hex(subject)}}],
        "predicate": {
            "buildDefinition": {
                "buildType": "https://github.com/moby/buildkit/blob/master/docs/attestations/slsa-definitions.md",
                "externalParameters": {
                    "configSource": {"uri": CONTEXT_URI, "digest": {"sha1": COMMIT}, "path": DOCKERFILE_PATH},
                    "request": request,
                },
                "internalParameters": internal,
                "resolvedDependencies": _materials(),
            },
            "runDetails": {
                "builder": {"id": BUILDER},
                "metadata": {
                    "invocationID": "inv-2",
                    "startedOn": "2026-11-22T14:00:00Z",
                    "finishedOn": "2026-11-22T14:03:10Z",
                    "buildkit_metadata": buildkit,
                    "buildkit_hermetic": False,
                    "buildkit_reproducible": False,
                },
            },
        },
    }


def _hex(digest: str) -> str:
    return digest.split(":", 1)[1]


Statement = Callable[[str], Mapping[str, Any] | bytes]


def write_buildkit_layout(
    path: Path,
    statement: Statement | None,
    *,
    artifact: bool = True,
    image_config: Mapping[str, Any] | None = None,
    image_layers: Sequence[LayerBlob] | None = None,
    ref_name: str = "latest",
) -> tuple[str, str]:
    """An index of one linux/amd64 image plus, when ``statement`` is given, BuildKit's attestation manifest.

    ``statement(platform_manifest_digest)`` returns the provenance statement (or raw bytes, for hostile ones).
    ``artifact`` lays the attestation out as BuildKit v0.32+ does (OCI artifact with ``subject``), else as
    before (a dummy image config, no subject). Returns (index digest, platform manifest digest).
    """
    layout = _Layout(path)
    built = list(image_layers) if image_layers is not None else layers()
    descriptor = layout.image(built, image_config if image_config is not None else config(), ("linux", "amd64"), None)
    descriptor["platform"] = {"architecture": "amd64", "os": "linux"}
    entries = [descriptor]
    if statement is not None:
        produced = statement(descriptor["digest"])
        body = produced if isinstance(produced, bytes) else _canonical(produced)
        predicate_type = (
            SLSA_V1 if not isinstance(produced, bytes) and produced.get("predicateType") == SLSA_V1 else SLSA_V02
        )
        statement_digest = layout.put(body)
        layer = {
            "mediaType": IN_TOTO,
            "digest": statement_digest,
            "size": len(body),
            "annotations": {"in-toto.io/predicate-type": predicate_type},
        }
        manifest: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": [layer]}
        if artifact:
            layout.put(b"{}")
            manifest["artifactType"] = ATTESTATION_ARTIFACT
            manifest["config"] = {"mediaType": "application/vnd.oci.empty.v1+json", "digest": EMPTY_DIGEST, "size": 2}
            manifest["subject"] = {k: descriptor[k] for k in ("mediaType", "digest", "size")}
        else:
            dummy = _canonical(
                {
                    "architecture": "unknown",
                    "os": "unknown",
                    "config": {},
                    "rootfs": {"type": "layers", "diff_ids": [statement_digest]},
                }
            )
            manifest["config"] = {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": layout.put(dummy),
                "size": len(dummy),
            }
        raw = _canonical(manifest)
        entries.append(
            {
                "mediaType": OCI_MANIFEST,
                "digest": layout.put(raw),
                "size": len(raw),
                "platform": {"architecture": "unknown", "os": "unknown"},
                "annotations": {
                    "vnd.docker.reference.digest": descriptor["digest"],
                    "vnd.docker.reference.type": "attestation-manifest",
                },
            }
        )
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
    raw_index = _canonical(index)
    top = {"mediaType": OCI_INDEX, "digest": layout.put(raw_index), "size": len(raw_index)}
    layout.finish(top, ref_name)
    return str(top["digest"]), str(descriptor["digest"])


def dockerfile_sha256(text: str = DOCKERFILE) -> str:
    """What the record should say the Dockerfile's sha256 is."""
    return hashlib.sha256(text.encode()).hexdigest()
