"""The registry client and the test kit against the real Debian registry (distribution 2.8), pushed with skopeo."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.support.oci import tar_layer, write_image_layout, write_index_layout
from tests.support.registry import RunningRegistry, write_htpasswd
from workers.domain import MediaType, parse_digest, sha256_digest
from workers.errors import IntegrityError, NotFound, RegistryAuthError
from workers.oci import ImageIndex, ImageManifest, parse_manifest
from workers.registry import Credentials, RegistryClient
from workers.settings import Settings
from workers.sources import RegistrySource, open_source

pytestmark = pytest.mark.functional

APP = tar_layer({"usr/local/bin/app": b"#!/bin/sh\necho app\n" * 500, "etc/os-release": b"ID=debian\n"})
EXTRA = tar_layer({"opt/data.bin": bytes(range(256)) * 400}, compression="zstd")


@pytest.fixture
def pushed(registry: RunningRegistry, tmp_path: Path) -> tuple[RunningRegistry, str]:
    digest = write_image_layout(tmp_path / "app", [APP, EXTRA], config={"config": {"User": "10001"}})
    registry.push_layout(tmp_path / "app", "team/app", "1.0")
    return registry, digest


@pytest.fixture
def client(registry: RunningRegistry) -> Iterator[RegistryClient]:
    with RegistryClient(registry.url, retries=1, backoff=0.01) as made:
        yield made


def test_manifest_by_tag_and_digest(pushed: tuple[RunningRegistry, str], client: RegistryClient) -> None:
    _, digest = pushed
    client.ping()
    by_tag = client.get_manifest("team/app", "1.0")
    by_digest = client.get_manifest("team/app", digest)
    assert by_tag == by_digest
    assert by_tag.digest == digest and by_tag.media_type == MediaType.OCI_MANIFEST
    assert sha256_digest(by_tag.raw) == digest  # skopeo --preserve-digests kept our exact bytes
    head = client.head_manifest("team/app", "1.0")
    assert head is not None and head.digest == digest and head.size == len(by_tag.raw)
    assert client.head_manifest("team/app", "nope") is None
    with pytest.raises(NotFound, match="MANIFEST_UNKNOWN"):
        client.get_manifest("team/app", "nope")
    with pytest.raises(NotFound):
        client.get_manifest("team/never-pushed", "1.0")


def test_blobs_stream_verified(pushed: tuple[RunningRegistry, str], client: RegistryClient) -> None:
    _, digest = pushed
    manifest = parse_manifest(*_fetch(client, "team/app", digest))
    assert isinstance(manifest, ImageManifest)
    config = json.loads(client.get_blob("team/app", manifest.config.digest, max_bytes=1 << 20))
    assert config["config"]["User"] == "10001"
    for descriptor, layer in zip(manifest.layers, (APP, EXTRA), strict=True):
        with client.open_blob("team/app", descriptor.digest, expected_size=descriptor.size) as stream:
            received = b""
            while chunk := stream.read(777):  # odd reads: verification is independent of read sizes
                received += chunk
        assert received == layer.data
    with pytest.raises(IntegrityError):  # noqa: SIM117
        with client.open_blob("team/app", manifest.layers[0].digest, expected_size=manifest.layers[0].size + 1):
            pass
    with pytest.raises(NotFound):
        client.get_blob("team/app", sha256_digest(b"never uploaded"), max_bytes=100)


def test_blob_tampered_in_registry_storage_is_refused(
    pushed: tuple[RunningRegistry, str], client: RegistryClient
) -> None:
    registry, _ = pushed
    hex_digest = APP.digest.split(":", 1)[1]
    data = registry.root / "docker" / "registry" / "v2" / "blobs" / "sha256" / hex_digest[:2] / hex_digest / "data"
    assert data.read_bytes() == APP.data
    data.write_bytes(APP.data[:40] + bytes([APP.data[40] ^ 0xFF]) + APP.data[41:])  # same size, one bit flipped
    with pytest.raises(IntegrityError, match="digest mismatch"):  # noqa: SIM117
        with client.open_blob("team/app", parse_digest(APP.digest), expected_size=APP.size) as stream:
            while stream.read(4096):
                pass


def test_catalog_and_tags(registry: RunningRegistry, client: RegistryClient, tmp_path: Path) -> None:
    write_image_layout(tmp_path / "a", [APP])
    for tag in ("v1", "a1", "v2"):
        registry.push_layout(tmp_path / "a", "team/app", tag)
    registry.push_layout(tmp_path / "a", "tools/cli", "zz")
    assert sorted(client.catalog()) == ["team/app", "tools/cli"]
    assert sorted(client.list_tags("team/app")) == ["a1", "v1", "v2"]
    digest = client.get_manifest("tools/cli", "zz").digest
    client.delete_manifest("tools/cli", digest)
    assert client.list_tags("tools/cli") == []  # 2.8 answers "tags": null once the last tag is gone


def test_write_side_round_trip(pushed: tuple[RunningRegistry, str], client: RegistryClient) -> None:
    """What quarantine does: mount every blob into another repository, put the manifest, delete the original."""
    _, digest = pushed
    fetched = client.get_manifest("team/app", digest)
    manifest = parse_manifest(fetched.media_type, fetched.raw)
    assert isinstance(manifest, ImageManifest)
    target = "quarantine/team/app"
    for blob in (manifest.config, *manifest.layers):
        assert not client.blob_exists(target, blob.digest)
        assert client.mount_blob(target, blob.digest, "team/app") is True
        assert client.blob_exists(target, blob.digest)
    assert client.put_manifest(target, digest, fetched.raw, fetched.media_type) == digest
    assert client.put_manifest(target, "held", fetched.raw, fetched.media_type) == digest
    assert client.get_manifest(target, "held") == fetched

    # A manifest is not a layer-linked blob: 2.8 answers 202 (an upload session) and the client cancels it.
    assert client.mount_blob("other/app", digest, "team/app") is False
    assert not client.blob_exists("other/app", digest)

    client.delete_manifest("team/app", digest)
    assert client.head_manifest("team/app", "1.0") is None  # deleting by digest drops its tags too
    assert client.get_manifest(target, digest).digest == digest  # the quarantined copy is intact
    with pytest.raises(NotFound):
        client.delete_manifest("team/app", digest)


def test_upload_blob(registry: RunningRegistry, client: RegistryClient) -> None:
    payload = b"a blob uploaded by tollgate\n" * 100
    digest = client.upload_blob("team/uploads", payload)
    assert digest == sha256_digest(payload)
    assert client.blob_exists("team/uploads", digest)
    assert client.get_blob("team/uploads", digest, max_bytes=len(payload)) == payload
    assert client.upload_blob("team/uploads", b"") == sha256_digest(b"")


def test_index_with_platforms_and_attestation(
    registry: RunningRegistry, client: RegistryClient, tmp_path: Path
) -> None:
    arm = tar_layer({"usr/bin/arm": b"arm64 build\n"})
    index_digest = write_index_layout(
        tmp_path / "multi", [(("linux", "amd64"), [APP], {}), (("linux", "arm64", "v8"), [arm], {})], attestation=True
    )
    registry.push_layout(tmp_path / "multi", "team/multi", "v1")
    fetched = client.get_manifest("team/multi", "v1")
    assert fetched.digest == index_digest and fetched.media_type == MediaType.OCI_INDEX
    index = parse_manifest(fetched.media_type, fetched.raw)
    assert isinstance(index, ImageIndex)
    assert [str(d.platform) for d in index.runnable()] == ["linux/amd64", "linux/arm64/v8"]
    assert len(index.attestations()) == 2
    for child in index.manifests:  # every child, attestations included, was pushed and verifies
        manifest = parse_manifest(*_fetch(client, "team/multi", child.digest))
        assert isinstance(manifest, ImageManifest)
        for layer in manifest.layers:
            with client.open_blob("team/multi", layer.digest, expected_size=layer.size) as stream:
                stream.read()


def test_single_platform_push_of_an_index(registry: RunningRegistry, client: RegistryClient, tmp_path: Path) -> None:
    write_index_layout(tmp_path / "multi", [(("linux", "amd64"), [APP], {}), (("linux", "arm64"), [EXTRA], {})])
    registry.push_layout(tmp_path / "multi", "team/one", "v1", all_platforms=False)
    fetched = client.get_manifest("team/one", "v1")
    assert fetched.media_type == MediaType.OCI_MANIFEST  # skopeo picked the host platform's image


def test_basic_auth_registry(registry_factory: Callable[..., RunningRegistry], tmp_path: Path) -> None:
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {"ci": "s3cret-pass"})
    registry = registry_factory(htpasswd=htpasswd, credentials=("ci", "s3cret-pass"))
    digest = write_image_layout(tmp_path / "app", [APP])
    registry.push_layout(tmp_path / "app", "team/app", "1.0")

    with RegistryClient(registry.url, credentials=Credentials("ci", "s3cret-pass")) as client:
        client.ping()
        assert client.get_manifest("team/app", "1.0").digest == digest
        assert client.get_blob("team/app", parse_digest(APP.digest), max_bytes=1 << 20) == APP.data
        assert list(client.catalog()) == ["team/app"]
    with RegistryClient(registry.url) as anonymous, pytest.raises(RegistryAuthError):
        anonymous.get_manifest("team/app", "1.0")
    with RegistryClient(registry.url, credentials=Credentials("ci", "not-it")) as wrong:
        with pytest.raises(RegistryAuthError) as caught:
            wrong.get_manifest("team/app", "1.0")
        assert "not-it" not in str(caught.value)


def test_registry_source_and_open_source(pushed: tuple[RunningRegistry, str]) -> None:
    registry, digest = pushed
    settings = Settings.from_env({}, registry_url=registry.url, registry_use_docker_config=False)
    source, reference = open_source("team/app:1.0", settings)
    assert isinstance(source, RegistrySource)
    try:
        assert source.name == f"{registry.host}/team/app" and reference == "1.0"
        fetched = source.get_manifest(reference)
        assert fetched.digest == digest
        manifest = parse_manifest(fetched.media_type, fetched.raw)
        assert isinstance(manifest, ImageManifest)
        with source.open_blob(manifest.layers[1].digest, expected_size=manifest.layers[1].size) as stream:
            assert stream.read() == EXTRA.data
    finally:
        source.close()
    other, reference = open_source(f"{registry.host}/team/app@{digest}", settings)
    assert reference == digest and other.get_manifest(reference).digest == digest


def test_restart_keeps_content(pushed: tuple[RunningRegistry, str]) -> None:
    registry, digest = pushed
    registry.restart()
    with RegistryClient(registry.url) as client:
        assert client.get_manifest("team/app", "1.0").digest == digest


class _Sink(BaseHTTPRequestHandler):
    """Records notification envelopes (with their Authorization header) and answers 202."""

    received: list[tuple[str | None, dict[str, Any]]]
    arrived: threading.Condition

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with self.arrived:
            self.received.append((self.headers.get("Authorization"), json.loads(body)))
            self.arrived.notify_all()
        self.send_response(202)
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        pass


def test_notifications_carry_the_token_and_skip_pulls_and_blob_pushes(
    registry_factory: Callable[..., RunningRegistry], tmp_path: Path
) -> None:
    """The rendered config: Bearer header on every POST, pull events and octet-stream blob pushes filtered out."""
    received: list[tuple[str | None, dict[str, Any]]] = []
    arrived = threading.Condition()
    handler = type("Sink", (_Sink,), {"received": received, "arrived": arrived})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        registry = registry_factory(
            notify_url=f"http://127.0.0.1:{server.server_port}/hooks/registry", notify_token="hook-token"
        )
        digest = write_image_layout(tmp_path / "app", [APP])
        registry.push_layout(tmp_path / "app", "team/app", "first")
        with RegistryClient(registry.url) as client:  # pulls: manifest GET/HEAD and a blob GET
            client.get_manifest("team/app", "first")
            client.head_manifest("team/app", "first")
            client.get_blob("team/app", parse_digest(APP.digest), max_bytes=1 << 20)
        # Events leave one endpoint in order: once the second tag's push arrives, any pull event the
        # reads above produced would have arrived before it.
        registry.push_layout(tmp_path / "app", "team/app", "second")
        with arrived:
            assert arrived.wait_for(lambda: _tags_pushed(received) >= {"first", "second"}, timeout=60)
    finally:
        server.shutdown()
    events = [event for _, envelope in received for event in envelope["events"]]
    assert {auth for auth, _ in received} == {"Bearer hook-token"}
    assert {e["action"] for e in events} == {"push"}
    assert all(e["target"]["mediaType"] != "application/octet-stream" for e in events)
    assert {e["target"]["digest"] for e in events} == {digest}


def _tags_pushed(received: list[tuple[str | None, dict[str, Any]]]) -> set[str]:
    return {
        e["target"].get("tag", "")
        for _, envelope in received
        for e in envelope.get("events", [])
        if e.get("action") == "push"
    }


def _fetch(client: RegistryClient, repository: str, reference: str) -> tuple[str, bytes]:
    fetched = client.get_manifest(repository, reference)
    return fetched.media_type, fetched.raw
