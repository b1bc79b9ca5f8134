"""The status pages in a real headless Chromium: live verdict, findings, quarantine, release, roles, badge, phone."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.functional.test_cli_tokens import TOLLGATE
from tests.functional.test_push_to_verdict import _malicious_layout
from tests.support.accounts import PASSWORD, user
from tests.support.browser import PHONE, PageLog, log_in, new_page, screenshot
from tests.support.stack import Stack
from workers.domain import Role
from workers.store import Store

pytestmark = [pytest.mark.functional, pytest.mark.slow]

REPO = "team/app"
TAG = "v1"
SECURITY = "sec-alice"
DEVELOPER = "dev-bob"
REASON = "reviewed by sec-alice: an inert test reproduction, not a real miner"
VERDICT_TIMEOUT = 120_000  # ms: the scan of a small image takes seconds; a slow CI machine gets room
FILL = re.compile(r"""fill\s*[=:]\s*["']?(#[0-9a-fA-F]{3,8}|rgb\([^)]*\)|[a-z]+)""")
# Every mutation of the page re-reads the status chip, so a swap of the whole element is seen too.
STATUS_RECORDER = """() => {
    window.__marker = "set-before-the-worker-ran";
    window.__statuses = [];
    const read = () => {
        const chip = document.querySelector('[data-testid="status"]');
        const text = chip ? chip.textContent.trim() : null;
        if (window.__statuses[window.__statuses.length - 1] !== text) window.__statuses.push(text);
    };
    read();
    new MutationObserver(read).observe(document.documentElement, {subtree: true, childList: true, characterData: true});
}"""


@dataclass
class Vetted:
    """A malicious image pushed to the real registry, scanned and held by policy."""

    repository: str
    tag: str
    digest: str
    record: dict[str, Any]

    @property
    def path(self) -> str:
        """The image page's path by digest."""
        return f"/images/{self.repository}@{self.digest}"


def start_worker(stack: Stack) -> subprocess.Popen[str]:
    """``tollgate worker --burst`` in its own process: rq's worker needs the main thread for its signals."""
    return subprocess.Popen(
        [TOLLGATE, "worker", "--burst", "--no-scheduler"],
        env={**os.environ, **stack.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish_worker(worker: subprocess.Popen[str], timeout: float = 300) -> None:
    """Wait for the burst worker to drain the queues; fail with its output if it failed."""
    try:
        output, _ = worker.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        worker.kill()
        output, _ = worker.communicate()
        pytest.fail(f"the worker did not finish within {timeout}s:\n{output[-4000:]}")
    assert worker.returncode == 0, output[-4000:]


def fills(svg: str) -> set[str]:
    """The fill colours an SVG badge uses."""
    return {match.lower() for match in FILL.findall(svg) if match.lower() not in {"none", "transparent"}}


def form_of(page: Page, testid: str) -> Any:
    """The form holding the button ``testid``."""
    return page.locator("form").filter(has=page.get_by_test_id(testid))


def tab_to(page: Page, selector: str, limit: int = 120) -> None:
    """Press Tab until the focused element matches ``selector``; fail if it is not reachable by keyboard."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("(s) => document.activeElement !== null && document.activeElement.matches(s)", selector):
            return
    pytest.fail(f"{selector} is not reachable with Tab within {limit} presses")


def overflow(page: Page) -> dict[str, int]:
    """The document's scroll width against the viewport's width."""
    result: dict[str, int] = page.evaluate(
        "() => ({scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth})"
    )
    return result


@pytest.fixture
def people(stack: Stack) -> Iterator[None]:
    """A security user and a developer user with passwords, as ``tollgate user create`` makes them."""
    store = Store(stack.settings.database_url)
    try:
        user(store, SECURITY, Role.SECURITY)
        user(store, DEVELOPER, Role.DEVELOPER)
    finally:
        store.close()
    yield


@pytest.fixture
def held(stack: Stack, tmp_path: Path) -> Vetted:
    """A malicious image pushed to the real registry, vetted and held (quarantined) by policy."""
    digest = _malicious_layout(tmp_path / "bad")
    stack.push(tmp_path / "bad", REPO, TAG)
    stack.wait_queued(REPO, TAG)
    stack.run_worker()
    record = stack.record(REPO, f"@{digest}").json()
    assert record["verdict"] == "malicious" and record["quarantined"] is True, record
    return Vetted(REPO, TAG, digest, record)


def release_with_reason(page: Page, log: PageLog, digest: str) -> None:
    """Fill the release form's reason and press its button; the page asks for confirmation, which is given."""
    form = form_of(page, "release-button")
    expect(form).to_have_count(1)
    form.locator('[name="reason"]').fill(REASON)
    asked = len(log.dialogs)
    with page.expect_navigation():
        page.get_by_test_id("release-button").click()
    assert_confirmed(log, asked, digest)


def assert_confirmed(log: PageLog, asked_before: int, digest: str) -> None:
    """A confirmation naming the image was asked since ``asked_before`` dialogs."""
    asked = log.dialogs[asked_before:]
    assert any(d.startswith("confirm:") and digest in d for d in asked), log.dialogs


def assert_released(page: Page, stack: Stack, vetted: Vetted) -> None:
    """After the worker ran the move: the page says released and its timeline holds the release with its reason."""
    page.goto(f"{stack.app.url}{vetted.path}")
    expect(page.get_by_test_id("quarantine-state")).to_contain_text("released")
    releases = page.get_by_test_id("timeline").locator('[data-testid="timeline-event"][data-action="release"]')
    # The person's request and the worker's completed move are both in the trail; the person's carries the reason.
    expect(releases.filter(has_text=SECURITY).filter(has_text=REASON).first).to_be_visible()
    expect(page.get_by_test_id("timeline").locator('[data-action="release.failed"]')).to_have_count(0)
    assert stack.record(vetted.repository, f"@{vetted.digest}").json()["quarantined"] is False


# -- the main story -----------------------------------------------------------------------------------------------


def test_a_held_push_goes_live_from_queued_to_verdict_and_security_releases_it(
    stack: Stack, people: None, page: Page, page_log: PageLog, tmp_path: Path
) -> None:
    digest = _malicious_layout(tmp_path / "bad")
    stack.push(tmp_path / "bad", REPO, TAG)
    assert stack.wait_queued(REPO, TAG)["status"] == "queued"
    badge_url = f"{stack.app.url}/badge/{REPO}:{TAG}.svg"
    badge_before = page.request.get(badge_url)
    assert badge_before.ok, badge_before.status
    assert "svg" in badge_before.headers["content-type"]

    # 1. The image page, opened before any worker ran, says queued; then it follows the scan by itself.
    page.goto(f"{stack.app.url}/images/{REPO}:{TAG}")
    expect(page.get_by_test_id("status")).to_have_text(re.compile(r"\s*queued\s*", re.I))
    screenshot(page, "image-queued")
    # The queue page, in another tab, lists the waiting scan.
    queue = page.context.new_page()
    queue.goto(f"{stack.app.url}/queue")
    expect(queue.get_by_test_id("queue").locator('[data-testid="queued-job"]').filter(has_text=REPO)).to_have_count(1)
    screenshot(queue, "queue-with-a-waiting-scan")
    queue.close()
    page.evaluate(STATUS_RECORDER)
    navigations = len(page_log.navigations)
    worker = start_worker(stack)
    try:
        expect(page.get_by_test_id("status")).to_have_text(re.compile(r"\s*done\s*", re.I), timeout=VERDICT_TIMEOUT)
        expect(page.get_by_test_id("verdict")).to_contain_text("malicious")
        expect(page.get_by_test_id("action")).to_contain_text("quarantine")
    finally:
        finish_worker(worker)
    assert page.evaluate("() => window.__marker") == "set-before-the-worker-ran", "the page was reloaded"
    assert len(page_log.navigations) == navigations, page_log.navigations
    statuses = [s.lower() for s in page.evaluate("() => window.__statuses") if s]
    assert statuses[0] == "queued" and statuses[-1] == "done", statuses
    assert set(statuses) <= {"queued", "scanning", "done"}, statuses

    # 2. Findings as the API lists them, and the hold with the preserved copy (the policy move ran in that burst).
    record = stack.record(REPO, f"@{digest}").json()
    assert record["quarantined"] is True, record
    page.reload()
    findings = page.get_by_test_id("finding")
    expect(findings).to_have_count(len(record["findings"]))
    shown = {(f.get_attribute("data-rule"), f.get_attribute("data-severity")) for f in findings.all()}
    assert shown == {(f["rule"], f["severity"]) for f in record["findings"]}
    paths = {f["path"] for f in record["findings"] if f.get("path")}
    assert paths & {"/opt/x/config.json", "/usr/local/bin/start.sh"}, paths
    for path in paths & {"/opt/x/config.json", "/usr/local/bin/start.sh"}:
        expect(findings.filter(has_text=path).first).to_be_visible()
    expect(page.get_by_test_id("quarantine-state")).to_contain_text("held")
    copy = record["quarantine"]["copy"]
    assert copy.startswith(f"quarantine/{REPO}@"), copy
    expect(page.get_by_test_id("quarantine-copy")).to_contain_text(copy)
    # Anonymous visitors read the page but get no buttons.
    for button in ("release-button", "quarantine-button", "rescan-button"):
        expect(page.get_by_test_id(button)).to_have_count(0)
    screenshot(page, "image-held-with-findings")

    # 3. The badge now says malicious, in another colour.
    badge_after = page.request.get(badge_url)
    assert badge_after.ok, badge_after.status
    assert "malicious" in badge_after.text()
    assert "malicious" not in badge_before.text()
    assert fills(badge_before.text()) and fills(badge_after.text())
    assert fills(badge_before.text()) != fills(badge_after.text()), (badge_before.text(), badge_after.text())

    # 4. Security logs in, releases with a reason; the timeline records it once the worker ran the move.
    log_in(page, stack.app.url, SECURITY, PASSWORD, next_path=f"/images/{REPO}@{digest}")
    page.goto(f"{stack.app.url}/images/{REPO}@{digest}")
    release_with_reason(page, page_log, digest)
    finish_worker(start_worker(stack))
    assert_released(page, stack, Vetted(REPO, TAG, digest, record))
    screenshot(page, "image-released-timeline")
    assert not page_log.errors, page_log.errors
    assert not page_log.console_errors, page_log.console_errors  # no failed loads either (a favicon is served)
    assert not page_log.foreign_requests(stack.app.url), page_log.foreign_requests(stack.app.url)


# -- who sees what ------------------------------------------------------------------------------------------------


def test_only_security_sees_release_and_quarantine_buttons(
    stack: Stack, people: None, held: Vetted, open_context: Callable[..., BrowserContext], page_log: PageLog
) -> None:
    security = new_page(open_context(), page_log)
    log_in(security, stack.app.url, SECURITY, PASSWORD)
    security.goto(f"{stack.app.url}{held.path}")
    expect(security.get_by_test_id("release-button")).to_be_visible()
    expect(security.get_by_test_id("rescan-button")).to_be_visible()
    expect(form_of(security, "release-button").locator('[name="reason"]')).to_be_visible()

    # Cancel at the confirmation: nothing is sent.
    form_of(security, "release-button").locator('[name="reason"]').fill("changed my mind")
    page_log.accept_dialogs = False
    security.get_by_test_id("release-button").click()
    page_log.accept_dialogs = True
    assert_confirmed(page_log, 0, held.digest)
    assert not page_log.posts("/release"), page_log.posts("/release")
    expect(security.get_by_test_id("quarantine-state")).to_contain_text("held")
    # The session alone does not make a release: without the form's CSRF token the server refuses it.
    forged = security.request.post(f"{stack.app.url}{held.path}/release", form={"reason": "forged"}, max_redirects=0)
    assert forged.status == 403, (forged.status, forged.text()[:300])
    assert stack.record(held.repository, f"@{held.digest}").json()["quarantined"] is True

    developer = new_page(open_context(), page_log)  # another person: their own cookies
    log_in(developer, stack.app.url, DEVELOPER, PASSWORD)
    developer.goto(f"{stack.app.url}{held.path}")
    expect(developer.get_by_test_id("verdict")).to_contain_text("malicious")
    expect(developer.get_by_test_id("release-button")).to_have_count(0)
    expect(developer.get_by_test_id("quarantine-button")).to_have_count(0)
    expect(developer.get_by_test_id("rescan-button")).to_be_visible()  # a developer may ask for a rescan
    screenshot(developer, "image-as-developer")
    assert not page_log.errors, page_log.errors


def test_release_by_keyboard_alone(stack: Stack, people: None, held: Vetted, page: Page, page_log: PageLog) -> None:
    log_in(page, stack.app.url, SECURITY, PASSWORD)
    page.goto(f"{stack.app.url}{held.path}")
    reason = form_of(page, "release-button").locator('[name="reason"]')
    expect(reason).to_be_visible()
    # The field has a label a screen reader announces.
    assert reason.evaluate("(el) => el.labels !== null && el.labels.length > 0 || !!el.getAttribute('aria-label')")
    tab_to(page, 'form:has([data-testid="release-button"]) [name="reason"]')
    page.keyboard.type(REASON)
    tab_to(page, '[data-testid="release-button"]')
    asked = len(page_log.dialogs)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert_confirmed(page_log, asked, held.digest)
    finish_worker(start_worker(stack))
    assert_released(page, stack, held)
    assert not page_log.errors, page_log.errors


# -- quality ------------------------------------------------------------------------------------------------------


def test_phone_width_has_no_horizontal_scrollbar(
    stack: Stack, held: Vetted, open_context: Callable[..., BrowserContext], page_log: PageLog
) -> None:
    phone = new_page(open_context(viewport=PHONE, is_mobile=True, has_touch=True), page_log)
    phone.goto(f"{stack.app.url}{held.path}")
    expect(phone.get_by_test_id("finding").first).to_be_visible()
    widths = overflow(phone)
    screenshot(phone, "image-phone-375")
    assert widths["client"] == PHONE["width"], widths
    assert widths["scroll"] <= widths["client"], f"the image page scrolls sideways at 375 px: {widths}"
    wide = {}
    for path in ("/", f"/repositories/{held.repository}", "/queue"):
        phone.goto(f"{stack.app.url}{path}")
        if (widths := overflow(phone))["scroll"] > widths["client"]:
            wide[path] = widths
    assert not wide, f"these pages scroll sideways at 375 px: {wide}"
    assert not page_log.errors, page_log.errors


def test_key_pages_render_same_origin_and_are_saved(
    stack: Stack, people: None, held: Vetted, page: Page, page_log: PageLog
) -> None:
    page.goto(f"{stack.app.url}/")
    counts = page.get_by_test_id("verdict-counts")
    expect(counts).to_be_visible()
    expect(counts).to_contain_text("malicious")
    expect(page.locator("h1")).to_have_count(1)
    screenshot(page, "overview")

    page.goto(f"{stack.app.url}/repositories/{held.repository}")
    expect(page.locator("h1")).to_have_count(1)
    expect(page.get_by_text(held.tag, exact=True).first).to_be_visible()
    screenshot(page, "repository")

    page.goto(f"{stack.app.url}/queue")
    expect(page.get_by_test_id("queue")).to_be_visible()
    expect(page.locator("h1")).to_have_count(1)
    screenshot(page, "queue")

    log_in(page, stack.app.url, SECURITY, PASSWORD)
    page.goto(f"{stack.app.url}/audit")
    expect(page.locator("h1")).to_have_count(1)
    expect(page.get_by_text(held.digest).first).to_be_visible()  # the policy's quarantine is in the trail
    screenshot(page, "audit")

    page.goto(f"{stack.app.url}/waivers")
    expect(page.locator("h1")).to_have_count(1)
    screenshot(page, "waivers")

    # The search box in the header, by its label: a digest prefix lists the image; a full reference jumps to it.
    search = page.get_by_role("searchbox", name=re.compile("search", re.I))
    search.fill(held.digest.split(":", 1)[1][:12])
    with page.expect_navigation():
        search.press("Enter")
    expect(page.locator("h1")).to_have_count(1)
    expect(page.locator(f'a[href*="{held.digest}"]').first).to_be_visible()
    screenshot(page, "search")
    page.get_by_role("searchbox", name=re.compile("search", re.I)).fill(f"{held.repository}:{held.tag}")
    with page.expect_navigation():
        page.get_by_role("searchbox", name=re.compile("search", re.I)).press("Enter")
    expect(page).to_have_url(re.compile(re.escape(f"/images/{held.repository}@{held.digest}")))
    expect(page.locator("h1")).to_have_count(1)
    expect(page.get_by_test_id("timeline-event").first).to_be_visible()
    screenshot(page, "image-as-security")

    assert not page_log.errors, page_log.errors
    assert not page_log.foreign_requests(stack.app.url), page_log.foreign_requests(stack.app.url)
