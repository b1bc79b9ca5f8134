"""The read API over a real store (SQLite file and PostgreSQL) through Flask's test client."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Blueprint, Flask
from flask.testing import FlaskClient

from service.api import STORE_EXTENSION, BadReference, ImageSelector, api_bp, parse_image_path
from tests.support.storage import digest_of, make_report
from workers.domain import Action, Verdict
from workers.store import Store

REPO = "team/app"
DIGEST = digest_of("manifest")


def make_app(store: Store) -> Flask:
    """The minimal app the blueprint needs: the store extension and the blueprint."""
    app = Flask(__name__)
    app.extensions[STORE_EXTENSION] = store
    app.register_blueprint(api_bp)
    return app


@pytest.fixture
def client(store: Store) -> FlaskClient:
    return make_app(store).test_client()


@pytest.fixture
def scanned(store: Store) -> Store:
    """One malicious image tagged 1.4 and latest, one clean image in a nested repository."""
    store.record_push(REPO, DIGEST, tag="1.4", media_type="application/vnd.oci.image.manifest.v1+json")
    store.record_push(REPO, DIGEST, tag="latest", media_type=None)
    store.save_report(make_report(REPO, DIGEST))
    clean = digest_of("clean")
    store.record_push("org/team/web", clean, tag="v2", media_type=None)
    store.save_report(make_report("org/team/web", clean, verdict=Verdict.CLEAN, action=Action.ALLOW, findings=[]))
    return store


def _json_error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json
    body: dict[str, Any] = response.get_json()
    assert set(body) == {"error", "reason"}
    return body


# -- records ----------------------------------------------------------------------------------------------------


def test_record_by_digest(client: FlaskClient, scanned: Store) -> None:
    response = client.get(f"/api/v1/images/{REPO}@{DIGEST}")
    assert response.status_code == 200
    body = response.get_json()
    assert body["repository"] == REPO and body["digest"] == DIGEST
    assert body["tags"] == ["1.4", "latest"]
    assert body["status"] == "done" and body["verdict"] == "malicious" and body["action"] == "quarantine"
    assert body["findings"][0]["rule"] == "miner.xmrig-config-0"
    assert body["scanned_at"].endswith("Z")
    assert response.headers["Cache-Control"] == "no-cache"


def test_record_by_tag_in_a_nested_repository(client: FlaskClient, scanned: Store) -> None:
    body = client.get("/api/v1/images/org/team/web:v2").get_json()
    assert body["repository"] == "org/team/web" and body["verdict"] == "clean" and body["findings"] == []


def test_tag_and_digest_together_the_digest_wins(client: FlaskClient, scanned: Store) -> None:
    response = client.get(f"/api/v1/images/{REPO}:nonexistent@{DIGEST}")
    assert response.status_code == 200
    assert response.get_json()["digest"] == DIGEST


def test_a_queued_image_is_served_before_its_scan(client: FlaskClient, store: Store) -> None:
    store.record_push(REPO, DIGEST, tag="new", media_type=None)
    body = client.get(f"/api/v1/images/{REPO}:new").get_json()
    assert body["status"] == "queued" and body["verdict"] is None and body["scanned_at"] is None


@pytest.mark.parametrize(
    "path",
    [
        f"/api/v1/images/{REPO}@{digest_of('unknown')}",
        f"/api/v1/images/{REPO}:unknown",
        f"/api/v1/images/other/repo@{DIGEST}",  # same digest, other repository
    ],
)
def test_unknown_images_are_json_404(client: FlaskClient, scanned: Store, path: str) -> None:
    body = _json_error(client.get(path), 404)
    assert body["error"] == "not found" and "no record" in body["reason"]


@pytest.mark.parametrize(
    "ref",
    [
        "team/app",  # neither tag nor digest
        "team/app:1.4/extra",  # ':' before the last '/'
        "team/app@sha256:1234",
        "team/app@md5:d41d8cd98f00b204e9800998ecf8427e",
        f"Team/App@{DIGEST}",
        f"team/../app@{DIGEST}",
        "team/app:-bad",
        "team/app:" + "x" * 200,
        "team/app:1%00",
        f"team/app:bad tag@{DIGEST}",
        f"localhost:5000/team/app@{DIGEST}",
        "a/" * 300 + "b:1",
        f"@{DIGEST}",
        ":1.4",
        f"team/app@{DIGEST}@{DIGEST}",
        "team/app:\u00e9t\u00e9",
    ],
)
def test_malformed_references_are_json_400(client: FlaskClient, store: Store, ref: str) -> None:
    body = _json_error(client.get(f"/api/v1/images/{ref}"), 400)
    assert body["error"] == "bad reference" and body["reason"]


def test_parse_image_path() -> None:
    assert parse_image_path(f"a/b/c@{DIGEST}") == ImageSelector("a/b/c", digest=DIGEST)
    assert parse_image_path("a/b/c:1.0") == ImageSelector("a/b/c", tag="1.0")
    assert str(parse_image_path("x:y")) == "x:y"
    with pytest.raises(BadReference):
        parse_image_path("")


# -- lists ------------------------------------------------------------------------------------------------------


def test_list_images_with_filters_and_pages(client: FlaskClient, scanned: Store) -> None:
    everything = client.get("/api/v1/images").get_json()
    assert {r["repository"] for r in everything["images"]} == {REPO, "org/team/web"}
    assert everything["limit"] == 100 and everything["offset"] == 0 and everything["next_offset"] is None
    only = client.get("/api/v1/images", query_string={"repository": "org/team/web"}).get_json()
    assert [r["repository"] for r in only["images"]] == ["org/team/web"]
    scanned.record_push("x/queued", digest_of("q"), tag=None, media_type=None)
    queued = client.get("/api/v1/images?status=queued").get_json()
    assert [r["repository"] for r in queued["images"]] == ["x/queued"]
    first = client.get("/api/v1/images?limit=2").get_json()
    assert len(first["images"]) == 2 and first["next_offset"] == 2
    rest = client.get("/api/v1/images?limit=2&offset=2").get_json()
    assert len(rest["images"]) == 1 and rest["next_offset"] is None


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=501",
        "limit=abc",
        "limit=-1",
        "limit=1e3",
        "limit=99999999999999999999999",
        "offset=-1",
        "offset=1000000001",
        "status=bogus",
        "repository=Not/Valid",
        "repository=a%00b",
    ],
)
def test_bad_list_parameters_are_json_400(client: FlaskClient, store: Store, query: str) -> None:
    body = _json_error(client.get(f"/api/v1/images?{query}"), 400)
    assert body["error"] == "bad parameter"


# -- health and failures ----------------------------------------------------------------------------------------


def test_health_when_the_database_answers(client: FlaskClient) -> None:
    response = client.get("/api/v1/health")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "database": "ok"}


@pytest.fixture
def unreachable_store() -> Iterator[Store]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = Store(f"postgresql+psycopg://postgres@127.0.0.1:{port}/nothing?connect_timeout=5")
    yield store
    store.close()


def test_unreachable_database_gives_503(unreachable_store: Store) -> None:
    client = make_app(unreachable_store).test_client()
    health = client.get("/api/v1/health")
    assert health.status_code == 503
    assert health.get_json()["status"] == "unavailable"
    response = client.get(f"/api/v1/images/{REPO}@{DIGEST}")
    body = _json_error(response, 503)
    assert body["error"] == "store unavailable"
    assert response.headers["Retry-After"] == "5"
    _json_error(client.get("/api/v1/images"), 503)


def test_unmigrated_database_gives_503_with_a_hint(database_url: str) -> None:
    store = Store(database_url)
    try:
        client = make_app(store).test_client()
        health = client.get("/api/v1/health")
        assert health.status_code == 503 and "migrate" in health.get_json()["reason"]
    finally:
        store.close()


class ExplodingStore(Store):
    """A store whose reads fail with a bug-like error (a fake, for this unit test only)."""

    def get_record(self, repository: str, digest: Any) -> Any:
        raise RuntimeError("secret internal detail")


def test_unexpected_errors_are_json_500_without_details(tmp_path: Any) -> None:
    store = ExplodingStore(f"sqlite:///{tmp_path / 't.db'}")
    try:
        response = make_app(store).test_client().get(f"/api/v1/images/{REPO}@{DIGEST}")
        body = _json_error(response, 500)
        assert "secret" not in response.get_data(as_text=True)
        assert body["error"] == "internal error"
    finally:
        store.close()


def test_unknown_api_paths_are_json_404(client: FlaskClient) -> None:
    _json_error(client.get("/api/v1/nothing/here"), 404)
    _json_error(client.get("/api/v1/images/"), 404)
    _json_error(client.get(f"/api/v1/images//team/app@{DIGEST}"), 404)  # an empty path segment


def test_other_blueprints_under_the_prefix_are_not_shadowed(store: Store) -> None:
    """The write API (another module) adds POST routes below /api/v1/images/…; they must still be reached."""
    app = make_app(store)
    writes = Blueprint("writes", __name__, url_prefix="/api/v1")
    writes.add_url_rule("/images/<path:ref>/release", "release", lambda ref: {"released": ref}, methods=["POST"])
    writes.add_url_rule("/audit", "audit", lambda: {"audit": []})
    app.register_blueprint(writes)
    client = app.test_client()
    assert client.post(f"/api/v1/images/{REPO}@{DIGEST}/release").get_json() == {"released": f"{REPO}@{DIGEST}"}
    assert client.get("/api/v1/audit").get_json() == {"audit": []}
    _json_error(client.get(f"/api/v1/images/{REPO}@{DIGEST}"), 404)
