"""HTTP client for the registry API v2: auth, retries, credential-safe redirects, and verified content."""

from __future__ import annotations

import base64
import gc
import hashlib
import io
import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, BinaryIO

import httpx

from workers.domain import (
    MANIFEST_ACCEPT,
    MANIFEST_MEDIA_TYPES,
    Descriptor,
    Digest,
    is_repository_name,
    is_tag,
    parse_digest,
)
from workers.errors import (
    IntegrityError,
    NotFound,
    PermanentError,
    RegistryAuthError,
    RegistryError,
    RegistryProtocolError,
    RegistryUnavailable,
)
from workers.oci import MAX_MANIFEST_BYTES

if TYPE_CHECKING:
    from workers.settings import Settings

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5
MAX_RETRY_AFTER = 30.0  # seconds; a longer Retry-After is not honoured inline (the job retries later instead)
MAX_ERROR_BODY = 64 * 1024
MAX_TOKEN_BODY = 1024 * 1024
MAX_LISTING_BODY = 16 * 1024 * 1024  # one page of _catalog or tags/list
MAX_PAGES = 10_000
MAX_CHALLENGE_LENGTH = 8 * 1024
DEFAULT_TOKEN_TTL = 60  # seconds, when the token service omits expires_in (distribution token spec)
BLOB_CHUNK = 1024 * 1024
COPY_CHUNK = 4 * 1024 * 1024  # one PATCH of a streamed blob copy; a copy holds a few of these at most
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
DEFAULT_PORTS = {"http": 80, "https": 443}

Origin = tuple[str, str, int]


class InvalidReference(RegistryError, PermanentError):
    """A repository name, tag or digest handed to the client is not valid; nothing was sent."""


class DeleteUnsupported(RegistryProtocolError):
    """The registry refuses deletes (405: ``storage.delete.enabled`` is off); nothing was deleted."""


# ---------------------------------------------------------------------------------------------- credentials


@dataclass(frozen=True, repr=False)
class Credentials:
    """What Tollgate presents to the registry: Basic username/password, and/or a ready bearer token."""

    username: str | None = None
    password: str | None = None
    token: str | None = None

    def __repr__(self) -> str:
        # Never let a secret reach a log line or a traceback through repr().
        return f"Credentials(username={self.username!r}, password={'***' if self.password else None}, token=***)"

    @property
    def has_basic(self) -> bool:
        """True when a username is configured (the password may legitimately be empty)."""
        return bool(self.username)

    def basic_header(self) -> str:
        """The ``Authorization`` value for HTTP Basic."""
        raw = f"{self.username or ''}:{self.password or ''}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")

    @classmethod
    def from_settings(cls, settings: Settings) -> Credentials | None:
        """TOLLGATE_REGISTRY_USERNAME/PASSWORD/TOKEN, else the Docker config's entry for the registry host."""
        if settings.registry_username or settings.registry_password or settings.registry_token:
            return cls(settings.registry_username, settings.registry_password, settings.registry_token)
        if settings.registry_use_docker_config:
            return docker_config_credentials(settings.registry_host)
        return None


def docker_config_credentials(host: str) -> Credentials | None:
    """Look ``host`` up in ~/.docker/config.json (or $DOCKER_CONFIG), credential helpers included."""
    try:
        from docker import auth as docker_auth

        config = docker_auth.load_config()
        entry = docker_auth.resolve_authconfig(config, registry=host)
    except Exception as exc:  # a broken credential helper or config must not stop anonymous pulls
        log.warning("could not read Docker credentials for %s: %s", host, type(exc).__name__)
        return None
    if not entry:
        return None
    fields = {str(k).lower(): v for k, v in dict(entry).items()}
    username, password = fields.get("username"), fields.get("password")
    if isinstance(username, str) and username:
        return Credentials(username=username, password=password if isinstance(password, str) else "")
    if fields.get("identitytoken"):
        log.warning("Docker config holds an identity token for %s; OAuth refresh is not supported", host)
    return None


# ---------------------------------------------------------------------------------------------- challenges


@dataclass(frozen=True)
class Challenge:
    """One RFC 7235 challenge from ``WWW-Authenticate``: a lowercased scheme and its auth-params."""

    scheme: str
    params: Mapping[str, str] = field(default_factory=dict)
    token68: str | None = None

    @property
    def scopes(self) -> tuple[str, ...]:
        """The space-separated scopes of a Bearer challenge."""
        return tuple(self.params.get("scope", "").split())


_TCHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_TOKEN68_CHARS = frozenset("-._~+/0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


class _ChallengeParser:
    """A small cursor over one header value; raises RegistryProtocolError on anything malformed."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, why: str) -> RegistryProtocolError:
        return RegistryProtocolError(f"malformed WWW-Authenticate header ({why} at offset {self.pos})")

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_ows(self) -> None:
        while self.peek() in (" ", "\t") and not self.at_end():
            self.pos += 1

    def skip_list_separators(self) -> None:
        while not self.at_end() and self.peek() in (" ", "\t", ","):
            self.pos += 1

    def token(self) -> str:
        start = self.pos
        while not self.at_end() and self.peek() in _TCHARS:
            self.pos += 1
        return self.text[start : self.pos]

    def quoted(self) -> str:
        assert self.peek() == '"'
        self.pos += 1
        out: list[str] = []
        while True:
            if self.at_end():
                raise self.fail("unterminated quoted string")
            char = self.text[self.pos]
            self.pos += 1
            if char == '"':
                return "".join(out)
            if char == "\\":
                if self.at_end():
                    raise self.fail("dangling escape")
                char = self.text[self.pos]
                self.pos += 1
            if char in "\r\n\0":
                raise self.fail("control character in quoted string")
            out.append(char)

    def param_follows(self) -> bool:
        """True when the cursor is at ``token OWS "=" (not "=" / end)``: an auth-param, not a new scheme."""
        save = self.pos
        try:
            if not self.token():
                return False
            self.skip_ows()
            if self.peek() != "=":
                return False
            self.pos += 1
            self.skip_ows()
            return self.peek() not in ("=", ",", "")
        finally:
            self.pos = save

    def challenge(self) -> Challenge:
        scheme = self.token()
        if not scheme:
            raise self.fail("expected an auth scheme")
        params: dict[str, str] = {}
        token68: str | None = None
        if self.peek() not in (" ", "\t", ",", ""):
            raise self.fail("unexpected character after scheme")
        self.skip_ows()
        if self.param_follows():
            while True:
                name = self.token().lower()
                self.skip_ows()
                self.pos += 1  # "=" (checked by param_follows)
                self.skip_ows()
                value = self.quoted() if self.peek() == '"' else self.token()
                if not value and self.peek() not in (",", ""):
                    raise self.fail("bad auth-param value")
                params.setdefault(name, value)  # RFC 7235: a name occurs once; the first one wins
                self.skip_ows()
                if self.at_end():
                    break
                if self.peek() != ",":
                    raise self.fail("expected ',' between auth-params")
                save = self.pos
                self.skip_list_separators()
                if not self.param_follows():
                    self.pos = save  # the next element is a new challenge
                    break
        elif not self.at_end() and self.peek() in _TOKEN68_CHARS:
            start = self.pos
            while not self.at_end() and self.peek() in _TOKEN68_CHARS:
                self.pos += 1
            while self.peek() == "=":
                self.pos += 1
            token68 = self.text[start : self.pos]
            self.skip_ows()
            if not self.at_end() and self.peek() != ",":
                raise self.fail("unexpected text after token68")
        return Challenge(scheme.lower(), params, token68)


def parse_www_authenticate(value: str) -> tuple[Challenge, ...]:
    """Parse a ``WWW-Authenticate`` value into challenges (RFC 7235 §4.1; quoted strings keep commas)."""
    if len(value) > MAX_CHALLENGE_LENGTH:
        raise RegistryProtocolError("WWW-Authenticate header is too long")
    parser = _ChallengeParser(value)
    challenges: list[Challenge] = []
    parser.skip_list_separators()
    while not parser.at_end():
        challenges.append(parser.challenge())
        parser.skip_list_separators()
    if not challenges:
        raise RegistryProtocolError("empty WWW-Authenticate header")
    return tuple(challenges)


# ---------------------------------------------------------------------------------------------- content


@dataclass(frozen=True)
class FetchedManifest:
    """A manifest exactly as the registry served it; ``digest`` was recomputed over ``raw``."""

    media_type: str
    digest: Digest
    raw: bytes


def _hasher(digest: Digest) -> Any:
    return hashlib.sha512() if digest.startswith("sha512:") else hashlib.sha256()


def digest_of(data: bytes, algorithm_of: Digest | None = None) -> Digest:
    """The digest of ``data`` with the algorithm of ``algorithm_of`` (sha256 by default)."""
    hasher = _hasher(algorithm_of) if algorithm_of else hashlib.sha256()
    hasher.update(data)
    return Digest(f"{hasher.name}:{hasher.hexdigest()}")


class VerifyingStream(io.RawIOBase):
    """A read-only stream that hashes every byte and refuses to report EOF for content that fails its digest.

    Bytes are handed out as they arrive (streaming, bounded memory); the check happens when the source is
    exhausted, so a reader that reaches EOF without an IntegrityError has read exactly the verified blob.
    """

    def __init__(
        self,
        chunks: Iterable[bytes],
        expected: Digest,
        *,
        expected_size: int | None = None,
        what: str = "blob",
        on_error: Callable[[Exception], Exception] | None = None,
    ) -> None:
        super().__init__()
        self._chunks = iter(chunks)
        self._expected = expected
        self._expected_size = expected_size
        self._what = what
        self._on_error = on_error
        self._hasher = _hasher(expected)
        self._buffer = memoryview(b"")
        self._count = 0
        self._failure: Exception | None = None
        self.verified = False

    def readable(self) -> bool:
        """Always readable."""
        return True

    @property
    def bytes_read(self) -> int:
        """How many bytes arrived from the source so far."""
        return self._count

    def readinto(self, buffer: Any) -> int:
        """Fill ``buffer``; at EOF verify size and digest first (raising IntegrityError), then return 0."""
        if self._failure is not None:
            raise self._failure
        view = memoryview(buffer).cast("B")
        while not self._buffer:
            if self.verified:
                return 0
            try:
                chunk = next(self._chunks)
            except StopIteration:
                self._finish()
                return 0
            except Exception as exc:
                mapped = self._on_error(exc) if self._on_error else exc
                self._failure = mapped
                if mapped is exc:
                    raise
                raise mapped from None
            self._count += len(chunk)
            if self._expected_size is not None and self._count > self._expected_size:
                self._fail(f"{self._what} is longer than its descriptor size {self._expected_size}")
            self._hasher.update(chunk)
            self._buffer = memoryview(chunk)
        size = min(len(view), len(self._buffer))
        view[:size] = self._buffer[:size]
        self._buffer = self._buffer[size:]
        return size

    def _fail(self, message: str) -> None:
        self._failure = IntegrityError(message)
        raise self._failure

    def _finish(self) -> None:
        if self._expected_size is not None and self._count != self._expected_size:
            self._fail(f"{self._what} has {self._count} bytes, its descriptor says {self._expected_size}")
        actual = f"{self._hasher.name}:{self._hasher.hexdigest()}"
        if actual != self._expected:
            self._fail(f"{self._what} digest mismatch: expected {self._expected}, got {actual}")
        self.verified = True


@contextmanager
def verified_reader(
    chunks: Iterable[bytes],
    expected: Digest,
    *,
    expected_size: int | None = None,
    what: str = "blob",
    on_error: Callable[[Exception], Exception] | None = None,
) -> Iterator[BinaryIO]:
    """A buffered :class:`VerifyingStream` over ``chunks``; on a normal exit the rest is drained and verified.

    So a ``with`` block that completes without an exception has only ever seen verified content, even
    when its consumer stopped reading early (a tar reader stops at the end-of-archive marker).
    """
    raw = VerifyingStream(chunks, expected, expected_size=expected_size, what=what, on_error=on_error)
    stream = io.BufferedReader(raw, BLOB_CHUNK)
    yield stream
    while not raw.verified and stream.read(BLOB_CHUNK):
        pass
    if not raw.verified:  # defensive: read() returns b"" only after verification succeeded
        raise IntegrityError(f"{what} was not verified")


# ---------------------------------------------------------------------------------------------- client


@dataclass
class _Token:
    value: str
    expires_at: float


@dataclass(frozen=True)
class _BearerService:
    realm: str
    service: str | None


def _origin(url: httpx.URL) -> Origin:
    return (url.scheme, url.host.lower(), url.port or DEFAULT_PORTS.get(url.scheme, 0))


def _describe(url: httpx.URL) -> str:
    """A URL for messages: no userinfo and no query (presigned storage URLs carry signatures there)."""
    return f"{url.scheme}://{url.netloc.decode('ascii', 'replace').rpartition('@')[2]}{url.path}"


def _media_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


def _printable(text: str, limit: int = 300) -> str:
    cleaned = "".join(c if c.isprintable() else "?" for c in text)
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


_LINK_NEXT_RE = re.compile(r'<([^>]*)>\s*;(?:[^,]*?)\brel\s*=\s*"?next"?', re.IGNORECASE)


def _next_link(header: str | None) -> str | None:
    """The target of ``Link: <…>; rel="next"``, if any."""
    if not header:
        return None
    match = _LINK_NEXT_RE.search(header)
    return match.group(1) if match else None


class RegistryClient:
    """A client for one registry (distribution 2.8/3.x, OCI distribution-spec 1.1).

    Credentials go only to the registry's own origin (and to the token realm it names); redirects to
    other hosts (blob storage) are followed without them. Every manifest and blob is verified against
    its digest. Errors are typed (``workers.errors``) and never contain credentials.
    """

    def __init__(
        self,
        base_url: str,
        *,
        credentials: Credentials | None = None,
        timeout: float = 30.0,
        retries: int = 4,
        backoff: float = 0.5,
        transport: httpx.BaseTransport | None = None,
        user_agent: str = "tollgate/0.1",
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        url = httpx.URL(base_url)
        if url.scheme not in DEFAULT_PORTS or not url.host:
            raise InvalidReference(f"registry URL must be http(s)://host[:port]: {_describe(url)!r}")
        if url.username and credentials is None:  # http://user:pass@host is accepted, then scrubbed
            credentials = Credentials(username=url.username, password=url.password)
        self._base = url.copy_with(username=None, password=None, path="/", query=None, fragment=None)
        self._origin = _origin(self._base)
        self._credentials = credentials
        self._retries = max(0, retries)
        self._backoff = backoff
        self._sleep = sleep
        self._clock = clock
        self._basic = False  # set once the registry challenged with Basic
        self._bearer: _BearerService | None = None
        self._tokens: dict[frozenset[str], _Token] = {}
        self._http = httpx.Client(
            timeout=timeout,
            follow_redirects=False,
            transport=transport,
            headers={"User-Agent": user_agent, "Accept-Encoding": "identity"},
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> RegistryClient:
        """A client for ``settings.registry_url`` with the configured credentials and timeout."""
        return cls(
            settings.registry_url,
            credentials=Credentials.from_settings(settings),
            timeout=settings.registry_timeout,
        )

    @property
    def base_url(self) -> str:
        """``scheme://host:port`` of the registry."""
        return str(self._base).rstrip("/")

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------ read API

    def ping(self) -> None:
        """``GET /v2/``: checks the registry speaks API v2 and completes any auth challenge."""
        with self._request("GET", "/v2/", scopes=()) as response:
            self._read(response, MAX_ERROR_BODY, "ping")

    def get_manifest(self, repository: str, reference: str) -> FetchedManifest:
        """Fetch a manifest or index by tag or digest; the digest is recomputed over the exact bytes."""
        _check_repository(repository)
        wanted = _check_reference(reference)
        path = f"/v2/{repository}/manifests/{reference}"
        with self._request("GET", path, scopes=(_pull(repository),), headers={"Accept": MANIFEST_ACCEPT}) as resp:
            declared = resp.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > MAX_MANIFEST_BYTES:
                raise IntegrityError(f"manifest {repository}:{reference} is larger than {MAX_MANIFEST_BYTES} bytes")
            raw = self._read(resp, MAX_MANIFEST_BYTES, f"manifest {repository}:{reference}", limit_error=IntegrityError)
            header_digest = resp.headers.get("docker-content-digest")
            content_type = _media_type(resp.headers.get("content-type"))
        digest = digest_of(raw, wanted)
        if wanted is not None and digest != wanted:
            raise IntegrityError(f"manifest {repository}@{wanted} has digest {digest}")
        if header_digest:
            try:
                claimed = parse_digest(header_digest.strip())
            except ValueError:
                raise IntegrityError(f"registry sent a malformed Docker-Content-Digest for {repository}") from None
            if digest_of(raw, claimed) != claimed:
                raise IntegrityError(
                    f"manifest {repository}:{reference} bytes do not match Docker-Content-Digest {claimed}"
                )
        if wanted is None:
            digest = digest_of(raw)  # records are keyed by sha256
        return FetchedManifest(media_type=_manifest_media_type(content_type, raw), digest=digest, raw=raw)

    def head_manifest(self, repository: str, reference: str) -> Descriptor | None:
        """What ``reference`` resolves to, from a HEAD (falls back to GET without a digest header); None on 404."""
        _check_repository(repository)
        wanted = _check_reference(reference)
        path = f"/v2/{repository}/manifests/{reference}"
        headers = {"Accept": MANIFEST_ACCEPT}
        with self._request("HEAD", path, scopes=(_pull(repository),), headers=headers, allow=(404,)) as resp:
            if resp.status_code == 404:
                return None
            header_digest = resp.headers.get("docker-content-digest")
            length = resp.headers.get("content-length", "")
            content_type = _media_type(resp.headers.get("content-type"))
        try:
            digest = parse_digest(header_digest.strip()) if header_digest else None
        except ValueError:
            digest = None
        if digest is None or (wanted is not None and digest != wanted) or not length.isdigit():
            try:
                fetched = self.get_manifest(repository, reference)
            except NotFound:
                return None
            return Descriptor(media_type=fetched.media_type, digest=fetched.digest, size=len(fetched.raw))
        return Descriptor(media_type=content_type, digest=digest, size=int(length))

    def get_blob(self, repository: str, digest: Digest, *, max_bytes: int) -> bytes:
        """A whole blob in memory, verified; IntegrityError when it is larger than ``max_bytes``."""
        with self._blob(repository, digest, expected_size=None, max_bytes=max_bytes) as stream:
            data = stream.read(max_bytes + 1)
            if len(data) > max_bytes:
                raise IntegrityError(f"blob {digest} is larger than {max_bytes} bytes")
            return data

    @contextmanager
    def open_blob(self, repository: str, digest: Digest, *, expected_size: int | None = None) -> Iterator[BinaryIO]:
        """Stream a blob; the stream verifies size and digest at EOF (raising IntegrityError).

        On a normal exit from the ``with`` block whatever was not read is drained and verified too, so
        a block that completes without an exception has seen only verified content.
        """
        with self._blob(repository, digest, expected_size=expected_size, max_bytes=None) as stream:
            yield stream

    @contextmanager
    def _blob(
        self, repository: str, digest: Digest, *, expected_size: int | None, max_bytes: int | None
    ) -> Iterator[BinaryIO]:
        _check_repository(repository)
        checked = _check_digest(digest)
        where = f"blob {repository}@{checked}"
        with self._request("GET", f"/v2/{repository}/blobs/{checked}", scopes=(_pull(repository),)) as response:
            declared = response.headers.get("content-length")
            if declared is not None and declared.isdigit():
                if expected_size is not None and int(declared) != expected_size:
                    raise IntegrityError(f"{where} is {declared} bytes, its descriptor says {expected_size}")
                if max_bytes is not None and int(declared) > max_bytes:
                    raise IntegrityError(f"{where} is larger than {max_bytes} bytes")
            with verified_reader(
                response.iter_bytes(BLOB_CHUNK),
                checked,
                expected_size=expected_size,
                what=where,
                on_error=lambda exc: _stream_error(exc, where),
            ) as stream:
                yield stream

    def catalog(self) -> Iterator[str]:
        """Every repository name in the registry, following ``Link`` pagination."""
        for page in self._pages("/v2/_catalog", scopes=("registry:catalog:*",), what="catalog"):
            names = page.get("repositories")
            if names is None:
                continue
            if not isinstance(names, list):
                raise RegistryProtocolError("catalog 'repositories' is not a list")
            for name in names:
                if isinstance(name, str) and is_repository_name(name):
                    yield name
                else:
                    log.warning("skipping invalid repository name in catalog: %s", _printable(str(name), 80))

    def list_tags(self, repository: str) -> list[str]:
        """Every tag of ``repository`` (in registry order), following ``Link``; an empty repository gives []."""
        _check_repository(repository)
        tags: list[str] = []
        for page in self._pages(f"/v2/{repository}/tags/list", scopes=(_pull(repository),), what="tags"):
            values = page.get("tags")
            if values is None:  # 2.8 answers "tags": null for a repository without tags
                continue
            if not isinstance(values, list):
                raise RegistryProtocolError(f"tags list of {repository} is not a list")
            for tag in values:
                if isinstance(tag, str) and is_tag(tag):
                    tags.append(tag)
                else:
                    log.warning("skipping invalid tag of %s: %s", repository, _printable(str(tag), 80))
        return tags

    def referrers(self, repository: str, digest: Digest, *, artifact_type: str | None = None) -> list[Any] | None:
        """The ``manifests`` of ``GET /v2/<repo>/referrers/<digest>`` (all pages); None when the API is absent.

        A registry with the API answers an empty index for an unknown digest, so 404 means no API
        (distribution 2.8/3.x): the caller falls back to the ``sha256-<hex>`` tag. The entries are returned
        as sent (unvalidated): the index is generated by the registry and has no digest to check.
        """
        _check_repository(repository)
        checked = _check_digest(digest)
        url: httpx.URL = self._base.join(f"/v2/{repository}/referrers/{checked}")
        if artifact_type:
            url = url.copy_merge_params({"artifactType": artifact_type})
        manifests: list[Any] = []
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            seen.add(str(url))
            with self._request("GET", url, scopes=(_pull(repository),), allow=(404,)) as resp:
                if resp.status_code == 404:
                    if manifests or len(seen) > 1:
                        raise RegistryProtocolError(f"referrers of {repository}@{checked}: a later page is missing")
                    return None
                body = self._read(resp, MAX_MANIFEST_BYTES, "referrers index", limit_error=IntegrityError)
                link = _next_link(resp.headers.get("link"))
            try:
                page = json.loads(body)
            except ValueError:
                raise RegistryProtocolError(f"referrers of {repository}@{checked} is not JSON") from None
            entries = page.get("manifests") if isinstance(page, dict) else None
            if not isinstance(entries, list):
                raise RegistryProtocolError(f"referrers of {repository}@{checked} is not an image index")
            manifests.extend(entries)
            if not link:
                return manifests
            url = self._same_origin_url(link, "referrers Link")
            if str(url) in seen:
                raise RegistryProtocolError("referrers pagination loops")
        raise RegistryProtocolError(f"referrers has more than {MAX_PAGES} pages")

    # ------------------------------------------------------------------------------------------ write API

    def put_manifest(self, repository: str, reference: str, raw: bytes, media_type: str) -> Digest:
        """Store ``raw`` under a tag or its digest; returns the digest of the exact bytes stored."""
        _check_repository(repository)
        wanted = _check_reference(reference)
        if len(raw) > MAX_MANIFEST_BYTES:
            raise IntegrityError(f"manifest is larger than {MAX_MANIFEST_BYTES} bytes")
        digest = digest_of(raw, wanted)
        if wanted is not None and digest != wanted:
            raise IntegrityError(f"manifest bytes have digest {digest}, not {wanted}")
        path = f"/v2/{repository}/manifests/{reference}"
        headers = {"Content-Type": media_type}
        with self._request("PUT", path, scopes=(_push(repository),), headers=headers, content=raw) as resp:
            self._expect(resp, (201,), f"PUT manifest {repository}:{reference}")
            echoed = resp.headers.get("docker-content-digest")
        if echoed:
            try:
                claimed = parse_digest(echoed.strip())
            except ValueError:
                raise IntegrityError("registry echoed a malformed Docker-Content-Digest") from None
            if digest_of(raw, claimed) != claimed:
                raise IntegrityError(f"registry stored manifest as {claimed}, expected {digest}")
        return digest

    def blob_exists(self, repository: str, digest: Digest) -> bool:
        """True when ``repository`` links the blob (HEAD 200)."""
        _check_repository(repository)
        checked = _check_digest(digest)
        path = f"/v2/{repository}/blobs/{checked}"
        with self._request("HEAD", path, scopes=(_pull(repository),), allow=(404,), follow=False) as resp:
            return resp.status_code in (200, 307, 302)

    def mount_blob(self, repository: str, digest: Digest, from_repository: str) -> bool:
        """Cross-repository mount; True when mounted (201). On 202 the upload session is cancelled: False."""
        _check_repository(repository)
        _check_repository(from_repository)
        checked = _check_digest(digest)
        path = f"/v2/{repository}/blobs/uploads/"
        params = {"mount": checked, "from": from_repository}
        scopes = (_push(repository), _pull(from_repository))
        with self._request("POST", path, scopes=scopes, params=params, content=b"") as resp:
            self._expect(resp, (201, 202), f"mount {checked} into {repository}")
            if resp.status_code == 201:
                return True
            location = resp.headers.get("location")
        if location:
            session = self._same_origin_url(location, "upload session")
            with self._request("DELETE", session, scopes=(_push(repository),), allow=(404,)) as cancel:
                self._expect(cancel, (204, 202, 200, 404), f"cancel upload session in {repository}")
        return False

    def upload_blob(self, repository: str, data: bytes) -> Digest:
        """Monolithic upload (POST, then PUT ``?digest=``); returns the blob's digest."""
        _check_repository(repository)
        digest = digest_of(data)
        with self._request("POST", f"/v2/{repository}/blobs/uploads/", scopes=(_push(repository),), content=b"") as r:
            self._expect(r, (202,), f"start upload in {repository}")
            location = r.headers.get("location")
        if not location:
            raise RegistryProtocolError(f"upload in {repository}: 202 without a Location header")
        session = self._same_origin_url(location, "upload session")
        target = session.copy_merge_params({"digest": digest})
        headers = {"Content-Type": "application/octet-stream"}
        with self._request("PUT", target, scopes=(_push(repository),), headers=headers, content=data) as resp:
            self._expect(resp, (201,), f"complete upload in {repository}")
            echoed = resp.headers.get("docker-content-digest")
        if echoed and echoed.strip() != digest:
            raise IntegrityError(f"registry stored blob as {_printable(echoed, 80)}, expected {digest}")
        return digest

    def delete_manifest(self, repository: str, digest: Digest) -> None:
        """Delete a manifest by digest (distribution also drops every tag pointing at it)."""
        _check_repository(repository)
        checked = _check_digest(digest)
        path = f"/v2/{repository}/manifests/{checked}"
        with self._request("DELETE", path, scopes=(_delete(repository),), allow=(405,)) as resp:
            if resp.status_code == 405:
                raise DeleteUnsupported(f"DELETE manifest {repository}@{checked}: HTTP 405 (deletes are disabled)")
            self._expect(resp, (202, 200, 204), f"DELETE manifest {repository}@{checked}")

    def stat_blob(self, repository: str, digest: Digest) -> int | None:
        """The size of a blob ``repository`` links (HEAD, redirects followed without credentials); None on 404.

        IntegrityError when the registry names another digest for it: a copy is only as good as its digest.
        """
        _check_repository(repository)
        checked = _check_digest(digest)
        path = f"/v2/{repository}/blobs/{checked}"
        with self._request("HEAD", path, scopes=(_pull(repository),), allow=(404,)) as resp:
            if resp.status_code == 404:
                return None
            length = resp.headers.get("content-length", "")
            claimed = resp.headers.get("docker-content-digest")
        if claimed and claimed.strip() != checked:
            raise IntegrityError(f"blob {repository}@{checked}: registry says its digest is {_printable(claimed, 80)}")
        if not length.isdigit():
            raise RegistryProtocolError(f"HEAD blob {repository}@{checked}: no Content-Length")
        return int(length)

    def copy_blob(
        self, digest: Digest, *, from_repository: str, to_repository: str, size: int | None, chunk: int = COPY_CHUNK
    ) -> None:
        """Copy a blob between repositories of this registry as a stream: a chunked upload, ``chunk`` bytes at a time.

        For when a cross-repository mount is refused (202). Memory stays bounded by ``chunk`` whatever the blob's
        size; the source is verified against ``digest`` (and ``size``) as it streams, and the registry checks the
        digest again when the upload is completed. A chunk is never re-sent inline (a replayed PATCH would corrupt
        the session): any failure ends this upload, and the caller's retry starts a new one.
        """
        _check_repository(from_repository)
        _check_repository(to_repository)
        checked = _check_digest(digest)
        where = f"copy {checked} from {from_repository} to {to_repository}"
        scopes = (_push(to_repository),)
        with self._request("POST", f"/v2/{to_repository}/blobs/uploads/", scopes=scopes, content=b"") as resp:
            self._expect(resp, (202,), f"{where}: start upload")
            location = resp.headers.get("location")
        if not location:
            raise RegistryProtocolError(f"{where}: 202 without a Location header")
        session = self._same_origin_url(location, "upload session")
        offset = 0
        with self.open_blob(from_repository, checked, expected_size=size) as stream:
            while True:
                data = stream.read(chunk)
                if not data:
                    break
                headers = {
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{offset}-{offset + len(data) - 1}",
                }
                with self._request("PATCH", session, scopes=scopes, headers=headers, content=data, retries=0) as resp:
                    self._expect(resp, (202,), f"{where}: upload chunk at {offset}")
                    location = resp.headers.get("location")
                if not location:
                    raise RegistryProtocolError(f"{where}: chunk accepted without a Location header")
                session = self._same_origin_url(location, "upload session")
                offset += len(data)
                del data  # before the next read: never two chunks alive at once
                # An httpx response is a reference cycle that keeps its request, and so this chunk, alive until
                # the cycle collector runs, which it does by object count, not bytes: unchecked, a multi-GB copy
                # piles up chunks. A collection per chunk (milliseconds against a 4 MiB round trip) bounds it.
                gc.collect()
        target = session.copy_merge_params({"digest": checked})
        with self._request("PUT", target, scopes=scopes, content=b"", retries=0) as resp:
            self._expect(resp, (201,), f"{where}: complete upload")
            echoed = resp.headers.get("docker-content-digest")
        if echoed and echoed.strip() != checked:
            raise IntegrityError(f"{where}: registry stored the blob as {_printable(echoed, 80)}")

    # ------------------------------------------------------------------------------------------ transport

    def _same_origin_url(self, location: str, what: str) -> httpx.URL:
        url = self._base.join(location)
        if _origin(url) != self._origin:
            raise RegistryProtocolError(f"{what} points to another origin ({_describe(url)}); refusing")
        return url

    def _pages(self, path: str, *, scopes: tuple[str, ...], what: str) -> Iterator[dict[str, Any]]:
        url: httpx.URL = self._base.join(path)
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            seen.add(str(url))
            with self._request("GET", url, scopes=scopes) as resp:
                body = self._read(resp, MAX_LISTING_BODY, what, limit_error=RegistryProtocolError)
                link = _next_link(resp.headers.get("link"))
            try:
                page = json.loads(body)
            except ValueError:
                raise RegistryProtocolError(f"{what} response is not JSON") from None
            if not isinstance(page, dict):
                raise RegistryProtocolError(f"{what} response is not a JSON object")
            yield page
            if not link:
                return
            url = self._same_origin_url(link, f"{what} Link")
            if str(url) in seen:
                raise RegistryProtocolError(f"{what} pagination loops")
        raise RegistryProtocolError(f"{what} has more than {MAX_PAGES} pages")

    @staticmethod
    def _expect(response: httpx.Response, statuses: tuple[int, ...], what: str) -> None:
        if response.status_code not in statuses:
            raise RegistryProtocolError(f"{what}: unexpected HTTP {response.status_code}")

    @staticmethod
    def _read(
        response: httpx.Response,
        cap: int,
        what: str,
        *,
        limit_error: type[Exception] = RegistryProtocolError,
    ) -> bytes:
        """The body of a streamed response, refusing more than ``cap`` bytes."""
        parts: list[bytes] = []
        total = 0
        try:
            for chunk in response.iter_bytes(64 * 1024):
                total += len(chunk)
                if total > cap:
                    raise limit_error(f"{what} is larger than {cap} bytes")
                parts.append(chunk)
        except httpx.TransportError as exc:
            raise _stream_error(exc, what) from None
        return b"".join(parts)

    @contextmanager
    def _request(
        self,
        method: str,
        target: str | httpx.URL,
        *,
        scopes: tuple[str, ...],
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        content: bytes | None = None,
        allow: tuple[int, ...] = (),
        follow: bool = True,
        retries: int | None = None,
    ) -> Iterator[httpx.Response]:
        """Send with auth, redirects and retries; yield a 2xx (or ``allow``ed) streamed response, else raise.

        ``retries`` overrides the client's inline retries (0 for requests that must not be replayed).
        """
        url = target if isinstance(target, httpx.URL) else self._base.join(target)
        if params:
            url = url.copy_merge_params(dict(params))
        response = self._with_retries(
            method, url, scopes=scopes, headers=headers or {}, content=content, follow=follow, retries=retries
        )
        try:
            status = response.status_code
            if status in allow or 200 <= status < 300 or (not follow and status in REDIRECT_STATUSES):
                yield response
                return
            raise self._status_error(method, url, response)
        finally:
            response.close()

    def _with_retries(
        self,
        method: str,
        url: httpx.URL,
        *,
        scopes: tuple[str, ...],
        headers: Mapping[str, str],
        content: bytes | None,
        follow: bool,
        retries: int | None = None,
    ) -> httpx.Response:
        limit = self._retries if retries is None else max(0, retries)
        attempt = 0
        while True:
            delay = self._backoff * (2**attempt)
            try:
                response = self._send_following(
                    method, url, scopes=scopes, headers=headers, content=content, follow=follow
                )
            except httpx.TransportError as exc:  # connect/read timeouts, refused, reset
                problem = f"{type(exc).__name__}"
            else:
                if response.status_code != 429 and response.status_code < 500:
                    return response
                problem = f"HTTP {response.status_code}"
                retry_after = _retry_after(response.headers.get("retry-after"))
                response.close()
                if retry_after is not None:
                    if retry_after > MAX_RETRY_AFTER:
                        raise RegistryUnavailable(
                            f"{method} {_describe(url)}: {problem}, retry after {retry_after:.0f}s"
                        )
                    delay = max(delay, retry_after)
            if attempt >= limit:
                raise RegistryUnavailable(f"{method} {_describe(url)}: {problem} after {attempt + 1} attempts")
            log.info("registry %s %s: %s; retrying in %.1fs", method, _describe(url), problem, delay)
            self._sleep(delay)
            attempt += 1

    def _send_following(
        self,
        method: str,
        url: httpx.URL,
        *,
        scopes: tuple[str, ...],
        headers: Mapping[str, str],
        content: bytes | None,
        follow: bool,
    ) -> httpx.Response:
        """One logical request: answer one auth challenge, follow up to MAX_REDIRECTS redirects."""
        challenged = False
        hops = 0
        while True:
            own_origin = _origin(url) == self._origin
            request_headers = dict(headers)
            if own_origin:
                authorization = self._authorization(scopes)
                if authorization:
                    request_headers["Authorization"] = authorization
            request = self._http.build_request(method, url, headers=request_headers, content=content)
            response = self._http.send(request, stream=True)
            status = response.status_code
            if status == 401 and own_origin and not challenged:
                try:
                    self._answer_challenge(response, scopes)
                finally:
                    response.close()
                challenged = True
                continue
            if status in REDIRECT_STATUSES and follow and method in ("GET", "HEAD"):
                location = response.headers.get("location")
                response.close()
                hops += 1
                if not location:
                    raise RegistryProtocolError(f"{method} {_describe(url)}: redirect without Location")
                if hops > MAX_REDIRECTS:
                    raise RegistryProtocolError(f"{method} {_describe(url)}: more than {MAX_REDIRECTS} redirects")
                try:
                    target = url.join(location)
                except httpx.InvalidURL:
                    raise RegistryProtocolError(f"{method} {_describe(url)}: invalid redirect target") from None
                if target.scheme not in DEFAULT_PORTS or not target.host:
                    raise RegistryProtocolError(f"{method} {_describe(url)}: redirect to a non-http(s) URL")
                if self._origin[0] == "https" and target.scheme != "https":
                    raise RegistryProtocolError(f"{method} {_describe(url)}: redirect downgrades https to http")
                url = target
                continue
            return response

    # ------------------------------------------------------------------------------------------ auth

    def _authorization(self, scopes: tuple[str, ...]) -> str | None:
        creds = self._credentials
        if creds is not None and creds.token and not creds.has_basic:
            return f"Bearer {creds.token}"  # a ready token (robot account); nothing to negotiate
        if self._bearer is not None:
            key = frozenset(scopes)
            token = self._tokens.get(key)
            if token is None or token.expires_at <= self._clock():
                token = self._fetch_token(self._bearer, key)
                self._tokens[key] = token
            return f"Bearer {token.value}"
        if self._basic and creds is not None and creds.has_basic:
            return creds.basic_header()
        return None

    def _answer_challenge(self, response: httpx.Response, scopes: tuple[str, ...]) -> None:
        header = response.headers.get("www-authenticate")
        creds = self._credentials
        if not header:
            raise RegistryAuthError("registry answered 401 without a WWW-Authenticate challenge")
        challenges = parse_www_authenticate(header)
        by_scheme = {c.scheme: c for c in reversed(challenges)}  # the first of each scheme wins
        bearer, basic = by_scheme.get("bearer"), by_scheme.get("basic")
        if creds is not None and creds.token and not creds.has_basic:
            raise RegistryAuthError("registry rejected the configured bearer token")
        if bearer is not None and bearer.params.get("realm"):
            if self._bearer is not None and bearer.params.get("error") == "insufficient_scope":
                raise RegistryAuthError(f"token lacks the needed scope ({' '.join(sorted(scopes)) or 'none'})")
            service = _BearerService(realm=bearer.params["realm"], service=bearer.params.get("service"))
            wanted = frozenset(scopes) | frozenset(bearer.scopes)
            token = self._fetch_token(service, wanted)
            self._bearer = service
            self._tokens[frozenset(scopes)] = token
            return
        if basic is not None:
            if creds is None or not creds.has_basic:
                raise RegistryAuthError("registry requires Basic authentication and no credentials are configured")
            if self._basic:
                raise RegistryAuthError("registry rejected the configured username/password")
            self._basic = True
            return
        schemes = ", ".join(sorted(c.scheme for c in challenges))
        raise RegistryAuthError(f"unsupported registry auth challenge ({_printable(schemes, 80)})")

    def _fetch_token(self, service: _BearerService, scopes: frozenset[str]) -> _Token:
        """GET the token realm with ``service`` and one ``scope`` per scope; Basic credentials if configured."""
        try:
            realm = httpx.URL(service.realm)
        except httpx.InvalidURL:
            raise RegistryProtocolError("token realm is not a valid URL") from None
        if realm.scheme not in DEFAULT_PORTS or not realm.host:
            raise RegistryProtocolError("token realm must be an http(s) URL")
        if self._origin[0] == "https" and realm.scheme != "https":
            raise RegistryProtocolError("token realm downgrades https to http; refusing to send credentials")
        query: list[tuple[str, str | int | float | bool | None]] = []
        if service.service:
            query.append(("service", service.service))
        query.extend(("scope", scope) for scope in sorted(scopes))
        headers = {}
        if self._credentials is not None and self._credentials.has_basic:
            headers["Authorization"] = self._credentials.basic_header()
        request = self._http.build_request("GET", realm.copy_merge_params(query), headers=headers)
        attempt = 0
        while True:
            try:
                response = self._http.send(request, stream=True)
            except httpx.TransportError as exc:
                problem = type(exc).__name__
            else:
                if response.status_code < 500 and response.status_code != 429:
                    break
                response.close()
                problem = f"HTTP {response.status_code}"
            if attempt >= self._retries:
                raise RegistryUnavailable(f"token service {_describe(realm)}: {problem}")
            self._sleep(self._backoff * (2**attempt))
            attempt += 1
        try:
            if response.status_code in (401, 403):
                raise RegistryAuthError(f"token service {_describe(realm)} refused the credentials")
            if response.status_code != 200:
                raise RegistryProtocolError(f"token service {_describe(realm)} answered HTTP {response.status_code}")
            content = self._read(response, MAX_TOKEN_BODY, "token response")
        finally:
            response.close()
        try:
            body = json.loads(content)
        except ValueError:
            raise RegistryProtocolError("token response is not JSON") from None
        if not isinstance(body, dict):
            raise RegistryProtocolError("token response is not a JSON object")
        value = body.get("token") or body.get("access_token")
        if not isinstance(value, str) or not value or any(c in value for c in "\r\n"):
            raise RegistryProtocolError("token response has no usable 'token' or 'access_token'")
        expires_in = body.get("expires_in")
        if not isinstance(expires_in, int) or isinstance(expires_in, bool) or expires_in <= 0:
            expires_in = DEFAULT_TOKEN_TTL
        # Expire a little early so a token never runs out between our check and the registry's.
        lifetime = max(1.0, expires_in - min(30.0, expires_in * 0.1))
        return _Token(value=value, expires_at=self._clock() + lifetime)

    # ------------------------------------------------------------------------------------------ errors

    def _status_error(self, method: str, url: httpx.URL, response: httpx.Response) -> RegistryError:
        status = response.status_code
        detail = _error_detail(response)
        where = f"{method} {_describe(url)}: HTTP {status}" + (f" ({detail})" if detail else "")
        if status in (401, 403):
            return RegistryAuthError(where)
        if status == 404:
            return NotFound(where)
        if status in REDIRECT_STATUSES:
            return RegistryProtocolError(f"{where}: unexpected redirect")
        return RegistryProtocolError(where)


def _error_detail(response: httpx.Response) -> str:
    """``CODE: message`` pairs from a distribution error body, if the body is one."""
    try:
        body = b""
        for chunk in response.iter_bytes(16 * 1024):
            body += chunk
            if len(body) > MAX_ERROR_BODY:
                return ""
        data = json.loads(body)
    except (ValueError, httpx.HTTPError):
        return ""
    errors = data.get("errors") if isinstance(data, dict) else None
    if not isinstance(errors, list):
        return ""
    parts = []
    for item in errors[:5]:
        if isinstance(item, dict):
            code, message = item.get("code"), item.get("message")
            parts.append(": ".join(str(x) for x in (code, message) if isinstance(x, str) and x))
    return _printable("; ".join(p for p in parts if p))


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    return None  # an HTTP-date: use our own backoff


def _stream_error(exc: Exception, what: str) -> Exception:
    if isinstance(exc, httpx.TransportError):
        return RegistryUnavailable(f"{what}: connection failed while streaming ({type(exc).__name__})")
    return exc


def _manifest_media_type(content_type: str, raw: bytes) -> str:
    """The manifest's own ``mediaType`` when the transport's Content-Type is missing or generic."""
    if content_type in MANIFEST_MEDIA_TYPES:
        return content_type
    try:
        declared = json.loads(raw).get("mediaType")
    except (ValueError, AttributeError):
        return content_type
    return declared if isinstance(declared, str) and declared else content_type


def _pull(repository: str) -> str:
    return f"repository:{repository}:pull"


def _push(repository: str) -> str:
    return f"repository:{repository}:pull,push"


def _delete(repository: str) -> str:
    return f"repository:{repository}:delete"


def _check_repository(repository: str) -> None:
    if not is_repository_name(repository):
        raise InvalidReference(f"not a valid repository name: {_printable(str(repository), 80)!r}")


def _check_digest(digest: str) -> Digest:
    try:
        return parse_digest(digest)
    except ValueError:
        raise InvalidReference(f"not a valid digest: {_printable(str(digest), 80)!r}") from None


def _check_reference(reference: str) -> Digest | None:
    """The digest when ``reference`` is one; None for a valid tag; InvalidReference otherwise."""
    if isinstance(reference, str) and ":" in reference:
        return _check_digest(reference)
    if not is_tag(reference):
        raise InvalidReference(f"not a valid tag or digest: {_printable(str(reference), 80)!r}")
    return None
