"""Fixtures that drive Debian's chromium headless through Playwright: a browser per session, a page per test."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, Playwright, Request

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_ENV = "TOLLGATE_TEST_CHROMIUM"
ARTIFACTS_ENV = "TOLLGATE_TEST_ARTIFACTS"
CHROMIUM = os.environ.get(CHROMIUM_ENV, "/usr/bin/chromium")
# Screenshots are test artifacts, kept after the run (var/ is gitignored); CI may point this elsewhere.
ARTIFACTS = Path(os.environ.get(ARTIFACTS_ENV, str(ROOT / "var" / "test-artifacts")))
SCREENSHOTS = ARTIFACTS / "screenshots"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 375, "height": 740}
INSTALL_HINT = (
    "install it with `make bootstrap` (or `apt-get install chromium`), or point TOLLGATE_TEST_CHROMIUM at a "
    "Chromium binary; the browser tests never download Playwright's own browsers"
)

_started = time.time()


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "page"


def screenshot(page: Page, name: str, *, full_page: bool = True) -> Path:
    """Save a PNG of ``page`` as ``<artifacts>/screenshots/<name>.png`` and return its path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{_safe_name(name)}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


@dataclass
class PageLog:
    """What a page did besides rendering: script errors, console errors, every request it made."""

    errors: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    navigations: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    accept_dialogs: bool = True  # False: the person clicks Cancel

    def posts(self, suffix: str) -> list[str]:
        """POSTs this page made to a URL ending in ``suffix``."""
        return [url for url in self.requests if url.startswith("POST ") and url.endswith(suffix)]

    def foreign_requests(self, origin: str) -> list[str]:
        """Requests to anywhere but ``origin`` (the pages must fetch nothing from the network outside Tollgate)."""
        urls = [entry.rpartition(" ")[2] for entry in self.requests]
        return [url for url in urls if not (url == origin or url.startswith(origin + "/"))]


@pytest.fixture(scope="session")
def playwright_driver() -> Iterator[Playwright]:
    """Playwright's sync driver for the whole session (only its protocol driver; no browser of its own)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:  # never a silent skip: `make test` installs it
        pytest.fail(f"the browser tests need playwright ({exc}): run `make bootstrap` (requirements-dev.txt)")
    driver = sync_playwright().start()
    try:
        yield driver
    finally:
        driver.stop()


@pytest.fixture(scope="session")
def chromium(playwright_driver: Playwright) -> Iterator[Browser]:
    """Headless chromium from ``TOLLGATE_TEST_CHROMIUM`` (default Debian's ``/usr/bin/chromium``)."""
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(f"no Chromium at {CHROMIUM}: {INSTALL_HINT}", pytrace=False)
    args = ["--disable-dev-shm-usage"]  # containers give /dev/shm little room
    if os.geteuid() == 0:
        args.append("--no-sandbox")  # chromium refuses to sandbox itself as root
    browser = playwright_driver.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
    try:
        yield browser
    finally:
        browser.close()


def _watch(page: Page, log: PageLog) -> None:
    """Record errors, requests, main-frame navigations and dialogs; answer confirmations as ``log`` says."""

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            log.console_errors.append(message.text)

    def on_request(request: Request) -> None:
        log.requests.append(request.url if request.method == "GET" else f"{request.method} {request.url}")

    def on_dialog(dialog: Any) -> None:
        log.dialogs.append(f"{dialog.type}: {dialog.message}")
        if log.accept_dialogs:
            dialog.accept()
        else:
            dialog.dismiss()

    page.on("pageerror", lambda error: log.errors.append(str(error)))
    page.on("console", on_console)
    page.on("request", on_request)
    page.on("dialog", on_dialog)
    page.on("framenavigated", lambda frame: log.navigations.append(frame.url) if frame == page.main_frame else None)


@pytest.fixture
def browser_context(chromium: Browser) -> Iterator[BrowserContext]:
    """A fresh context (cookies, storage) at laptop size for one test."""
    context = chromium.new_context(viewport=DESKTOP)  # type: ignore[arg-type]
    context.set_default_timeout(15_000)
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def open_context(chromium: Browser) -> Iterator[Callable[..., BrowserContext]]:
    """A factory of more contexts (another person, a phone), each closed after the test."""
    opened: list[BrowserContext] = []

    def factory(**options: Any) -> BrowserContext:
        options.setdefault("viewport", DESKTOP)
        context = chromium.new_context(**options)
        context.set_default_timeout(15_000)
        opened.append(context)
        return context

    try:
        yield factory
    finally:
        for context in opened:
            context.close()


@pytest.fixture
def page_log() -> PageLog:
    """What the test's ``page`` logged."""
    return PageLog()


@pytest.fixture
def page(browser_context: BrowserContext, page_log: PageLog, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A page in the test's context; on failure its last state is saved as ``<test>-failed.png``."""
    opened = browser_context.new_page()
    _watch(opened, page_log)
    yield opened
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed and not opened.is_closed():
        try:
            screenshot(opened, f"{request.node.name}-failed")
        except Exception as exc:  # the test's own failure is what matters
            print(f"could not save the failure screenshot: {exc}")


def new_page(context: BrowserContext, log: PageLog) -> Page:
    """Another watched page (e.g. a second person in their own context)."""
    opened = context.new_page()
    _watch(opened, log)
    return opened


def log_in(page: Page, base_url: str, name: str, password: str, *, next_path: str | None = None) -> None:
    """Log in through the login form like a person; fail the test if the form answers an error."""
    from playwright.sync_api import expect

    target = f"{base_url}/login" + (f"?next={next_path}" if next_path else "")
    page.goto(target)
    page.locator('input[name="name"]').fill(name)
    page.locator('input[name="password"]').fill(password)
    with page.expect_navigation():
        page.get_by_test_id("login-submit").click()
    expect(page.locator("text=wrong name or password")).to_have_count(0)
    assert "/login" not in page.url or next_path == "/login", f"still on the login page: {page.url}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on the item, so the page fixture knows the test failed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say where this run's screenshots are (also with xdist: the files are counted, not the fixtures)."""
    if not SCREENSHOTS.is_dir():
        return
    fresh = [path for path in SCREENSHOTS.glob("*.png") if path.stat().st_mtime >= _started]
    if fresh:
        terminalreporter.write_sep("-", "browser screenshots")
        terminalreporter.write_line(f"{len(fresh)} screenshot(s) saved in {SCREENSHOTS}")
