"""Unit tests of image sources: OCI layout directories, docker-save archives (both formats) and open_source."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.oci import (
    FileSpec,
    layout_to_docker_archive,
    tar_bytes,
    tar_layer,
    write_docker_archive,
    write_image_layout,
    write_index_layout,
)
from workers.domain import Digest, MediaType, parse_digest, sha256_digest
from workers.errors import IntegrityError, NotFound, UnsupportedMediaType
from workers.oci import ImageIndex, ImageManifest, parse_config, parse_manifest
from workers.registry import InvalidReference
from workers.settings import Settings
from workers.sources import DockerArchiveSource, OciLayoutSource, RegistrySource, open_source

APP = tar_layer({"usr/local/bin/app": b"#!/bin/sh\necho app\n", "etc": FileSpec.dir()})
BASE = tar_layer({"etc/os-release": b"ID=debian\n"}, compression="zstd")


def _image(source: OciLayoutSource | DockerArchiveSource, reference: str = "") -> ImageManifest:
    fetched = source.get_manifest(reference)
    parsed = parse_manifest(fetched.media_type, fetched.raw)
    assert isinstance(parsed, ImageManifest)
    assert sha256_digest(fetched.raw) == fetched.digest
    return parsed


# ---------------------------------------------------------------------------------------------- OCI layouts


def test_layout_by_default_ref_name_and_digest(tmp_path: Path) -> None:
    digest = write_image_layout(tmp_path / "app", [BASE, APP], ref_name="1.0")
    source = OciLayoutSource(tmp_path / "app")
    assert source.name == f"oci:{tmp_path / 'app'}" and source.repository == "local/app"
    for reference in ("", "1.0", digest):
        assert source.get_manifest(reference).digest == digest
    manifest = _image(source)
    assert [layer.digest for layer in manifest.layers] == [BASE.digest, APP.digest]
    config = parse_config(source.get_blob(manifest.config.digest, max_bytes=1 << 20))
    assert config.diff_ids == (BASE.diff_id, APP.diff_id)
    with source.open_blob(parse_digest(APP.digest), expected_size=APP.size) as stream:
        assert stream.read() == APP.data
    with pytest.raises(NotFound):
        source.get_manifest("2.0")


def test_layout_index_and_its_children(tmp_path: Path) -> None:
    index_digest = write_index_layout(
        tmp_path / "multi", [(("linux", "amd64"), [APP], {}), (("linux", "arm64", "v8"), [BASE], {})], attestation=True
    )
    source = OciLayoutSource(tmp_path / "multi", "latest")
    fetched = source.get_manifest("")
    assert fetched.digest == index_digest and fetched.media_type == MediaType.OCI_INDEX
    index = parse_manifest(fetched.media_type, fetched.raw)
    assert isinstance(index, ImageIndex)
    runnable = index.runnable()
    assert [str(d.platform) for d in runnable] == ["linux/amd64", "linux/arm64/v8"]
    assert len(index.attestations()) == 2
    child = source.get_manifest(runnable[1].digest)
    assert child.media_type == MediaType.OCI_MANIFEST


def test_tampered_blob_in_a_layout_fails_verification(tmp_path: Path) -> None:
    write_image_layout(tmp_path / "app", [APP])
    blob = tmp_path / "app" / "blobs" / "sha256" / APP.digest.split(":")[1]
    blob.write_bytes(APP.data[:20] + bytes([APP.data[20] ^ 1]) + APP.data[21:])
    source = OciLayoutSource(tmp_path / "app")
    with pytest.raises(IntegrityError), source.open_blob(parse_digest(APP.digest)) as stream:
        stream.read()
    with pytest.raises(IntegrityError):
        source.get_blob(parse_digest(APP.digest), max_bytes=1 << 20)


def test_layout_refuses_bad_references_and_missing_content(tmp_path: Path) -> None:
    write_image_layout(tmp_path / "app", [APP])
    source = OciLayoutSource(tmp_path / "app")
    for hostile in ("sha256:../../../etc/passwd", "sha256:" + "A" * 64, "md5:00"):
        with pytest.raises(InvalidReference):
            source.get_manifest(hostile)
    with pytest.raises(NotFound):
        source.get_manifest("sha256:" + "0" * 64)
    with pytest.raises(InvalidReference):  # noqa: SIM117
        with source.open_blob(Digest("../../index.json")):
            pass


def test_layouts_that_are_not_layouts(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        OciLayoutSource(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotFound):
        OciLayoutSource(tmp_path / "empty")
    write_image_layout(tmp_path / "bad", [APP])
    (tmp_path / "bad" / "index.json").write_text('{"manifests": "nope"}')
    with pytest.raises(IntegrityError):
        OciLayoutSource(tmp_path / "bad")
    (tmp_path / "bad" / "index.json").write_text("[1, 2")
    with pytest.raises(IntegrityError):
        OciLayoutSource(tmp_path / "bad")
    (tmp_path / "bad" / "index.json").write_text('{"manifests": [{"mediaType": "x", "digest": "../x", "size": 1}]}')
    with pytest.raises(IntegrityError):
        OciLayoutSource(tmp_path / "bad")


def test_layout_with_several_images_needs_a_name(tmp_path: Path) -> None:
    first = write_image_layout(tmp_path / "two", [APP], ref_name="a")
    index = json.loads((tmp_path / "two" / "index.json").read_text())
    second = write_image_layout(tmp_path / "other", [BASE], ref_name="b")
    for blob in (tmp_path / "other" / "blobs" / "sha256").iterdir():
        (tmp_path / "two" / "blobs" / "sha256" / blob.name).write_bytes(blob.read_bytes())
    index["manifests"] += json.loads((tmp_path / "other" / "index.json").read_text())["manifests"]
    (tmp_path / "two" / "index.json").write_text(json.dumps(index))
    source = OciLayoutSource(tmp_path / "two")
    with pytest.raises(NotFound, match="name one"):
        source.get_manifest("")
    assert source.get_manifest("a").digest == first
    assert source.get_manifest("b").digest == second


# ---------------------------------------------------------------------------------------------- docker archives


def test_legacy_docker_archive_is_synthesised_as_an_oci_manifest(tmp_path: Path) -> None:
    archive = write_docker_archive(tmp_path / "app.tar", [BASE, APP], repo_tags=["team/app:1.4"])
    source = DockerArchiveSource(archive.path)
    try:
        assert source.repository == "team/app"
        manifest = _image(source)
        assert manifest.config.digest == archive.config_digest
        # docker save stores layers uncompressed: the blob digest is the diff_id.
        assert tuple(layer.digest for layer in manifest.layers) == archive.diff_ids
        assert {layer.media_type for layer in manifest.layers} == {"application/vnd.oci.image.layer.v1.tar"}
        config = parse_config(source.get_blob(manifest.config.digest, max_bytes=1 << 20))
        assert config.diff_ids == archive.diff_ids
        layer = manifest.layers[1]
        with source.open_blob(layer.digest, expected_size=layer.size) as stream:
            assert sha256_digest(stream.read()) == APP.diff_id
        assert source.get_manifest("").digest == source.get_manifest(source.get_manifest("").digest).digest
    finally:
        source.close()


def test_newer_docker_archive_prefers_the_embedded_oci_layout(tmp_path: Path) -> None:
    digest = write_image_layout(tmp_path / "layout", [BASE, APP])
    layout_to_docker_archive(tmp_path / "layout", tmp_path / "new.tar")
    source = DockerArchiveSource(tmp_path / "new.tar")
    try:
        fetched = source.get_manifest("")
        assert fetched.digest == digest  # the real manifest, not a synthesised one
        manifest = _image(source)
        with source.open_blob(manifest.layers[0].digest, expected_size=manifest.layers[0].size) as stream:
            assert stream.read() == BASE.data
    finally:
        source.close()


def test_archive_with_several_images_picks_by_tag(tmp_path: Path) -> None:
    one = write_docker_archive(tmp_path / "a.tar", [APP], repo_tags=["team/a:1"])
    entries = json.loads(_member(one.path, "manifest.json"))
    entries.append({**entries[0], "RepoTags": ["team/b:2"]})
    write_docker_archive(
        tmp_path / "ab.tar", [APP], repo_tags=["team/a:1"], members={"manifest.json": json.dumps(entries).encode()}
    )
    with pytest.raises(NotFound, match="name one"):
        DockerArchiveSource(tmp_path / "ab.tar")
    source = DockerArchiveSource(tmp_path / "ab.tar", "team/b:2")
    assert source.repository == "team/b"
    source.close()
    with pytest.raises(NotFound):
        DockerArchiveSource(tmp_path / "ab.tar", "team/c:3")


def _member(archive: Path, name: str) -> bytes:
    import tarfile

    with tarfile.open(archive) as tar:
        handle = tar.extractfile(name)
        assert handle is not None
        return handle.read()


@pytest.mark.parametrize(
    "manifest",
    [
        [{"Config": "../../../../etc/passwd", "Layers": []}],
        [{"Config": "/etc/passwd", "Layers": []}],
        [{"Config": "CONFIG", "Layers": ["/etc/hostname"]}],
        [{"Config": "CONFIG", "Layers": ["../../../../../../etc/hostname"]}],
        [{"Config": "loop-a", "Layers": []}],
    ],
)
def test_archive_member_names_are_never_host_paths(tmp_path: Path, manifest: list[dict[str, object]]) -> None:
    archive = write_docker_archive(tmp_path / "x.tar", [APP])
    config_name = json.loads(_member(archive.path, "manifest.json"))[0]["Config"]
    text = json.dumps(manifest).replace("CONFIG", config_name)
    raw = {
        "manifest.json": text.encode(),
        "loop-a": FileSpec.symlink("loop-b"),
        "loop-b": FileSpec.symlink("loop-a"),
    }
    write_docker_archive(tmp_path / "x.tar", [APP], members=raw)
    with pytest.raises(NotFound):
        DockerArchiveSource(tmp_path / "x.tar")


@pytest.mark.parametrize(
    "members",
    [
        {"manifest.json": b"not json"},
        {"manifest.json": b"{}"},
        {"manifest.json": b"[]"},
        {"manifest.json": b'[{"Config": 5, "Layers": "x"}]'},
    ],
)
def test_hostile_manifest_json_is_an_integrity_error(tmp_path: Path, members: dict[str, bytes]) -> None:
    write_docker_archive(tmp_path / "x.tar", [APP], members=members)
    with pytest.raises(IntegrityError):
        DockerArchiveSource(tmp_path / "x.tar")


def test_files_that_are_not_archives(tmp_path: Path) -> None:
    (tmp_path / "junk.tar").write_bytes(b"\x00\x01garbage" * 100)
    with pytest.raises(IntegrityError):
        DockerArchiveSource(tmp_path / "junk.tar")
    (tmp_path / "other.tar").write_bytes(tar_bytes({"README": b"hello"}))
    with pytest.raises(UnsupportedMediaType):
        DockerArchiveSource(tmp_path / "other.tar")
    with pytest.raises(NotFound):
        DockerArchiveSource(tmp_path / "missing.tar")


def test_legacy_layer_digests_are_bound_by_the_config_diff_ids(tmp_path: Path) -> None:
    """A legacy archive has no layer digests of its own: ours are computed, the config's diff_ids bind them."""
    archive = write_docker_archive(tmp_path / "x.tar", [APP])
    source = DockerArchiveSource(archive.path)
    manifest = _image(source)
    config = parse_config(source.get_blob(manifest.config.digest, max_bytes=1 << 20))
    assert tuple(layer.digest for layer in manifest.layers) == config.diff_ids
    source.close()


# ---------------------------------------------------------------------------------------------- open_source


def test_open_source_local_forms(tmp_path: Path) -> None:
    settings = Settings.from_env({}, registry_use_docker_config=False)
    write_image_layout(tmp_path / "lay:out", [APP], ref_name="v1")
    source, reference = open_source(f"oci:{tmp_path / 'lay:out'}", settings)
    assert isinstance(source, OciLayoutSource) and reference == ""
    source, reference = open_source(f"oci:{tmp_path / 'lay:out'}:v1", settings)
    assert isinstance(source, OciLayoutSource) and reference == "v1"
    assert source.get_manifest(reference).digest == source.get_manifest("").digest

    archive = write_docker_archive(tmp_path / "a.tar", [APP], repo_tags=["team/a:1"])
    source, reference = open_source(f"docker-archive:{archive.path}", settings)
    assert isinstance(source, DockerArchiveSource) and reference == ""
    source.close()
    source, reference = open_source(f"docker-archive:{archive.path}:team/a:1", settings)
    assert isinstance(source, DockerArchiveSource) and source.repository == "team/a"
    source.close()


@pytest.mark.parametrize(
    ("ref", "base_url", "repository", "reference"),
    [
        ("team/app:1.4", "http://127.0.0.1:5000", "team/app", "1.4"),
        ("team/app", "http://127.0.0.1:5000", "team/app", "latest"),
        ("127.0.0.1:5000/team/app@sha256:" + "a" * 64, "http://127.0.0.1:5000", "team/app", "sha256:" + "a" * 64),
        ("localhost:5001/app:v1", "http://localhost:5001", "app", "v1"),
        ("registry.example/team/app:v1", "https://registry.example", "team/app", "v1"),
    ],
)
def test_open_source_registry_references(ref: str, base_url: str, repository: str, reference: str) -> None:
    settings = Settings.from_env({}, registry_use_docker_config=False)
    source, got = open_source(ref, settings)
    try:
        assert isinstance(source, RegistrySource)
        assert source.client.base_url == base_url
        assert source.repository == repository and got == reference
        assert source.name == f"{base_url.split('://')[1]}/{repository}"
    finally:
        source.close()


@pytest.mark.parametrize("ref", ["", "Team/App", "a b", "team/app@sha256:zz", "oci:", "https://x/y"])
def test_open_source_rejects_malformed_references(ref: str, tmp_path: Path) -> None:
    settings = Settings.from_env({}, registry_use_docker_config=False)
    with pytest.raises((InvalidReference, NotFound)):
        open_source(ref, settings)
