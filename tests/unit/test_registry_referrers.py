"""Unit tests of RegistryClient.referrers (the OCI 1.1 referrers API) against an in-process fake registry."""

from __future__ import annotations

import httpx
import pytest

from workers.domain import sha256_digest
from workers.errors import RegistryProtocolError
from workers.registry import InvalidReference, RegistryClient

SUBJECT = sha256_digest(b"subject")
BUNDLE_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"


def _client(handler: httpx.MockTransport) -> RegistryClient:
    return RegistryClient("http://reg.test", transport=handler, retries=0)


def test_referrers_pages_and_filter() -> None:
    seen: list[httpx.URL] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        if request.url.params.get("last") == "1":
            return httpx.Response(200, json={"manifests": [{"digest": "two"}]})
        link = f'</v2/team/app/referrers/{SUBJECT}?artifactType={BUNDLE_TYPE}&last=1>; rel="next"'
        return httpx.Response(200, json={"manifests": [{"digest": "one"}]}, headers={"Link": link})

    with _client(httpx.MockTransport(handle)) as client:
        assert client.referrers("team/app", SUBJECT, artifact_type=BUNDLE_TYPE) == [
            {"digest": "one"},
            {"digest": "two"},
        ]
    assert seen[0].path == f"/v2/team/app/referrers/{SUBJECT}"
    assert seen[0].params["artifactType"] == BUNDLE_TYPE


def test_referrers_absent_api_is_none_and_bad_answers_are_errors() -> None:
    answers = iter([httpx.Response(404), httpx.Response(200, content=b"nope"), httpx.Response(200, json={"a": 1})])
    with _client(httpx.MockTransport(lambda request: next(answers))) as client:
        assert client.referrers("team/app", SUBJECT) is None
        with pytest.raises(RegistryProtocolError, match="not JSON"):
            client.referrers("team/app", SUBJECT)
        with pytest.raises(RegistryProtocolError, match="not an image index"):
            client.referrers("team/app", SUBJECT)
        with pytest.raises(InvalidReference):
            client.referrers("team/app", "sha256:short")  # type: ignore[arg-type]
