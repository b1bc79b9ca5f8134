"""The malicious corpus (THREATS.md §1 reproductions, made harmless) vetted by the real pipeline: never clean.

Each image states its own minimum verdict and categories (tests/support/threats.py); a failure here names
the expectation the pipeline misses today, and ``python -m tests.corpus.malicious_report`` prints the lot.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest

from tests.support.threats import (
    DERO_WALLET,
    PUBLISHED_IOC_IPS,
    WALLET_BAD_CHECKSUM,
    WALLET_VALID,
    WALLET_VALID_2,
    ThreatImage,
    check_report,
    corpus,
    describe,
    is_config_finding,
    is_file_finding,
    layer_files,
    vet,
)
from workers.domain import Verdict

pytestmark = pytest.mark.corpus

CORPUS = corpus()
TEST_NETS = tuple(ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"))
# Hosts named in URLs that are documentation or a published indicator reproduced as text (THREATS.md §1.6).
KNOWN_URL_HOSTS = frozenset({"xmrig.com", "github.com", "alpinelinux.org", "gitlab.alpinelinux.org", "dogechain.info"})
IPV4 = re.compile(rb"(?<![0-9.])(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?![0-9.])")
URL_HOST = re.compile(rb"\b[a-z]+://([A-Za-z0-9.\-]+)")
MONERO = re.compile(r"^4[0-9AB][1-9A-HJ-NP-Za-km-z]{93}$")


@pytest.mark.parametrize("image", CORPUS, ids=[image.id for image in CORPUS])
def test_image_is_caught(image: ThreatImage, tmp_path: Path) -> None:
    """Verdict at least the expected one, every expected category, file findings fully attributed."""
    report, built = vet(image, tmp_path)
    problems = check_report(image, report, built)
    assert not problems, (
        f"{image.id} ({image.repository}:{image.tag}): " + "; ".join(problems) + "\n" + describe(report)
    )


def test_deleted_payload_is_attributed_to_its_layer(tmp_path: Path) -> None:
    """The whiteout image: findings on the removed files name layer 1 (index 1, above the base) and not the final fs."""
    image = next(i for i in CORPUS if i.deleted)
    report, built = vet(image, tmp_path)
    on_deleted = [f for f in report.findings if f.path and f.path.lstrip("/") in image.deleted]
    assert on_deleted, describe(report)
    assert {f.layer for f in on_deleted} == {built.layer_digests[1]}
    assert all(f.in_final_fs is False for f in on_deleted)


def test_config_only_image_has_a_clean_filesystem(tmp_path: Path) -> None:
    """The Kinsing CMD image is caught from its config alone, with no file finding at all."""
    image = next(i for i in CORPUS if i.config_only)
    report, _ = vet(image, tmp_path)
    assert not [f for f in report.findings if is_file_finding(f)], describe(report)
    assert [f for f in report.findings if is_config_finding(f)], describe(report)
    assert report.verdict is not Verdict.CLEAN


def test_corpus_covers_every_family() -> None:
    """At least one image per THREATS.md §1 family this corpus claims, and unique ids and repositories."""
    families = {image.family.split()[0] for image in CORPUS}
    assert {"1.1", "1.2", "1.3", "1.4", "1.5", "1.6", "1.7", "1.8", "1.9", "1.10"} <= families
    assert len({i.id for i in CORPUS}) == len(CORPUS)
    assert len({(i.repository, i.tag) for i in CORPUS}) == len(CORPUS)
    assert all(image.verdict is not Verdict.CLEAN and image.categories for image in CORPUS)


@pytest.mark.parametrize("image", CORPUS, ids=[image.id for image in CORPUS])
def test_image_is_harmless(image: ThreatImage) -> None:
    """Only test-range or published-IOC addresses, ``*.invalid`` or documentation hosts, stub binaries."""
    texts = [data for _, data in layer_files(image)]
    texts += [str(v).encode() for v in image.config.values()] + [s.created_by.encode() for s in image.steps]
    for text in texts:
        for raw in IPV4.findall(text):
            address = ipaddress.ip_address(raw.decode())
            if str(address) in PUBLISHED_IOC_IPS or any(address in net for net in TEST_NETS):
                continue
            # Not routable on the internet (IMDS link-local, 0.0.0.0/0 scans, 10/8 in usage text): no C2 there.
            assert address.is_private or address.is_reserved, f"{address} is a public address"
        for raw in URL_HOST.findall(text):
            host = raw.decode().rstrip(".")
            if IPV4.fullmatch(raw) or host.startswith("$"):
                continue
            assert host.endswith(".invalid") or host in KNOWN_URL_HOSTS, host
    for path, data in layer_files(image):
        if data.startswith(b"\x7fELF"):
            assert len(data) < 4096, f"{path} is not a stub"


def test_synthetic_wallets_have_the_shape_and_checksums_they_claim() -> None:
    """Two checksum-valid mainnet addresses and one with the right shape and a broken checksum."""
    from workers.scanners.wallets import monero_checksum_valid

    for wallet in (WALLET_VALID, WALLET_VALID_2, WALLET_BAD_CHECKSUM):
        assert MONERO.match(wallet), wallet
    assert monero_checksum_valid(WALLET_VALID)
    assert monero_checksum_valid(WALLET_VALID_2)
    assert not monero_checksum_valid(WALLET_BAD_CHECKSUM)
    assert DERO_WALLET.startswith("dero1")
