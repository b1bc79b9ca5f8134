"""Tollgate settings: one frozen object built from ``TOLLGATE_*`` environment variables, validated at boot."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from workers.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class UnpackLimits:
    """Caps that bound the work an attacker can make the unpacker do, per layer."""

    max_entries: int = 200_000
    max_total_bytes: int = 8 * 1024**3  # uncompressed bytes per layer
    max_file_bytes: int = 8 * 1024**3  # one file; large model/CUDA files are legitimate, so this is generous
    max_ratio: int = 200  # uncompressed / compressed, checked once past ``ratio_floor``
    ratio_floor: int = 64 * 1024**2
    max_path_length: int = 4096
    scan_file_bytes: int = 64 * 1024**2  # a file larger than this is scanned on its first bytes only


@dataclass(frozen=True)
class Settings:
    """Everything a Tollgate process needs to know; both web and worker build it the same way."""

    http_addr: str = "127.0.0.1:8080"
    public_url: str = "http://127.0.0.1:8080"
    registry_url: str = "http://127.0.0.1:5000"
    registry_username: str | None = None
    registry_password: str | None = None
    registry_token: str | None = None  # a ready bearer token (e.g. a robot token)
    registry_use_docker_config: bool = True
    registry_timeout: float = 30.0
    redis_url: str = "redis://127.0.0.1:6379/0"
    database_url: str = field(default_factory=lambda: f"sqlite:///{PROJECT_ROOT / 'var' / 'tollgate.db'}")
    webhook_token: str = ""
    webhook_allow_unauthenticated: bool = False  # only honoured when webhook_token is empty; loud warning
    secret_key: str = ""
    # Reads of /api/v1 without a credential; the audit trail always needs one (it names people and tokens).
    anonymous_read: bool = True
    auth_proxy_header: str = ""  # e.g. X-Forwarded-User, set by a reverse proxy that authenticated the person
    auth_trusted_proxies: tuple[str, ...] = ()  # CIDRs whose requests may carry auth_proxy_header
    auth_proxy_default_role: str = "viewer"  # for proxy identities not in the users table; "" refuses them
    session_lifetime: int = 12 * 3600  # seconds a login lasts
    quarantine_repo: str = "quarantine/"
    rules_dir: Path = PROJECT_ROOT / "rules"
    rules_extra: tuple[Path, ...] = ()
    policy_file: Path | None = None
    queue_prefix: str = "tollgate"
    job_timeout: int = 900
    job_retries: int = 3
    protected_names: tuple[str, ...] = (
        "alpine",
        "busybox",
        "centos",
        "debian",
        "fedora",
        "ubuntu",
        "nginx",
        "httpd",
        "tomcat",
        "mysql",
        "mariadb",
        "postgres",
        "redis",
        "mongo",
        "node",
        "python",
        "golang",
        "openjdk",
        "php",
        "ruby",
        "wordpress",
        "drupal",
        "joomla",
        "liferay",
        "jenkins",
        "traefik",
        "registry",
        "docker",
        "memcached",
        "rabbitmq",
        "elasticsearch",
        "haproxy",
    )
    trusted_namespaces: tuple[str, ...] = ("library",)
    reconcile_interval: int = 300  # seconds; 0 disables the periodic reconciler
    waiver_max_days: int = 365  # a waiver must expire within this many days of its creation
    # Webhooks: comma-separated URLs, each optionally "slack:"-prefixed and with "#events=a+b" (never sent).
    notify_urls: tuple[str, ...] = ()
    notify_events: tuple[str, ...] = ()  # the events sent to URLs without their own filter; empty: all
    notify_secret: str = ""  # when set, every delivery carries X-Tollgate-Signature: sha256=<HMAC of the body>
    notify_timeout: float = 5.0  # seconds, connect and read, per delivery attempt
    notify_retries: int = 5  # further attempts after a 5xx, 429, timeout or refused connection
    notify_backoff: int = 10  # seconds before the first retry; doubled for each further one (at most 1 h)
    # Tollgate's ECDSA P-256 key for the signed verdict attestation (PEM, 0600); generated on first use.
    signing_key: Path = field(default_factory=lambda: PROJECT_ROOT / "var" / "tollgate-signing-key.pem")
    publish_attestations: bool = True  # push provenance and the signed verdict to the registry as referrers
    limits: UnpackLimits = field(default_factory=UnpackLimits)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``TOLLGATE_*`` variables; unknown ``TOLLGATE_`` names are a ConfigError."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        limits: dict[str, int] = {}
        known = {f"TOLLGATE_{name.upper()}" for name in cls.__dataclass_fields__}
        known_limits = {f"TOLLGATE_LIMIT_{name.upper()}" for name in UnpackLimits.__dataclass_fields__}
        for key, raw in env.items():
            if not key.startswith("TOLLGATE_"):
                continue
            if key in known_limits:
                limits[key.removeprefix("TOLLGATE_LIMIT_").lower()] = _as_int(key, raw)
            elif key in known and key != "TOLLGATE_LIMITS":
                name = key.removeprefix("TOLLGATE_").lower()
                values[name] = _coerce(name, key, raw)
            elif key not in _IGNORED_ENV and not key.startswith(_IGNORED_PREFIXES):
                raise ConfigError(f"unknown setting {key}; see README 'Configuration'")
        settings = cls(**values)
        if limits:
            settings = replace(settings, limits=replace(settings.limits, **limits))
        if overrides:
            settings = replace(settings, **overrides)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Fail at boot, not mid-scan, on settings that cannot work."""
        if not self.registry_url.startswith(("http://", "https://")):
            raise ConfigError(f"TOLLGATE_REGISTRY_URL must start with http:// or https://: {self.registry_url!r}")
        if not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(f"TOLLGATE_REDIS_URL must be a redis:// URL: {self.redis_url!r}")
        if ":" not in self.http_addr:
            raise ConfigError(f"TOLLGATE_HTTP_ADDR must be host:port: {self.http_addr!r}")
        if self.quarantine_repo and not self.quarantine_repo.endswith("/"):
            raise ConfigError("TOLLGATE_QUARANTINE_REPO must be a prefix ending in '/', e.g. 'quarantine/'")
        if not isinstance(self.signing_key, Path) or not str(self.signing_key):
            raise ConfigError("TOLLGATE_SIGNING_KEY must be the path of Tollgate's signing key (PEM)")
        if self.job_timeout <= 0 or self.job_retries < 0:
            raise ConfigError("TOLLGATE_JOB_TIMEOUT must be > 0 and TOLLGATE_JOB_RETRIES >= 0")
        if not 1 <= self.waiver_max_days <= 3650:
            raise ConfigError("TOLLGATE_WAIVER_MAX_DAYS must be between 1 and 3650")
        if not 0 < self.notify_timeout <= 60 or self.notify_retries < 0 or self.notify_backoff < 0:
            raise ConfigError(
                "TOLLGATE_NOTIFY_TIMEOUT must be in (0, 60], TOLLGATE_NOTIFY_RETRIES and TOLLGATE_NOTIFY_BACKOFF >= 0"
            )
        from workers.notify import parse_targets  # here, not at the top: notify imports this module

        parse_targets(self)  # a malformed URL or unknown event fails at boot, not at the first quarantine

    @property
    def registry_host(self) -> str:
        """``host:port`` of the configured registry, as it appears in references."""
        return self.registry_url.split("://", 1)[1].rstrip("/")


# Variables with the prefix that are read by scripts, not by Settings.
_IGNORED_ENV = frozenset({"TOLLGATE_WEB_PORT", "TOLLGATE_REGISTRY_PORT", "TOLLGATE_HOME", "TOLLGATE_DEBIAN_MIRROR"})
# Test-suite and benchmark knobs share the prefix but are read by tests/ and bench/, not the service.
_IGNORED_PREFIXES = ("TOLLGATE_TEST_", "TOLLGATE_BENCH_")

_INT_FIELDS = {
    "job_timeout",
    "job_retries",
    "reconcile_interval",
    "waiver_max_days",
    "notify_retries",
    "notify_backoff",
    "session_lifetime",
}
_FLOAT_FIELDS = {"registry_timeout", "notify_timeout"}
_BOOL_FIELDS = {
    "registry_use_docker_config",
    "webhook_allow_unauthenticated",
    "anonymous_read",
    "publish_attestations",
}
_PATH_FIELDS = {"rules_dir", "policy_file", "signing_key"}
_LIST_FIELDS = {"protected_names", "trusted_namespaces", "notify_urls", "notify_events", "auth_trusted_proxies"}


def _as_int(key: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{key} must be an integer, got {raw!r}") from None


def _coerce(name: str, key: str, raw: str) -> Any:
    if name in _INT_FIELDS:
        return _as_int(key, raw)
    if name in _FLOAT_FIELDS:
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"{key} must be a number, got {raw!r}") from None
    if name in _BOOL_FIELDS:
        if raw.lower() not in {"1", "0", "true", "false", "yes", "no"}:
            raise ConfigError(f"{key} must be true or false, got {raw!r}")
        return raw.lower() in {"1", "true", "yes"}
    if name in _PATH_FIELDS:
        return Path(raw) if raw else None
    if name in _LIST_FIELDS:
        return tuple(p.strip() for p in raw.split(",") if p.strip())
    if name == "rules_extra":
        return tuple(Path(p) for p in raw.split(os.pathsep) if p)
    return raw
