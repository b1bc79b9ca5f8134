"""The placeholder a quarantined tag points at: deterministic, small, and it says why and where to look."""

from __future__ import annotations

import gzip
import io
import json
import tarfile

from tests.support.storage import digest_of
from workers.oci import parse_config, parse_manifest
from workers.quarantine.placeholder import (
    DETAILS_LABEL,
    NOTICE_PATH,
    ORIGINAL_LABEL,
    QUARANTINED_LABEL,
    REASON_LABEL,
    build_placeholder,
)
from workers.registry import digest_of as bytes_digest

DIGEST = digest_of("bad")


def test_the_placeholder_is_a_valid_image_that_says_why_and_where() -> None:
    made = build_placeholder(
        public_url="https://tollgate.example/", repository="team/app", digest=DIGEST, reason="miner\nfound\x00"
    )
    manifest = parse_manifest(made.media_type, made.manifest)
    assert made.digest == bytes_digest(made.manifest)
    assert [d for d, _ in made.blobs] == [manifest.config.digest, manifest.layers[0].digest]  # type: ignore[union-attr]
    config = parse_config(made.config)
    assert config.labels[QUARANTINED_LABEL] == "true"
    assert config.labels[ORIGINAL_LABEL] == DIGEST
    assert config.labels[REASON_LABEL] == "miner found"  # control characters never reach the config
    assert config.labels[DETAILS_LABEL] == f"https://tollgate.example/images/team/app@{DIGEST}"
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(made.layer))) as tar:
        notice = tar.extractfile(NOTICE_PATH)
        assert notice is not None
        text = notice.read().decode()
    assert DIGEST in text and "miner found" in text and "release" in text
    assert config.diff_ids == (bytes_digest(gzip.decompress(made.layer)),)
    assert len(made.manifest) + len(made.config) + len(made.layer) < 4096


def test_the_same_hold_always_gets_the_same_placeholder() -> None:
    first = build_placeholder(public_url="http://t", repository="team/app", digest=DIGEST, reason="r")
    again = build_placeholder(public_url="http://t", repository="team/app", digest=DIGEST, reason="r")
    other = build_placeholder(public_url="http://t", repository="team/app", digest=digest_of("x"), reason="r")
    assert first == again
    assert other.digest != first.digest
    assert json.loads(first.manifest)["annotations"][ORIGINAL_LABEL] == DIGEST


def test_a_long_reason_is_clipped() -> None:
    made = build_placeholder(public_url="http://t", repository="team/app", digest=DIGEST, reason="x" * 5000)
    assert len(parse_config(made.config).labels[REASON_LABEL]) == 500
