"""Browser tests: headless Chromium (Debian's package, driven by Playwright) against the CS
console served over real HTTP by the local API (devstack/local_api.py, as `make run` starts it),
on the local stack the integration tests use (tests/conftest.py `stack_env`).

No Chromium, no browser tests: each is skipped with the command that installs it, and the end
of the run says so in one line, so `make test` on such a machine does not pass silently.
Playwright's own browser download (`playwright install`) is never used.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port

HERE = Path(__file__).resolve().parent
INSTALL = "install Debian's package: apt-get install chromium (as root; .ci/run does it in CI)"
# Chromium as a test runner wants it: no sandbox (containers, root in CI), nothing fetched or
# synced in the background (the tests run offline), no GPU.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}


def chromium_path() -> str | None:
    """$CHROMIUM when set (only it), else Debian's /usr/bin/chromium or a `chromium` on PATH;
    None when there is none."""
    chosen = os.environ.get("CHROMIUM")
    if chosen:
        return chosen if os.access(chosen, os.X_OK) else None
    if os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium"
    return shutil.which("chromium")


def why_not_runnable() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if chromium_path() is None:
        where = os.environ.get("CHROMIUM") or "/usr/bin/chromium"
        return f"no Chromium at {where} (or set CHROMIUM)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "no Playwright (make test installs requirements-dev.txt)"
    return None


_skipped: list[str] = []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = why_not_runnable()
    if reason is None:
        return
    mark = pytest.mark.skip(reason=f"browser test skipped: {reason}; {INSTALL}")
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(mark)
            _skipped.append(item.nodeid)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _skipped:
        terminalreporter.write_line(
            f"browser tests skipped ({len(_skipped)}): {why_not_runnable()}; {INSTALL}",
            yellow=True, bold=True)


@pytest.fixture(scope="package")
def console_url(stack_env: dict[str, str]) -> Iterator[str]:
    """The app over real HTTP, as make run serves it, on a free port of localhost (a secure
    origin to the browser, so the console's Secure cookie is kept over plain http). For this
    package only: the server and the browser stop before the rest of the suite runs."""
    from devstack.stack import _wait_for_port, start_api, stop_api

    port = free_port()
    url = f"http://localhost:{port}"
    # No key cache in the server: a revoked key's session ends at its next page, not within
    # the cache's minute (the revocation test would wait for it).
    api = start_api(port, {**stack_env, "CONSOLE_URL": url, "KEY_CACHE_SECONDS": "0"})
    try:
        _wait_for_port(port, api)
        yield url
    finally:
        stop_api(api)


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium_path(), headless=True,
                                              args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


class Tab:
    """A browser tab on the console, with every JavaScript dialog it raised (none may be)."""

    def __init__(self, page: Any, base: str) -> None:
        self.page, self.base = page, base
        self.dialogs: list[str] = []
        page.on("dialog", self._dialog)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def open(self, path: str) -> Any:
        """GET a console path (or an absolute URL); the response after redirects."""
        return self.page.goto(path if path.startswith("http") else self.base + path)

    def sign_in(self, key: str) -> None:
        """The sign-in form, as a person fills it; then English (texts are matched in English)."""
        self.open("/console/sign-in")
        self.page.fill("#key", key)
        self.page.click("#sign-in")
        self.page.wait_for_load_state()
        assert "/console/sign-in" not in self.page.url, self.page.content()[:2000]
        self.open(self.page.url.split("?")[0] + "?lang=en")

    def testid(self, name: str) -> Any:
        return self.page.locator(f'[data-testid="{name}"]')

    def session_cookie(self) -> dict[str, Any]:
        (cookie,) = [c for c in self.page.context.cookies() if c["name"] == "obk_session"]
        return dict(cookie)


@pytest.fixture
def new_tab(browser: Any, console_url: str) -> Iterator[Any]:
    """Tabs in contexts of their own (their own cookies), closed after the test."""
    contexts: list[Any] = []

    def open_tab(viewport: dict[str, int] = DESKTOP) -> Tab:
        context = browser.new_context(viewport=viewport, locale="en-US")
        context.set_default_timeout(15_000)
        contexts.append(context)
        return Tab(context.new_page(), console_url)

    yield open_tab
    for context in contexts:
        context.close()


@pytest.fixture
def tab(new_tab: Any) -> Tab:
    opened: Tab = new_tab()
    return opened


@pytest.fixture
def world(stack: dict[str, str], console_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Orders, jobs, keys and cases made the real way (tests/browser/world.py)."""
    from tests.browser.world import World

    return World.for_test(stack, console_url, monkeypatch)
