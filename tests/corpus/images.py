"""The corpus images (real Debian roots, one or two layers, realistic configs), their vetting and explanations."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from tests.support.debian_roots import ROOT_PACKAGES, debian_root, package_delta_layer, root_layer
from tests.support.oci import CREATED, LayerBlob, write_image_layout
from workers.domain import Finding, ScanReport, Severity, Verdict
from workers.pipeline import Vetter, load_scanners
from workers.policy import rollup
from workers.settings import Settings
from workers.sources import OciLayoutSource

# How Debian's official images record their one layer (debuerreotype), so the history looks like theirs.
DEBIAN_BASE_STEP = "# debian.sh --arch 'amd64' out/ 'bookworm' '@1700000000'"
BUILDKIT = "buildkit.dockerfile.v0"


def _step(created_by: str, *, empty: bool = False, comment: str = BUILDKIT) -> dict[str, Any]:
    entry: dict[str, Any] = {"created": CREATED, "created_by": created_by, "comment": comment}
    if empty:
        entry["empty_layer"] = True
    return entry


def _install_step(packages: tuple[str, ...]) -> str:
    # debootstrap --include installs Depends only, which is what --no-install-recommends does.
    return (
        "RUN /bin/sh -c apt-get update && apt-get install -y --no-install-recommends "
        + " ".join(packages)
        + " && rm -rf /var/lib/apt/lists/* # buildkit"
    )


@dataclass(frozen=True)
class Runtime:
    """What the Dockerfile of a real image of this kind says after its RUN steps: config and empty steps."""

    config: Mapping[str, Any]
    steps: tuple[str, ...]


RUNTIMES: dict[str, Runtime] = {
    "minbase": Runtime({"Cmd": ["bash"]}, ('CMD ["bash"]',)),
    "services": Runtime(
        {"Cmd": ["/usr/sbin/sshd", "-D"], "ExposedPorts": {"22/tcp": {}}},
        ("EXPOSE map[22/tcp:{}]", 'CMD ["/usr/sbin/sshd" "-D"]'),
    ),
    "tools": Runtime({"Cmd": ["bash"], "WorkingDir": "/root"}, ("WORKDIR /root", 'CMD ["bash"]')),
    # Shaped like the official docker:dind image: its entrypoint script starts dockerd with these settings.
    "docker": Runtime(
        {
            "Entrypoint": ["dockerd-entrypoint.sh"],
            "Cmd": [],
            "Env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "DOCKER_TLS_CERTDIR=/certs",
            ],
            "ExposedPorts": {"2375/tcp": {}, "2376/tcp": {}},
            "Volumes": {"/var/lib/docker": {}},
        },
        (
            "ENV DOCKER_TLS_CERTDIR=/certs",
            "VOLUME [/var/lib/docker]",
            "EXPOSE map[2375/tcp:{} 2376/tcp:{}]",
            'ENTRYPOINT ["dockerd-entrypoint.sh"]',
            "CMD []",
        ),
    ),
}


@dataclass(frozen=True)
class CorpusImage:
    """One benign image: a Debian root, as a single layer or as minbase plus an ``apt-get install`` layer."""

    root: str
    layered: bool = False

    @property
    def name(self) -> str:
        """Test id and layout directory name."""
        return f"{self.root}-on-minbase" if self.layered else self.root

    def config(self) -> dict[str, Any]:
        """The image config: the runtime of its kind and a history aligned with its layers."""
        runtime = RUNTIMES[self.root]
        packages = ROOT_PACKAGES[self.root]
        if self.layered:
            history = [_step(DEBIAN_BASE_STEP, comment="debuerreotype 0.15"), _step(_install_step(packages))]
        elif packages:
            step = f"ADD rootfs.tar.gz / # debootstrap --variant=minbase --include={','.join(packages)} bookworm"
            history = [_step(step)]
        else:
            history = [_step(DEBIAN_BASE_STEP, comment="debuerreotype 0.15")]
        history += [_step(s, empty=True) for s in runtime.steps]
        return {"config": dict(runtime.config), "history": history}


CORPUS: tuple[CorpusImage, ...] = (
    CorpusImage("minbase"),
    CorpusImage("services"),
    CorpusImage("services", layered=True),
    CorpusImage("tools"),
    CorpusImage("tools", layered=True),
    CorpusImage("docker"),
    CorpusImage("docker", layered=True),
)


@dataclass(frozen=True)
class BuiltImage:
    """A corpus image written as an OCI layout."""

    image: CorpusImage
    layout: Path
    digest: str
    layers: tuple[LayerBlob, ...]
    root: Path  # the root whose files the final filesystem holds (for package look-ups)


@cache
def _root_layer(name: str) -> LayerBlob:
    # One copy per process: several images share the minbase layer.
    return root_layer(debian_root(name))


def build(image: CorpusImage, directory: Path) -> BuiltImage:
    """Write ``image`` as the OCI layout ``directory/<name>`` (tag ``latest``)."""
    root = debian_root(image.root)
    if image.layered:
        layers: tuple[LayerBlob, ...] = (_root_layer("minbase"), package_delta_layer(debian_root("minbase"), root))
    else:
        layers = (_root_layer(image.root),)
    layout = directory / image.name
    digest = write_image_layout(layout, layers, config=image.config())
    return BuiltImage(image=image, layout=layout, digest=digest, layers=layers, root=root)


def vet(built: BuiltImage) -> ScanReport:
    """Vet the layout with the real pipeline and the repository's rules, as ``tollgate scan oci:`` does."""
    settings = Settings()  # the defaults, not the caller's environment: the corpus tests the shipped rules
    scanners = load_scanners(
        settings.rules_dir,
        settings.rules_extra,
        protected_names=settings.protected_names,
        trusted_namespaces=settings.trusted_namespaces,
    )
    source = OciLayoutSource(built.layout)
    return Vetter(scanners, limits=settings.limits).vet(source, "latest")


def weight(finding: Finding) -> Verdict:
    """The verdict this finding alone rolls up to."""
    return rollup([finding])[0]


def blocking(report: ScanReport) -> list[Finding]:
    """Unwaived findings that alone make the image suspicious or malicious."""
    return [f for f in report.findings if not f.waived and weight(f) is not Verdict.CLEAN]


def severity_counts(report: ScanReport) -> dict[str, int]:
    """Findings per severity, every severity listed."""
    counts = Counter(f.severity.value for f in report.findings)
    return {s.value: counts.get(s.value, 0) for s in Severity}


# bookworm is merged-/usr: dpkg records /bin/x, the image holds usr/bin/x behind the /bin symlink.
_MERGED = {"bin": "usr/bin", "sbin": "usr/sbin", "lib": "usr/lib", "lib32": "usr/lib32", "lib64": "usr/lib64"}


def _canonical(path: str) -> str:
    rel = path.strip().lstrip("/")
    head, sep, rest = rel.partition("/")
    return _MERGED[head] + sep + rest if head in _MERGED else rel


@cache
def _owners(root: Path) -> dict[str, tuple[str, ...]]:
    index: dict[str, list[str]] = {}
    for listing in sorted((root / "var/lib/dpkg/info").glob("*.list")):
        package = listing.stem.split(":", 1)[0]
        for line in listing.read_text(errors="replace").splitlines():
            if line.strip() not in {"", "/", "/."}:
                index.setdefault(_canonical(line), []).append(package)
    return {path: tuple(packages) for path, packages in index.items()}


def owner(root: Path, path: str | None) -> str:
    """Which Debian package ships ``path`` in ``root`` (from dpkg's file lists), or how else it got there."""
    if not path:
        return "(image config)"
    rel = _canonical(path)
    packages = _owners(root).get(rel)
    if packages:
        return ",".join(packages)
    info = Path(rel)
    if info.parent == Path("var/lib/dpkg/info"):
        return f"dpkg metadata of {info.name.split('.', 1)[0].split(':', 1)[0]}"
    # Not shipped by any package: look for the maintainer script that writes it (host keys, users, caches).
    scripts = sorted((root / "var/lib/dpkg/info").glob("*.postinst"))
    writers = [s.stem.split(":", 1)[0] for s in scripts if info.name in s.read_text(errors="replace")]
    if writers:
        return f"no package; created by the postinst of {','.join(writers)}"
    return "no package (created during installation)"


def describe(finding: Finding, built: BuiltImage) -> str:
    """One line with everything needed to see why a finding fired."""
    layer = next((i for i, blob in enumerate(built.layers) if blob.digest == finding.layer), None)
    return (
        f"{finding.rule} severity={finding.severity.value} confidence={finding.confidence.value} "
        f"rolls-up-to={weight(finding).value} path={finding.path or '-'} "
        f"layer={'-' if layer is None else layer} owner={owner(built.root, finding.path)} "
        f"evidence={finding.evidence!r} message={finding.message!r}"
    )
