"""Unit tests of the registry client against in-process fakes (httpx.MockTransport): auth, redirects, retries."""

from __future__ import annotations

import base64
import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from workers.domain import MANIFEST_ACCEPT, Digest, sha256_digest
from workers.errors import (
    IntegrityError,
    NotFound,
    RegistryAuthError,
    RegistryProtocolError,
    RegistryUnavailable,
)
from workers.registry import (
    Challenge,
    Credentials,
    InvalidReference,
    RegistryClient,
    parse_www_authenticate,
)
from workers.settings import Settings

REGISTRY = "https://reg.test"
MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + "a" * 64, "size": 2},
        "layers": [],
    }
).encode()
MANIFEST_DIGEST = sha256_digest(MANIFEST)
BLOB = b"layer bytes " * 1000
BLOB_DIGEST = sha256_digest(BLOB)


# ---------------------------------------------------------------------------------------------- challenges


def test_bearer_challenge_with_commas_and_several_scopes() -> None:
    header = (
        'Bearer realm="https://auth.example/token",service="registry.example",'
        'scope="repository:team/app:pull,push repository:base/img:pull"'
    )
    (challenge,) = parse_www_authenticate(header)
    assert challenge.scheme == "bearer"
    assert challenge.params["realm"] == "https://auth.example/token"
    assert challenge.params["service"] == "registry.example"
    assert challenge.scopes == ("repository:team/app:pull,push", "repository:base/img:pull")


def test_several_challenges_ows_escapes_and_case() -> None:
    header = 'Basic realm="basic, realm", BEARER Realm = "https://a/t" , Service=reg , error="a\\"b", Negotiate abc+/=='
    challenges = parse_www_authenticate(header)
    assert [c.scheme for c in challenges] == ["basic", "bearer", "negotiate"]
    assert challenges[0].params == {"realm": "basic, realm"}
    assert challenges[1].params == {"realm": "https://a/t", "service": "reg", "error": 'a"b'}
    assert challenges[2].token68 == "abc+/=="


def test_first_duplicate_param_wins() -> None:
    (challenge,) = parse_www_authenticate('Bearer realm="https://good/t",realm="https://evil/t"')
    assert challenge.params["realm"] == "https://good/t"


def test_scheme_without_params() -> None:
    assert parse_www_authenticate("Basic") == (Challenge("basic", {}),)


def test_empty_param_value_reads_as_token68_not_as_a_realm() -> None:
    (challenge,) = parse_www_authenticate("Bearer realm=,")
    assert challenge.params == {} and challenge.token68 == "realm="


@pytest.mark.parametrize(
    "header",
    [
        "",
        " , ,",
        'Bearer realm="unterminated',
        'Bearer realm="x"garbage',
        'Bearer realm="a\\',
        "=====",
        'Bearer realm="x\ny"',
        'Bearer realm=="x"',
        "Bearer " + "a" * 9000,
        'Bearer realm="x" service="y"',
        "Negotiate abc== trailing",
    ],
)
def test_hostile_challenges_are_protocol_errors(header: str) -> None:
    with pytest.raises(RegistryProtocolError):
        parse_www_authenticate(header)


def test_challenge_parser_never_crashes_on_noise() -> None:
    rng = random.Random(7235)
    alphabet = 'Bearer realm="scope,=\\ \t abc/+'
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        try:
            result = parse_www_authenticate(text)
        except RegistryProtocolError:
            continue
        assert all(isinstance(c, Challenge) and c.scheme for c in result)


# ---------------------------------------------------------------------------------------------- fakes


@dataclass
class FakeHosts:
    """Routes requests to per-host handlers and records every request it saw."""

    handlers: dict[str, Callable[[httpx.Request], httpx.Response]] = field(default_factory=dict)
    seen: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        key = f"{request.url.scheme}://{request.url.netloc.decode()}"
        return self.handlers[key](request)

    def client(self, **kwargs: object) -> RegistryClient:
        kwargs.setdefault("sleep", self.sleeps.append)
        return RegistryClient(REGISTRY, transport=httpx.MockTransport(self), **kwargs)  # type: ignore[arg-type]

    sleeps: list[float] = field(default_factory=list)

    def to(self, host: str) -> list[httpx.Request]:
        return [r for r in self.seen if f"{r.url.scheme}://{r.url.netloc.decode()}" == host]


def manifest_response(body: bytes = MANIFEST, **headers: str) -> httpx.Response:
    base = {"Content-Type": "application/vnd.oci.image.manifest.v1+json", "Docker-Content-Digest": sha256_digest(body)}
    base.update(headers)
    return httpx.Response(200, content=body, headers=base)


def error_body(code: str, message: str) -> bytes:
    return json.dumps({"errors": [{"code": code, "message": message, "detail": None}]}).encode()


class TokenServer:
    """A distribution-style token service: issues a fresh token per request, remembers scopes."""

    def __init__(self, *, key: str = "token", expires_in: int | None = 300, user: tuple[str, str] | None = None):
        self.key = key
        self.expires_in = expires_in
        self.user = user
        self.issued: dict[str, frozenset[str]] = {}
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.user is not None:
            expected = "Basic " + base64.b64encode(f"{self.user[0]}:{self.user[1]}".encode()).decode()
            if request.headers.get("authorization") != expected:
                return httpx.Response(401)
        token = f"tok{len(self.requests)}"
        self.issued[token] = frozenset(request.url.params.get_list("scope"))
        body: dict[str, object] = {self.key: token}
        if self.expires_in is not None:
            body["expires_in"] = self.expires_in
        return httpx.Response(200, json=body)


def bearer_registry(tokens: TokenServer, routes: Callable[[httpx.Request], httpx.Response]):
    """A registry that demands a bearer token carrying the pull scope of the requested repository."""

    def handle(request: httpx.Request) -> httpx.Response:
        auth = request.headers.get("authorization", "")
        parts = request.url.path.split("/")
        repo = "/".join(parts[2:-2]) if len(parts) > 4 else ""
        scope = f"repository:{repo}:pull"
        granted = tokens.issued.get(auth.removeprefix("Bearer "), frozenset())
        if not auth.startswith("Bearer ") or (repo and scope not in granted):
            challenge = f'Bearer realm="https://auth.test/token",service="reg.test",scope="{scope}"'
            return httpx.Response(401, headers={"WWW-Authenticate": challenge}, content=error_body("UNAUTHORIZED", "x"))
        return routes(request)

    return handle


# ---------------------------------------------------------------------------------------------- auth flows


def test_bearer_token_flow_and_cache_by_scope() -> None:
    tokens = TokenServer()
    hosts = FakeHosts()
    hosts.handlers["https://auth.test"] = tokens
    hosts.handlers[REGISTRY] = bearer_registry(tokens, lambda _r: manifest_response())
    with hosts.client(credentials=Credentials("ci", "pw")) as client:
        assert client.get_manifest("team/app", "v1").digest == MANIFEST_DIGEST
        assert client.get_manifest("team/app", "v2").digest == MANIFEST_DIGEST
        assert len(tokens.requests) == 1  # cached for the same scope set
        client.get_manifest("team/other", "v1")
        assert len(tokens.requests) == 2  # a new scope set needs a new token
    first = tokens.requests[0]
    assert first.url.params["service"] == "reg.test"
    assert first.url.params.get_list("scope") == ["repository:team/app:pull"]
    assert first.headers["authorization"].startswith("Basic ")  # credentials go to the token realm
    registry_auth = [r.headers.get("authorization", "") for r in hosts.to(REGISTRY)]
    assert all(not a.startswith("Basic") for a in registry_auth)  # never Basic to a bearer registry
    assert hosts.to(REGISTRY)[-1].headers["accept"] == MANIFEST_ACCEPT


def test_token_expiry_refetches_early() -> None:
    now = [1000.0]
    tokens = TokenServer(key="access_token", expires_in=None)  # default lifetime: 60 s
    hosts = FakeHosts({"https://auth.test": tokens})
    hosts.handlers[REGISTRY] = bearer_registry(tokens, lambda _r: manifest_response())
    with hosts.client(clock=lambda: now[0]) as client:
        client.get_manifest("team/app", "v1")
        now[0] += 50  # still inside 60 s minus the safety margin
        client.get_manifest("team/app", "v1")
        assert len(tokens.requests) == 1
        now[0] += 5  # past 60 s minus margin (54 s): refetch before the registry would refuse it
        client.get_manifest("team/app", "v1")
        assert len(tokens.requests) == 2
    assert not any(r.url.host == "auth.test" and r.headers.get("authorization") for r in hosts.seen)  # anonymous


def test_several_scopes_are_separate_query_params() -> None:
    tokens = TokenServer()
    hosts = FakeHosts({"https://auth.test": tokens})

    def registry(request: httpx.Request) -> httpx.Response:
        if "mount" in request.url.params:
            granted = tokens.issued.get(request.headers.get("authorization", "").removeprefix("Bearer "))
            if granted is None:
                challenge = (
                    'Bearer realm="https://auth.test/token",service="reg.test",'
                    'scope="repository:dst/app:pull,push repository:src/app:pull"'
                )
                return httpx.Response(401, headers={"WWW-Authenticate": challenge})
            return httpx.Response(201, headers={"Location": "/v2/dst/app/blobs/" + BLOB_DIGEST})
        raise AssertionError(request.url)

    hosts.handlers[REGISTRY] = registry
    with hosts.client() as client:
        assert client.mount_blob("dst/app", BLOB_DIGEST, "src/app") is True
    assert sorted(tokens.requests[0].url.params.get_list("scope")) == [
        "repository:dst/app:pull,push",
        "repository:src/app:pull",
    ]


@pytest.mark.parametrize(
    ("response", "error"),
    [
        (httpx.Response(401), RegistryAuthError),
        (httpx.Response(403), RegistryAuthError),
        (httpx.Response(200, content=b"not json"), RegistryProtocolError),
        (httpx.Response(200, json=["list"]), RegistryProtocolError),
        (httpx.Response(200, json={"token": ""}), RegistryProtocolError),
        (httpx.Response(200, json={"token": "a\r\nInjected: 1"}), RegistryProtocolError),
        (httpx.Response(200, content=b"{" + b" " * (2 * 1024 * 1024) + b"}"), RegistryProtocolError),
    ],
)
def test_bad_token_service_answers(response: httpx.Response, error: type[Exception]) -> None:
    hosts = FakeHosts({"https://auth.test": lambda _r: response})
    hosts.handlers[REGISTRY] = lambda _r: httpx.Response(
        401, headers={"WWW-Authenticate": 'Bearer realm="https://auth.test/token",service="reg.test"'}
    )
    with hosts.client(credentials=Credentials("ci", "hunter2")) as client, pytest.raises(error) as caught:
        client.ping()
    assert "hunter2" not in str(caught.value)


def test_token_realm_may_not_downgrade_to_http() -> None:
    hosts = FakeHosts()
    hosts.handlers[REGISTRY] = lambda _r: httpx.Response(
        401, headers={"WWW-Authenticate": 'Bearer realm="http://auth.test/token"'}
    )
    with hosts.client(credentials=Credentials("ci", "pw")) as client, pytest.raises(RegistryProtocolError):
        client.ping()
    assert hosts.to("http://auth.test") == []


def test_insufficient_scope_after_a_token_is_an_auth_error() -> None:
    tokens = TokenServer()
    hosts = FakeHosts({"https://auth.test": tokens})
    hosts.handlers[REGISTRY] = lambda _r: httpx.Response(
        401,
        headers={"WWW-Authenticate": 'Bearer realm="https://auth.test/token",error="insufficient_scope"'},
    )
    with hosts.client() as client, pytest.raises(RegistryAuthError):
        client.delete_manifest("team/app", MANIFEST_DIGEST)
    assert len(tokens.requests) == 1  # no token storm


def test_basic_auth_is_sent_on_every_request_once_challenged() -> None:
    expected = "Basic " + base64.b64encode(b"ci:s3cret").decode()

    def registry(request: httpx.Request) -> httpx.Response:
        if request.headers.get("authorization") != expected:
            return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="basic-realm"'})
        return manifest_response()

    hosts = FakeHosts({REGISTRY: registry})
    with hosts.client(credentials=Credentials("ci", "s3cret")) as client:
        client.ping()
        client.get_manifest("team/app", "v1")
        client.get_manifest("team/app", "v2")
    statuses = [r.headers.get("authorization") for r in hosts.seen]
    assert statuses == [None, expected, expected, expected]  # one challenge, then always sent


def test_basic_without_credentials_and_wrong_password() -> None:
    hosts = FakeHosts(
        {REGISTRY: lambda _r: httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="basic-realm"'})}
    )
    with hosts.client() as client, pytest.raises(RegistryAuthError, match="no credentials"):
        client.ping()
    with hosts.client(credentials=Credentials("ci", "wrong-pass")) as client:
        with pytest.raises(RegistryAuthError) as caught:
            client.ping()
        assert "wrong-pass" not in str(caught.value)
        with pytest.raises(RegistryAuthError):  # later requests fail the same way, no loop
            client.list_tags("team/app")


def test_ready_token_is_sent_as_is() -> None:
    hosts = FakeHosts({REGISTRY: lambda _r: manifest_response()})
    with hosts.client(credentials=Credentials(token="robot-token")) as client:
        client.get_manifest("team/app", "v1")
    assert hosts.seen[0].headers["authorization"] == "Bearer robot-token"


def test_credentials_repr_hides_secrets() -> None:
    text = repr(Credentials("ci", "hunter2", "tok-secret"))
    assert "hunter2" not in text and "tok-secret" not in text and "ci" in text


# ---------------------------------------------------------------------------------------------- redirects


def storage_hosts(location: str) -> FakeHosts:
    expected = "Basic " + base64.b64encode(b"ci:pw").decode()

    def registry(request: httpx.Request) -> httpx.Response:
        if request.headers.get("authorization") != expected:
            return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="r"'})
        return httpx.Response(307, headers={"Location": location})

    hosts = FakeHosts({REGISTRY: registry})
    hosts.handlers["https://storage.test"] = lambda _r: httpx.Response(200, content=BLOB)
    hosts.handlers["https://reg.test:8443"] = lambda _r: httpx.Response(200, content=BLOB)
    return hosts


@pytest.mark.parametrize(
    ("location", "storage"),
    [
        ("https://storage.test/bucket/blob?X-Amz-Signature=abc", "https://storage.test"),
        ("https://reg.test:8443/blob", "https://reg.test:8443"),  # same host, other port: another origin
    ],
)
def test_redirect_to_storage_drops_authorization(location: str, storage: str) -> None:
    hosts = storage_hosts(location)
    with (
        hosts.client(credentials=Credentials("ci", "pw")) as client,
        client.open_blob("team/app", BLOB_DIGEST, expected_size=len(BLOB)) as stream,
    ):
        assert stream.read() == BLOB
    (storage_request,) = hosts.to(storage)
    assert "authorization" not in storage_request.headers
    assert hosts.to(REGISTRY)[-1].headers["authorization"].startswith("Basic ")


def test_relative_redirect_on_the_same_origin_keeps_credentials() -> None:
    expected = "Basic " + base64.b64encode(b"ci:pw").decode()

    def registry(request: httpx.Request) -> httpx.Response:
        if request.headers.get("authorization") != expected:
            return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="r"'})
        if request.url.path.endswith("/moved"):
            return httpx.Response(200, content=BLOB)
        return httpx.Response(302, headers={"Location": "/moved"})

    hosts = FakeHosts({REGISTRY: registry})
    with hosts.client(credentials=Credentials("ci", "pw")) as client:
        assert client.get_blob("team/app", BLOB_DIGEST, max_bytes=len(BLOB)) == BLOB


@pytest.mark.parametrize(
    "location", ["file:///etc/passwd", "http://storage.test/blob", "gopher://x/", "https://", "//"]
)
def test_bad_redirect_targets_are_refused(location: str) -> None:
    hosts = FakeHosts({REGISTRY: lambda _r: httpx.Response(307, headers={"Location": location})})
    hosts.handlers["http://storage.test"] = lambda _r: httpx.Response(200, content=BLOB)
    with hosts.client() as client, pytest.raises(RegistryProtocolError):
        client.get_blob("team/app", BLOB_DIGEST, max_bytes=10**6)
    assert hosts.to("http://storage.test") == []


def test_redirect_loops_stop_after_five_hops() -> None:
    hosts = FakeHosts({REGISTRY: lambda _r: httpx.Response(302, headers={"Location": "/again"})})
    with hosts.client() as client, pytest.raises(RegistryProtocolError, match="redirects"):
        client.get_blob("team/app", BLOB_DIGEST, max_bytes=10**6)
    assert len(hosts.seen) == 6


# ---------------------------------------------------------------------------------------------- retries


def test_5xx_is_retried_with_exponential_backoff() -> None:
    answers = [httpx.Response(503), httpx.Response(502), manifest_response()]
    hosts = FakeHosts({REGISTRY: lambda _r: answers.pop(0)})
    with hosts.client(backoff=0.5) as client:
        assert client.get_manifest("team/app", "v1").raw == MANIFEST
    assert hosts.sleeps == [0.5, 1.0]


def test_persistent_5xx_becomes_registry_unavailable() -> None:
    hosts = FakeHosts({REGISTRY: lambda _r: httpx.Response(500)})
    with hosts.client(retries=3) as client, pytest.raises(RegistryUnavailable) as caught:
        client.list_tags("team/app")
    assert caught.value.transient
    assert len(hosts.seen) == 4
    assert hosts.sleeps == [0.5, 1.0, 2.0]


def test_429_honours_a_small_retry_after_and_refuses_a_long_one() -> None:
    answers = [httpx.Response(429, headers={"Retry-After": "3"}), manifest_response()]
    hosts = FakeHosts({REGISTRY: lambda _r: answers.pop(0)})
    with hosts.client() as client:
        client.get_manifest("team/app", "v1")
    assert hosts.sleeps == [3.0]

    hosts = FakeHosts({REGISTRY: lambda _r: httpx.Response(429, headers={"Retry-After": "3600"})})
    with hosts.client() as client, pytest.raises(RegistryUnavailable, match="retry after"):
        client.get_manifest("team/app", "v1")
    assert hosts.sleeps == [] and len(hosts.seen) == 1


@pytest.mark.parametrize("exc", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), httpx.ConnectTimeout("x")])
def test_transport_errors_are_retried_then_transient(exc: Exception) -> None:
    def fail(_request: httpx.Request) -> httpx.Response:
        raise exc

    hosts = FakeHosts({REGISTRY: fail})
    with hosts.client(retries=2) as client, pytest.raises(RegistryUnavailable):
        client.get_manifest("team/app", "v1")
    assert len(hosts.seen) == 3


@pytest.mark.parametrize(
    ("status", "error"),
    [(404, NotFound), (403, RegistryAuthError), (400, RegistryProtocolError), (405, RegistryProtocolError)],
)
def test_client_errors_are_not_retried(status: int, error: type[Exception]) -> None:
    body = error_body("MANIFEST_UNKNOWN", "manifest unknown")
    hosts = FakeHosts({REGISTRY: lambda _r: httpx.Response(status, content=body)})
    with hosts.client() as client, pytest.raises(error) as caught:
        client.get_manifest("team/app", "v1")
    assert len(hosts.seen) == 1
    assert "MANIFEST_UNKNOWN: manifest unknown" in str(caught.value)


def test_hostile_error_bodies_do_not_crash() -> None:
    for body in [b"\xff\xfe", b'{"errors": "x"}', b'{"errors": [1, {"code": 5}]}', b"[" * 100000]:
        hosts = FakeHosts({REGISTRY: lambda _r, b=body: httpx.Response(404, content=b)})
        with hosts.client() as client, pytest.raises(NotFound):
            client.get_manifest("team/app", "v1")


# ---------------------------------------------------------------------------------------------- manifests


def test_manifest_by_digest_must_match() -> None:
    tampered = MANIFEST.replace(b'"layers": []', b'"layers": [] ')
    hosts = FakeHosts({REGISTRY: lambda _r: manifest_response(tampered)})
    with hosts.client() as client, pytest.raises(IntegrityError, match="digest"):
        client.get_manifest("team/app", MANIFEST_DIGEST)


def test_manifest_must_match_docker_content_digest() -> None:
    hosts = FakeHosts({REGISTRY: lambda _r: manifest_response(**{"Docker-Content-Digest": "sha256:" + "0" * 64})})
    with hosts.client() as client, pytest.raises(IntegrityError):
        client.get_manifest("team/app", "v1")
    hosts = FakeHosts({REGISTRY: lambda _r: manifest_response(**{"Docker-Content-Digest": "md5:abc"})})
    with hosts.client() as client, pytest.raises(IntegrityError):
        client.get_manifest("team/app", "v1")


def test_manifest_without_digest_header_and_with_content_type_params() -> None:
    def answer(_r: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, content=MANIFEST, headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json; charset=x"}
        )

    hosts = FakeHosts({REGISTRY: answer})
    with hosts.client() as client:
        fetched = client.get_manifest("team/app", "v1")
    assert fetched.digest == MANIFEST_DIGEST
    assert fetched.media_type == "application/vnd.oci.image.manifest.v1+json"


def test_oversized_manifest_is_refused_with_and_without_content_length() -> None:
    big = b"{" + b" " * (4 * 1024 * 1024) + b"}"
    hosts = FakeHosts({REGISTRY: lambda _r: manifest_response(big)})
    with hosts.client() as client, pytest.raises(IntegrityError, match="larger"):
        client.get_manifest("team/app", "v1")

    def chunked(_r: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=iter([b" " * 1024 * 1024] * 6))

    hosts = FakeHosts({REGISTRY: chunked})
    with hosts.client() as client, pytest.raises(IntegrityError, match="larger"):
        client.get_manifest("team/app", "v1")


@pytest.mark.parametrize("reference", ["../etc", "v1/../../x", "sha256:zz", "a b", "", "x" * 200])
def test_invalid_references_never_reach_the_wire(reference: str) -> None:
    hosts = FakeHosts({REGISTRY: lambda _r: manifest_response()})
    with hosts.client() as client, pytest.raises(InvalidReference):
        client.get_manifest("team/app", reference)
    with hosts.client() as client, pytest.raises(InvalidReference):
        client.get_manifest("Team/../app", "v1")
    assert hosts.seen == []


def test_head_manifest() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/missing"):
            return httpx.Response(404)
        return httpx.Response(
            200,
            headers={
                "Docker-Content-Digest": MANIFEST_DIGEST,
                "Content-Length": str(len(MANIFEST)),
                "Content-Type": "application/vnd.oci.image.manifest.v1+json",
            },
        )

    hosts = FakeHosts({REGISTRY: answer})
    with hosts.client() as client:
        found = client.head_manifest("team/app", "v1")
        assert client.head_manifest("team/app", "missing") is None
    assert found is not None and found.digest == MANIFEST_DIGEST and found.size == len(MANIFEST)
    assert hosts.seen[0].method == "HEAD"


# ---------------------------------------------------------------------------------------------- blobs


def blob_hosts(body: bytes | list[bytes], **headers: str) -> FakeHosts:
    def answer(_r: httpx.Request) -> httpx.Response:
        content = iter(body) if isinstance(body, list) else body
        return httpx.Response(200, content=content, headers=headers)

    return FakeHosts({REGISTRY: answer})


def test_stream_verifies_at_eof() -> None:
    with blob_hosts(BLOB).client() as client, client.open_blob("team/app", BLOB_DIGEST) as stream:
        assert stream.read(10) == BLOB[:10]
        assert stream.read() == BLOB[10:]


def test_tampered_stream_raises_at_eof_never_returns_clean_eof() -> None:
    tampered = BLOB[:-1] + b"X"
    with (
        blob_hosts([tampered[:5000], tampered[5000:]]).client() as client,
        pytest.raises(IntegrityError, match="digest mismatch"),
        client.open_blob("team/app", BLOB_DIGEST) as stream,
    ):
        while stream.read(4096):
            pass  # bytes flow while streaming, but a clean EOF is never reported


def test_stream_that_is_not_read_to_the_end_is_drained_and_verified_on_exit() -> None:
    with blob_hosts(BLOB[:-1] + b"X").client() as client, pytest.raises(IntegrityError):  # noqa: SIM117
        with client.open_blob("team/app", BLOB_DIGEST) as stream:
            stream.read(100)  # the consumer stops early and leaves the block normally


@pytest.mark.parametrize("size", [len(BLOB) - 1, len(BLOB) + 1])
def test_size_mismatch_is_an_integrity_error(size: int) -> None:
    # No Content-Length (chunked): the size check happens while streaming.
    with blob_hosts([BLOB]).client() as client, pytest.raises(IntegrityError):  # noqa: SIM117
        with client.open_blob("team/app", BLOB_DIGEST, expected_size=size) as stream:
            stream.read()
    # With a Content-Length that disagrees: refused before reading.
    with blob_hosts(BLOB).client() as client, pytest.raises(IntegrityError, match="descriptor"):  # noqa: SIM117
        with client.open_blob("team/app", BLOB_DIGEST, expected_size=size):
            pass


def test_get_blob_caps_memory() -> None:
    with blob_hosts([BLOB]).client() as client, pytest.raises(IntegrityError, match="larger"):
        client.get_blob("team/app", BLOB_DIGEST, max_bytes=100)
    with blob_hosts(BLOB).client() as client:
        assert client.get_blob("team/app", BLOB_DIGEST, max_bytes=len(BLOB)) == BLOB


def test_stream_cut_mid_way_is_transient() -> None:
    def cut() -> object:
        yield BLOB[:100]
        raise httpx.ReadError("connection reset")

    hosts = FakeHosts({REGISTRY: lambda _r: httpx.Response(200, content=cut())})
    with hosts.client() as client, pytest.raises(RegistryUnavailable):  # noqa: SIM117
        with client.open_blob("team/app", BLOB_DIGEST) as stream:
            stream.read()


def test_sha512_digests_are_verified_with_sha512() -> None:
    digest = Digest("sha512:" + hashlib.sha512(BLOB).hexdigest())
    with blob_hosts(BLOB).client() as client:
        assert client.get_blob("team/app", digest, max_bytes=len(BLOB)) == BLOB


# ---------------------------------------------------------------------------------------------- listings


def test_catalog_and_tags_follow_relative_links() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v2/_catalog":
            if request.url.params.get("last") == "b":
                return httpx.Response(200, json={"repositories": ["c/d", "INVALID/../x"]})
            return httpx.Response(
                200, json={"repositories": ["a", "b"]}, headers={"Link": '</v2/_catalog?last=b&n=2>; rel="next"'}
            )
        if request.url.path == "/v2/team/app/tags/list":
            if request.url.params.get("last"):
                return httpx.Response(200, json={"name": "team/app", "tags": None})
            return httpx.Response(
                200,
                json={"name": "team/app", "tags": ["v1", "a1"]},
                headers={"Link": '</v2/team/app/tags/list?n=2&last=a1>; rel="next"'},
            )
        return httpx.Response(200, json={"name": "x", "tags": None})

    hosts = FakeHosts({REGISTRY: answer})
    with hosts.client() as client:
        assert list(client.catalog()) == ["a", "b", "c/d"]
        assert client.list_tags("team/app") == ["v1", "a1"]
        assert client.list_tags("empty/repo") == []


def test_links_to_other_hosts_and_loops_are_refused() -> None:
    hosts = FakeHosts(
        {
            REGISTRY: lambda _r: httpx.Response(
                200, json={"tags": []}, headers={"Link": '<https://evil.test/x>; rel="next"'}
            )
        }
    )
    with hosts.client() as client, pytest.raises(RegistryProtocolError, match="another origin"):
        client.list_tags("team/app")
    hosts = FakeHosts(
        {REGISTRY: lambda r: httpx.Response(200, json={"tags": []}, headers={"Link": f"<{r.url.path}>; rel=next"})}
    )
    with hosts.client() as client, pytest.raises(RegistryProtocolError, match="loops"):
        client.list_tags("team/app")


# ---------------------------------------------------------------------------------------------- writes


def test_mount_202_cancels_the_upload_session() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(202, headers={"Location": "/v2/dst/app/blobs/uploads/abc?_state=xyz"})
        return httpx.Response(204)

    hosts = FakeHosts({REGISTRY: answer})
    with hosts.client() as client:
        assert client.mount_blob("dst/app", BLOB_DIGEST, "src/app") is False
    post, delete = hosts.seen
    assert post.url.params["mount"] == BLOB_DIGEST and post.url.params["from"] == "src/app"
    assert delete.method == "DELETE" and delete.url.path == "/v2/dst/app/blobs/uploads/abc"
    assert delete.url.params["_state"] == "xyz"


def test_upload_appends_digest_to_a_location_with_a_query() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(202, headers={"Location": "https://reg.test/v2/team/app/blobs/uploads/u1?_state=s"})
        return httpx.Response(201, headers={"Docker-Content-Digest": sha256_digest(request.content)})

    hosts = FakeHosts({REGISTRY: answer})
    with hosts.client() as client:
        assert client.upload_blob("team/app", b"hello") == sha256_digest(b"hello")
    put = hosts.seen[1]
    assert put.method == "PUT" and put.url.params["_state"] == "s"
    assert put.url.params["digest"] == sha256_digest(b"hello") and put.content == b"hello"


def test_upload_location_on_another_host_is_refused() -> None:
    hosts = FakeHosts({REGISTRY: lambda _r: httpx.Response(202, headers={"Location": "https://evil.test/upload"})})
    with hosts.client(credentials=Credentials(token="t")) as client, pytest.raises(RegistryProtocolError):
        client.upload_blob("team/app", b"hello")
    assert len(hosts.seen) == 1


def test_put_manifest_checks_digest_before_and_after() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        assert request.headers["content-type"] == "application/vnd.oci.image.manifest.v1+json"
        return httpx.Response(201, headers={"Docker-Content-Digest": sha256_digest(request.content)})

    hosts = FakeHosts({REGISTRY: answer})
    with hosts.client() as client:
        media = "application/vnd.oci.image.manifest.v1+json"
        assert client.put_manifest("team/app", "v1", MANIFEST, media) == MANIFEST_DIGEST
        with pytest.raises(IntegrityError):
            client.put_manifest("team/app", "sha256:" + "0" * 64, MANIFEST, media)
    assert len(hosts.seen) == 1


# ---------------------------------------------------------------------------------------------- settings


def test_credentials_from_settings_env_then_docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings.from_env({}, registry_username="ci", registry_password="pw")
    assert Credentials.from_settings(settings) == Credentials("ci", "pw", None)

    auth = base64.b64encode(b"dock:er-pass").decode()
    (tmp_path / "config.json").write_text(json.dumps({"auths": {"reg.test:5000": {"auth": auth}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    settings = Settings.from_env({}, registry_url="http://reg.test:5000")
    assert Credentials.from_settings(settings) == Credentials("dock", "er-pass", None)
    assert Credentials.from_settings(Settings.from_env({}, registry_url="http://other:5000")) is None
    no_docker = Settings.from_env({}, registry_url="http://reg.test:5000", registry_use_docker_config=False)
    assert Credentials.from_settings(no_docker) is None

    (tmp_path / "config.json").write_text("{broken")
    assert Credentials.from_settings(settings) is None  # a broken config means anonymous, not a crash


def test_userinfo_in_the_base_url_becomes_credentials_and_leaves_the_url() -> None:
    hosts = FakeHosts({"https://reg.test": lambda _r: httpx.Response(200)})
    client = RegistryClient("https://ci:pw@reg.test", transport=httpx.MockTransport(hosts))
    assert client.base_url == "https://reg.test"
    client.close()
