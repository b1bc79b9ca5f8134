"""Render time of every status page for a repository of hundreds of tags and an image of hundreds of findings.

Run: ``.venv/bin/python -m bench.pages`` (options: ``--tags 500 --findings 800 --events 600 --runs 30``,
``--database-url postgresql+psycopg://…`` for PostgreSQL, ``--redis-url redis://…/N`` to use a running Redis
instead of the private ``redis-server`` it starts). It seeds a fresh store, renders each page ``--runs`` times
through the Flask test client (in process: template and store time, no network) as a security user, and prints
median and p95 milliseconds per page. A page that does not answer 200 fails the run; slow pages are only marked.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import redis
from flask.testing import FlaskClient

from service import create_app
from workers import accounts, audit, waivers
from workers.audit import AuditAction
from workers.domain import (
    Action,
    Actor,
    ActorKind,
    Category,
    Confidence,
    Digest,
    Finding,
    LayerInfo,
    PlatformReport,
    Role,
    ScanReport,
    Severity,
    Verdict,
    sha256_digest,
)
from workers.queue import enqueue_scan, redis_connection
from workers.settings import Settings
from workers.store import Store

ROOT = Path(__file__).resolve().parent.parent
BUDGET_MS = 1000.0  # issue 7: every page renders in under a second on this machine
REPOSITORY = "bench/app"
SEVERITIES = ("critical", "high", "medium", "low", "info")
CATEGORIES = ("miner", "backdoor", "persistence", "credential-theft", "defense-evasion", "secret")


@dataclass(frozen=True)
class Seeded:
    """What the seeding made: the big image, a tag, the bearer token the requests send."""

    big_digest: str
    tag: str
    token: str


@contextmanager
def private_redis(workdir: Path) -> Iterator[str]:
    """A throw-away ``redis-server`` on a free port (no persistence); its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("bench.pages: no redis-server on PATH; install it (make bootstrap) or pass --redis-url")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        conn = redis.Redis(port=port)
        for _ in range(100):
            try:
                conn.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        else:
            sys.exit("bench.pages: the private redis-server did not answer")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(timeout=10)


def _findings(count: int, layers: list[Digest]) -> tuple[Finding, ...]:
    """``count`` findings over every severity, category, layer and a spread of paths."""
    found = []
    for i in range(count):
        found.append(
            Finding(
                rule=f"bench.rule-{i % 60:02d}",
                severity=Severity(SEVERITIES[i % len(SEVERITIES)]),
                category=Category(CATEGORIES[i % len(CATEGORIES)]),
                message=f"synthetic finding {i}: a pattern the bench rule {i % 60} matches",
                confidence=Confidence.HIGH if i % 3 else Confidence.MEDIUM,
                attack=f"T{1000 + i % 600}",
                layer=layers[i % len(layers)],
                step=f"RUN /bin/sh -c 'install step {i % len(layers)}' # buildkit",
                path=f"/opt/bench/dir-{i % 40}/file-{i}.sh",
                in_final_fs=i % 5 != 0,
                evidence=("stratum+tcp://198.51.100.23:3333 " * 4)[: 60 + i % 140],
                platform="linux/amd64",
            )
        )
    return tuple(found)


def _report(digest: Digest, findings: tuple[Finding, ...], layers: list[Digest]) -> ScanReport:
    verdict = Verdict.MALICIOUS if findings else Verdict.CLEAN
    platform = PlatformReport(
        platform="linux/amd64",
        manifest_digest=digest,
        config_digest=sha256_digest(f"config-{digest}".encode()),
        layers=tuple(
            LayerInfo(
                index=i,
                digest=layer,
                media_type="application/vnd.oci.image.layer.v1.tar+gzip",
                size=10_000 * (i + 1),
                diff_id=sha256_digest(f"diff-{layer}".encode()),
                step=f"RUN /bin/sh -c 'install step {i}' # buildkit",
            )
            for i, layer in enumerate(layers)
        ),
        history_aligned=True,
        files_scanned=1234,
        bytes_scanned=56_789_000,
    )
    return ScanReport(
        repository=REPOSITORY,
        digest=digest,
        media_type="application/vnd.oci.image.manifest.v1+json",
        verdict=verdict,
        action=Action.QUARANTINE if findings else Action.ALLOW,
        ruleset="bench-rules",
        findings=findings,
        platforms=(platform,),
        explanation=f"{len(findings)} synthetic findings" if findings else "",
    )


def seed(settings: Settings, *, tags: int, findings: int, events: int, queued: int) -> Seeded:
    """``tags`` tagged images in one repository; one image with ``findings`` findings and ``events`` audit events."""
    store = Store(settings.database_url)
    store.migrate()
    operator = Actor(ActorKind.SYSTEM, "bench")
    security = Actor(ActorKind.USER, "bench-sec", Role.SECURITY)
    layers = [sha256_digest(f"layer-{i}".encode()) for i in range(8)]
    big = sha256_digest(b"bench-big-image")
    try:
        store.record_push(REPOSITORY, big, tag="big", media_type=None)
        store.save_report(_report(big, _findings(findings, layers), layers))
        for i in range(tags):
            digest = sha256_digest(f"bench-tag-{i}".encode())
            store.record_push(REPOSITORY, digest, tag=f"t{i:04d}", media_type=None)
            few = _findings(i % 4, layers[:2])  # a mix of clean and flagged tags
            store.save_report(_report(digest, few, layers[:2]))
            audit.record(store, operator, AuditAction.VERDICT, f"{REPOSITORY}@{digest}", reason="bench verdict")
        for i in range(events):
            action = (AuditAction.VERDICT, AuditAction.RESCAN, AuditAction.QUARANTINE, AuditAction.RELEASE)[i % 4]
            audit.record(store, security, action, f"{REPOSITORY}@{big}", reason=f"bench event {i}: a reason")
        for i in range(20):
            waivers.create_waiver(
                store,
                security,
                rule=f"bench.rule-{i:02d}",
                reason=f"bench waiver {i}",
                expires_at=store.now() + timedelta(days=30),
                repository_pattern=REPOSITORY,
            )
        conn = redis_connection(settings)
        for i in range(queued):
            digest = sha256_digest(f"bench-queued-{i}".encode())
            store.record_push(f"bench/queued-{i % 10}", digest, tag=f"q{i}", media_type=None)
            job = enqueue_scan(conn, f"bench/queued-{i % 10}", digest, ruleset="bench-rules", settings=settings)
            store.mark_queued(f"bench/queued-{i % 10}", digest, ruleset="bench-rules", job_id=job.job_id)
        token = accounts.create_token(store, operator, role=Role.SECURITY, name="bench-security").token
    finally:
        store.close()
    return Seeded(big_digest=big, tag="t0001", token=token)


def pages(seeded: Seeded, tags: int) -> list[tuple[str, str, dict[str, str]]]:
    """(name, path, extra headers) of every page measured."""
    image = f"/images/{REPOSITORY}@{seeded.big_digest}"
    last = max(0, (tags // 50) * 50)
    short = seeded.big_digest.split(":", 1)[1][:12]
    return [
        ("overview", "/", {}),
        ("repositories", "/repositories", {}),
        ("repository (first page)", f"/repositories/{REPOSITORY}", {}),
        ("repository (last page)", f"/repositories/{REPOSITORY}?offset={last}", {}),
        ("image detail", image, {}),
        ("image detail, all findings", f"{image}?findings=all", {}),
        ("image detail as JSON", image, {"Accept": "application/json"}),
        ("image live fragment", f"{image}/live", {}),
        ("image by tag", f"/images/{REPOSITORY}:{seeded.tag}", {}),
        ("findings.csv", f"{image}/findings.csv", {}),
        ("queue", "/queue", {}),
        ("audit", "/audit", {}),
        ("audit of the image", f"/audit?target={REPOSITORY}@{seeded.big_digest}", {}),
        ("waivers", "/waivers", {}),
        ("badge", f"/badge/{REPOSITORY}:{seeded.tag}.svg", {}),
        ("search by tag", "/search?q=t04", {}),
        ("search by digest prefix", f"/search?q={short}", {}),
    ]


def measure(client: FlaskClient, path: str, headers: dict[str, str], runs: int) -> tuple[list[float], int, int]:
    """Milliseconds of ``runs`` GETs after two warm-ups; the status and size of the last answer."""
    for _ in range(2):
        client.get(path, headers=headers)
    times = []
    status = size = 0
    for _ in range(runs):
        start = time.perf_counter()
        response = client.get(path, headers=headers)
        body = response.get_data()
        times.append((time.perf_counter() - start) * 1000)
        status, size = response.status_code, len(body)
    return times, status, size


def p95(values: list[float]) -> float:
    """The nearest-rank 95th percentile."""
    ordered = sorted(values)
    return ordered[max(0, -(-95 * len(ordered) // 100) - 1)]


def main(argv: list[str] | None = None) -> int:
    """Seed, serve, render, print."""
    parser = argparse.ArgumentParser(prog="python -m bench.pages", description=__doc__.splitlines()[0])
    parser.add_argument("--tags", type=int, default=500)
    parser.add_argument("--findings", type=int, default=800)
    parser.add_argument("--events", type=int, default=600, help="audit events on the big image")
    parser.add_argument("--queued", type=int, default=200, help="scan jobs waiting in the queue")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--database-url", help="default: a fresh SQLite file in a temporary directory")
    parser.add_argument("--redis-url", help="default: a private redis-server started for the run")
    args = parser.parse_args(argv)

    import logging

    logging.disable(logging.WARNING)  # the app's warnings about a sandbox setup are not the bench's output
    with tempfile.TemporaryDirectory(prefix="tollgate-bench-pages-") as tmp:
        workdir = Path(tmp)
        with _redis_for(args.redis_url, workdir) as redis_url:
            settings = Settings.from_env(
                {},
                redis_url=redis_url,
                database_url=args.database_url or f"sqlite:///{workdir / 'tollgate.db'}",
                webhook_token="bench-webhook-token",  # a throw-away value
                secret_key="bench-secret",
                reconcile_interval=0,
                signing_key=workdir / "signing-key.pem",
            )
            started = time.perf_counter()
            seeded = seed(settings, tags=args.tags, findings=args.findings, events=args.events, queued=args.queued)
            seconds = time.perf_counter() - started
            print(
                f"seeded {args.tags} tags, {args.findings} findings, {args.events} audit events on one image, "
                f"{args.queued} queued scans in {seconds:.1f}s ({settings.database_url.split(':', 1)[0]}); "
                f"{args.runs} renders per page, in process (Flask test client), as a security user"
            )
            app = create_app(settings)
            client = app.test_client()
            headers = {"Authorization": f"Bearer {seeded.token}"}
            failed = []
            print(f"{'page':34} {'median ms':>10} {'p95 ms':>8} {'KiB':>7}  status")
            for name, path, extra in pages(seeded, args.tags):
                times, status, size = measure(client, path, {**headers, **extra}, args.runs)
                median, high = statistics.median(times), p95(times)
                mark = "" if high < BUDGET_MS else f"  over {BUDGET_MS:.0f} ms"
                print(f"{name:34} {median:10.1f} {high:8.1f} {size / 1024:7.1f}  {status}{mark}")
                if status != 200:
                    failed.append(f"{name} ({path}): {status}")
    if failed:
        print("bench.pages: pages that did not answer 200: " + "; ".join(failed), file=sys.stderr)
        return 1
    return 0


@contextmanager
def _redis_for(url: str | None, workdir: Path) -> Iterator[str]:
    if url:
        yield url
        return
    with private_redis(workdir) as private:
        yield private


if __name__ == "__main__":
    os.chdir(ROOT)
    raise SystemExit(main())
