"""service/openapi.yaml is the API contract: it documents every route served and real responses validate."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from flask.testing import FlaskClient
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from service.actions import actions_bp
from service.api import api_bp
from tests.support.storage import digest_of, make_finding, make_report
from tests.unit.test_api import make_app
from workers.store import Store

OPENAPI_PATH = Path(__file__).resolve().parents[2] / "service" / "openapi.yaml"
DOC_URI = "urn:tollgate:openapi"
UNDOCUMENTED_ENDPOINTS = {"api.unknown_route"}  # the JSON 404 for unknown paths is not an operation
DOCUMENTED_BLUEPRINTS = (f"{api_bp.name}.", f"{actions_bp.name}.")  # the read API and the write API
REPO = "team/app"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(OPENAPI_PATH.read_text())
    return loaded


def validator_for(document: dict[str, Any], schema_name: str) -> jsonschema.Draft202012Validator:
    """A validator for ``#/components/schemas/<schema_name>`` with the document's refs resolvable."""
    registry: Registry[Any] = Registry().with_resource(
        DOC_URI, Resource.from_contents(document, default_specification=DRAFT202012)
    )
    return jsonschema.Draft202012Validator(
        {"$ref": f"{DOC_URI}#/components/schemas/{schema_name}"},
        registry=registry,
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
    )


def _served_operations(client: FlaskClient) -> set[tuple[str, str]]:
    operations = set()
    for rule in client.application.url_map.iter_rules():
        if not rule.endpoint.startswith(DOCUMENTED_BLUEPRINTS) or rule.endpoint in UNDOCUMENTED_ENDPOINTS:
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in rule.methods or ():
            if method not in {"HEAD", "OPTIONS"}:
                operations.add((path, method.lower()))
    return operations


def test_document_is_openapi_3_1_with_valid_schemas(document: dict[str, Any]) -> None:
    assert str(document["openapi"]).startswith("3.1")
    for schema in document["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)  # raises SchemaError naming the problem


def test_every_served_route_is_documented_and_nothing_else(document: dict[str, Any], store: Store) -> None:
    app = make_app(store)
    app.register_blueprint(actions_bp)  # tests/functional/test_write_api.py validates its answers
    served = _served_operations(app.test_client())
    documented = {
        (path, method)
        for path, item in document["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    }
    assert served, "the blueprint serves routes"
    assert served == documented
    for path, method in documented:
        params = {p["name"] for p in document["paths"][path][method].get("parameters", []) if p["in"] == "path"}
        assert params == set(re.findall(r"{(\w+)}", path)), path


def test_real_responses_validate(document: dict[str, Any], store: Store) -> None:
    digest = digest_of("manifest")
    store.record_push(REPO, digest, tag="1.4", media_type="application/vnd.oci.image.manifest.v1+json")
    store.save_report(make_report(REPO, digest, findings=[make_finding(0), make_finding(1, layer=None, path=None)]))
    store.record_push(REPO, digest_of("queued"), tag=None, media_type=None)
    store.mark_error(REPO, digest_of("broken"), "manifest is not JSON", ruleset="r1")
    client = make_app(store).test_client()

    record = client.get(f"/api/v1/images/{REPO}@{digest}").get_json()
    assert record["findings"]
    validator_for(document, "ImageRecord").validate(record)
    listing = client.get("/api/v1/images").get_json()
    assert len(listing["images"]) == 3
    validator_for(document, "ImageList").validate(listing)
    validator_for(document, "Health").validate(client.get("/api/v1/health").get_json())
    for path in (f"/api/v1/images/{REPO}:nope", "/api/v1/images/BAD:1", "/api/v1/images?limit=0", "/api/v1/x"):
        validator_for(document, "Error").validate(client.get(path).get_json())


def test_the_record_schema_rejects_what_the_contract_forbids(document: dict[str, Any], store: Store) -> None:
    digest = digest_of("manifest")
    store.save_report(make_report(REPO, digest))
    good = make_app(store).test_client().get(f"/api/v1/images/{REPO}@{digest}").get_json()
    validator = validator_for(document, "ImageRecord")
    validator.validate(good)
    bad_variants = [
        {**good, "verdict": "pass"},
        {**good, "status": "finished"},
        {**good, "digest": "sha256:xyz"},
        {**good, "scanned_at": "yesterday"},
        {**good, "surprise": 1},
        {k: v for k, v in good.items() if k != "tags"},
        {**good, "findings": [{**good["findings"][0], "severity": "apocalyptic"}]},
    ]
    for bad in bad_variants:
        assert not validator.is_valid(bad), bad


def test_signature_checks_are_stored_served_and_described(document: dict[str, Any], store: Store) -> None:
    from dataclasses import replace
    from datetime import UTC, datetime

    from workers.signatures.model import SignatureCheck, SignatureFormat, SignatureKind

    digest = digest_of("signed")
    keyless = SignatureCheck(
        SignatureKind.COSIGN_KEYLESS,
        SignatureFormat.BUNDLE_REFERRER,
        digest,
        True,
        "cosign signature statement signed by dev@example.com from https://issuer.example.com",
        digest_of("referrer"),
        identity="dev@example.com",
        issuer="https://issuer.example.com",
        log_index=1000,
        integrated_time=datetime(2026, 1, 1, tzinfo=UTC),
    )
    keyed = SignatureCheck(
        SignatureKind.COSIGN_KEYED,
        SignatureFormat.LEGACY_TAG,
        digest,
        False,
        "signature does not verify with any of the 1 configured keys",
        f"sha256-{'ab' * 32}.sig@{digest_of('sig')}#0",
    )
    store.save_report(replace(make_report(REPO, digest), signatures=(keyless, keyed)))
    record = make_app(store).test_client().get(f"/api/v1/images/{REPO}@{digest}").get_json()
    validator = validator_for(document, "ImageRecord")
    validator.validate(record)
    assert [s["verified"] for s in record["signatures"]] == [True, False]
    assert record["signatures"][0]["identity"] == "dev@example.com" and record["signatures"][0]["log_index"] == 1000
    assert record["signatures"][0]["time"].startswith("2026-01-01T00:00:00")
    assert not validator.is_valid({**record, "signatures": [{**record["signatures"][0], "kind": "gpg"}]})
