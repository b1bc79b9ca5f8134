"""rq entry points: thin, idempotent wrappers that load settings, run the pipeline and persist the outcome."""

from __future__ import annotations

import logging
import traceback
from functools import cache
from typing import Any

from workers.domain import Digest, parse_digest
from workers.errors import ConfigError, PermanentError, TransientError
from workers.layerscan import StoredLayerCache
from workers.pipeline import NotAnImage, Vetter, load_scanners
from workers.policy import cached_policy
from workers.registry import RegistryClient
from workers.settings import Settings
from workers.sources import RegistrySource
from workers.store import Store

log = logging.getLogger(__name__)


def _settings() -> Settings:
    # Read on every job: cheap, and a worker never acts on settings older than its environment.
    return Settings.from_env()


@cache
def _store_for(database_url: str) -> Store:
    return Store(database_url)


def _store() -> Store:
    """One Store (connection pool) per database URL for the life of the worker process."""
    return _store_for(_settings().database_url)


def _progress_reporter(repository: str, digest: Digest) -> Any:
    """Publish the current stage on the rq job's meta so pages can show live progress."""
    try:
        from rq import get_current_job
    except ImportError:  # pragma: no cover - rq is a hard dependency of workers
        return lambda _stage: None
    job = get_current_job()

    def report(stage: str) -> None:
        if job is None:
            return
        job.meta["stage"] = stage
        job.meta["subject"] = f"{repository}@{digest}"
        try:
            job.save_meta()  # type: ignore[no-untyped-call]
        except Exception:
            log.debug("could not save job progress", exc_info=True)

    return report


def scan_image(repository: str, digest: str) -> dict[str, Any]:
    """Vet ``repository@digest`` from the configured registry and store the record.

    Transient errors propagate so rq retries with backoff; permanent errors (and unexpected ones: an
    error is never a pass) are recorded on the image and end the job without a retry.
    """
    settings = _settings()
    store = _store()
    checked = parse_digest(digest)
    scanners = load_scanners(
        settings.rules_dir,
        settings.rules_extra,
        protected_names=settings.protected_names,
        trusted_namespaces=settings.trusted_namespaces,
    )
    store.mark_scanning(repository, checked, ruleset=scanners.ruleset)
    try:
        # Cached by path and mtime: an edited policy applies from the next job on.
        policy = cached_policy(settings.policy_file)
    except ConfigError as exc:
        # The image is held as an error (never judged under a stale or default policy) until rescanned.
        store.mark_error(repository, checked, exc.diagnostics(), ruleset=scanners.ruleset)
        return {"status": "error", "error": exc.diagnostics()}
    vetter = Vetter(
        scanners,
        limits=settings.limits,
        policy=policy,
        progress=_progress_reporter(repository, checked),
        # Layers another image already brought are not scanned again under the same ruleset.
        layer_cache=StoredLayerCache(store),
    )
    try:
        with RegistryClient.from_settings(settings) as client:
            report = vetter.vet(RegistrySource(client, repository), checked)
    except TransientError:
        raise
    except NotAnImage as exc:
        store.mark_not_image(repository, checked, str(exc), ruleset=scanners.ruleset)
        return {"status": "done", "verdict": None, "reason": str(exc)}
    except PermanentError as exc:
        store.mark_error(repository, checked, exc.diagnostics(), ruleset=scanners.ruleset)
        return {"status": "error", "error": exc.diagnostics()}
    except Exception as exc:
        log.exception("unexpected error vetting %s@%s", repository, digest)
        message = f"internal error ({type(exc).__name__}): {exc}"
        store.mark_error(repository, checked, message, ruleset=scanners.ruleset)
        return {"status": "error", "error": message}
    store.save_report(report)
    if vetter.cache_hits:
        log.info("%s@%s: %d layer scan(s) came from the cache", repository, digest, vetter.cache_hits)
    return {"status": "done", "verdict": report.verdict.value, "action": report.action.value}


def on_scan_failed(job: Any, connection: Any, exc_type: Any, exc_value: Any, tb: Any) -> None:
    """rq failure callback: once retries are exhausted, record the error so the image never looks passed."""
    if getattr(job, "retries_left", 0):
        return  # rq will try again; the image stays 'scanning'
    try:
        repository, digest = job.args[0], parse_digest(job.args[1])
    except (IndexError, ValueError, TypeError):
        log.exception("failed job %s has unexpected arguments %r", getattr(job, "id", "?"), getattr(job, "args", None))
        return
    detail = "".join(traceback.format_exception_only(exc_type, exc_value)).strip() if exc_type else "job failed"
    _store().mark_error(repository, digest, f"gave up after retries: {detail}", ruleset=None)
