"""The reconciler over a real store and a real Redis, with an in-memory registry listing (a fake of the client)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from rq import Queue
from rq.serializers import JSONSerializer

from tests.support.storage import digest_of, make_report
from workers.domain import Descriptor, Digest
from workers.errors import NotFound, RegistryUnavailable
from workers.queue import PUSH_QUEUE, scan_job_id
from workers.reconcile import ReconcileReport, reconcile
from workers.settings import Settings
from workers.store import Store

RULESET = "rules-1"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
APP_V1, APP_V2, TOOL = digest_of("app-v1"), digest_of("app-v2"), digest_of("tool")


@dataclass
class FakeRegistry:
    """Repositories → tags → descriptors; ``broken`` repositories fail to list, ``down`` fails the catalog."""

    repositories: dict[str, dict[str, Digest | None]] = field(default_factory=dict)
    broken: set[str] = field(default_factory=set)
    down: bool = False
    heads: list[tuple[str, str]] = field(default_factory=list)

    def catalog(self) -> Iterator[str]:
        if self.down:
            raise RegistryUnavailable("connection refused")
        yield from self.repositories

    def list_tags(self, repository: str) -> list[str]:
        if repository in self.broken:
            raise NotFound(f"repository {repository} not found")
        return list(self.repositories[repository])

    def head_manifest(self, repository: str, reference: str) -> Descriptor | None:
        self.heads.append((repository, reference))
        digest = self.repositories[repository][reference]
        return None if digest is None else Descriptor(media_type=MANIFEST, digest=digest, size=418)


@pytest.fixture
def settings(redis_url: str, tmp_path: Path) -> Settings:
    return Settings.from_env({}, redis_url=redis_url, database_url=f"sqlite:///{tmp_path / 'r.db'}")


@pytest.fixture
def listing() -> FakeRegistry:
    return FakeRegistry(
        repositories={
            "team/app": {"1.0": APP_V1, "latest": APP_V1, "2.0": APP_V2},
            "quarantine/team/app": {"1.0": digest_of("held")},
            "tools/cli": {"v3": TOOL, "deleted-meanwhile": None},
        }
    )


def _run(
    settings: Settings, listing: FakeRegistry, store: Store, conn: redis.Redis, ruleset: str = RULESET
) -> ReconcileReport:
    return reconcile(settings, client=listing, store=store, redis_conn=conn, ruleset=ruleset)


def _jobs(conn: redis.Redis) -> list[str]:
    return Queue(PUSH_QUEUE, connection=conn, serializer=JSONSerializer).get_job_ids()


def test_reconcile_records_and_queues_every_tagged_image(
    settings: Settings, listing: FakeRegistry, store: Store, redis_conn: redis.Redis
) -> None:
    report = _run(settings, listing, store, redis_conn)
    assert report == ReconcileReport(repositories=2, tags=4, enqueued=3, errors=())
    assert sorted(_jobs(redis_conn)) == sorted(
        scan_job_id(repo, digest, RULESET)
        for repo, digest in [("team/app", APP_V1), ("team/app", APP_V2), ("tools/cli", TOOL)]
    )
    assert set(store.tags_of("team/app", APP_V1)) == {"1.0", "latest"}
    assert store.get_record("quarantine/team/app", digest_of("held")) is None
    assert not any(repo.startswith("quarantine/") for repo, _ in listing.heads)


def test_a_second_pass_queues_nothing(
    settings: Settings, listing: FakeRegistry, store: Store, redis_conn: redis.Redis
) -> None:
    _run(settings, listing, store, redis_conn)
    again = _run(settings, listing, store, redis_conn)
    assert again.enqueued == 0
    assert len(_jobs(redis_conn)) == 3


def test_vetted_images_are_queued_again_only_under_a_new_ruleset(
    settings: Settings, listing: FakeRegistry, store: Store, redis_conn: redis.Redis
) -> None:
    for repo, digest in [("team/app", APP_V1), ("team/app", APP_V2), ("tools/cli", TOOL)]:
        store.record_push(repo, digest, tag=None, media_type=MANIFEST)
        store.save_report(make_report(repo, digest, ruleset=RULESET))
    assert _run(settings, listing, store, redis_conn).enqueued == 0
    assert _run(settings, listing, store, redis_conn, ruleset="rules-2").enqueued == 3


def test_a_failing_repository_is_reported_and_the_walk_goes_on(
    settings: Settings, listing: FakeRegistry, store: Store, redis_conn: redis.Redis
) -> None:
    listing.repositories = {"broken/repo": {}, **listing.repositories}
    listing.broken.add("broken/repo")
    report = _run(settings, listing, store, redis_conn)
    assert report.enqueued == 3
    assert len(report.errors) == 1
    assert report.errors[0].startswith("broken/repo: NotFound")


def test_hostile_names_from_the_registry_are_skipped(
    settings: Settings, listing: FakeRegistry, store: Store, redis_conn: redis.Redis
) -> None:
    listing.repositories = {"../../etc": {"x": TOOL}, "ok/repo": {"-bad-tag": TOOL, "good": TOOL}}
    report = _run(settings, listing, store, redis_conn)
    assert report.enqueued == 1
    assert report.tags == 1
    assert [e.split(":")[0] for e in report.errors] == ["../../etc"]
    assert store.tags_of("ok/repo", TOOL) == ("good",)


def test_signature_tags_are_not_admitted_as_images(
    settings: Settings, listing: FakeRegistry, store: Store, redis_conn: redis.Redis
) -> None:
    hexdigest = APP_V1.removeprefix("sha256:")
    signature, index = digest_of("app-v1.sig"), digest_of("app-v1 referrers")
    listing.repositories["team/app"].update(
        {f"sha256-{hexdigest}.sig": signature, f"sha256-{hexdigest}.att": signature, f"sha256-{hexdigest}": index}
    )
    report = _run(settings, listing, store, redis_conn)
    assert report == ReconcileReport(repositories=2, tags=4, enqueued=3, errors=())
    assert store.get_record("team/app", signature) is None and store.get_record("team/app", index) is None


def test_registry_down_is_an_error_not_a_crash(
    settings: Settings, listing: FakeRegistry, store: Store, redis_conn: redis.Redis
) -> None:
    listing.down = True
    report = _run(settings, listing, store, redis_conn)
    assert report.repositories == 0
    assert report.errors[0].startswith("catalog: RegistryUnavailable")


def test_redis_down_stops_the_walk(settings: Settings, listing: FakeRegistry, store: Store, free_port: int) -> None:
    dead = redis.Redis(host="127.0.0.1", port=free_port, socket_connect_timeout=1)
    report = _run(settings, listing, store, dead)
    assert report.enqueued == 0
    assert len(report.errors) == 1
    assert report.errors[0].startswith("stopped:")
    assert report.repositories == 1  # it did not go on hammering every repository


def test_report_json() -> None:
    report = ReconcileReport(repositories=1, tags=2, enqueued=1, errors=("x",))
    assert report.to_json() == {"repositories": 1, "tags": 2, "enqueued": 1, "errors": ["x"], "moves_resumed": 0}


# -- against the real registry -----------------------------------------------------------------------------------


@pytest.mark.functional
def test_reconcile_against_the_real_registry(
    registry: Any, store: Store, redis_url: str, redis_conn: redis.Redis, tmp_path: Path
) -> None:
    """Images pushed while no notification reached Tollgate are found, recorded and queued once."""
    from tests.support.oci import tar_layer, write_image_layout
    from workers.registry import RegistryClient

    app_digest = write_image_layout(tmp_path / "app", [tar_layer({"app/main.sh": b"#!/bin/sh\necho app\n"})])
    cli_digest = write_image_layout(tmp_path / "cli", [tar_layer({"usr/bin/cli": b"#!/bin/sh\necho cli\n"})])
    registry.push_layout(tmp_path / "app", "team/app", "1.0")
    registry.push_layout(tmp_path / "app", "team/app", "latest")
    registry.push_layout(tmp_path / "cli", "tools/cli", "v3")
    registry.push_layout(tmp_path / "cli", "quarantine/tools/cli", "v3")
    settings = Settings.from_env(
        {}, redis_url=redis_url, registry_url=registry.url, registry_use_docker_config=False, reconcile_interval=0
    )
    with RegistryClient.from_settings(settings) as client:
        report = reconcile(settings, client=client, store=store, redis_conn=redis_conn, ruleset=RULESET)
        again = reconcile(settings, client=client, store=store, redis_conn=redis_conn, ruleset=RULESET)

    assert report == ReconcileReport(repositories=2, tags=3, enqueued=2, errors=())
    assert again.enqueued == 0
    assert sorted(_jobs(redis_conn)) == sorted(
        [scan_job_id("team/app", app_digest, RULESET), scan_job_id("tools/cli", cli_digest, RULESET)]
    )
    assert set(store.tags_of("team/app", app_digest)) == {"1.0", "latest"}
    assert store.get_record("quarantine/tools/cli", cli_digest) is None
