"""Helpers for the dashboard's browser tests: Debian's Chromium through Playwright, an
in-thread uvicorn server, and screenshots kept under ``.artifacts/dashboard/``.

Chromium is the system package (``apt-get install chromium``), never a Playwright
download, launched headless without sandbox or background networking.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPO = Path(__file__).resolve().parents[1]
WAIT_MS = 20_000

# The nine dashboard pages: (slug under /dashboard/, heading, screenshot name).
VIEWS = (
    ("", "Fleet Overview", "1-overview"),
    ("trends", "Trends", "2-trends"),
    ("models", "Model Insights", "3-models"),
    ("apps", "Apps", "4-apps"),
    ("benchmarks", "Benchmarks", "5-benchmarks"),
    ("health", "Health", "6-health"),
    ("recommendations", "Recommendations", "7-recommendations"),
    ("settings", "Settings", "8-settings"),
    ("traces", "Request trace", "9-trace"),
)


class Browser:
    """One headless Chromium page; ``errors`` collects console and page errors."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.errors: list[str] = []
        page.set_default_timeout(WAIT_MS)
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    def take_errors(self) -> list[str]:
        errors, self.errors = self.errors, []
        return errors


@contextmanager
def chromium(viewport: tuple[int, int] = (1400, 1000)) -> Iterator[Browser]:
    """Debian's Chromium, headless, through Playwright (never a downloaded browser)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            yield Browser(page)
        finally:
            browser.close()


def browser_fixtures(after: str, artifacts: str) -> tuple[Any, Any, Any]:
    """The ``browser``, ``page`` and ``shots`` fixtures of a browser test module (assign
    them to those names): one Chromium per module, started once fixture ``after`` (the
    site under test) is up; ``page`` fails a test during which the browser logged an
    error; ``shots`` are the test's tmp dir and ``.artifacts/dashboard/<artifacts>``."""

    @pytest.fixture(scope="module")
    def browser(request: pytest.FixtureRequest) -> Iterator[Browser]:
        request.getfixturevalue(after)
        with chromium() as b:
            yield b

    @pytest.fixture
    def page(browser: Browser) -> Iterator[Any]:
        browser.take_errors()
        yield browser.page
        errors = browser.take_errors()
        assert errors == [], f"the browser logged errors: {errors}"

    @pytest.fixture
    def shots(tmp_path: Path) -> tuple[Path, Path]:
        return tmp_path, artifacts_dir(artifacts)

    return browser, page, shots


def open_view(page: Any, base: str, slug: str, heading: str, query: str = "") -> None:
    """Load ``<base>/dashboard/<slug>`` and wait until Dash rendered the view."""
    from playwright.sync_api import expect

    page.goto(f"{base}/dashboard/{slug}{query}")
    expect(page.locator("main h2")).to_have_text(heading, timeout=WAIT_MS)


def expect_text(page: Any, test_id: str, text: str | re.Pattern[str]) -> None:
    """Wait until the element with ``data-testid=test_id`` shows exactly ``text``."""
    from playwright.sync_api import expect

    expect(page.get_by_test_id(test_id)).to_have_text(text, timeout=WAIT_MS)


def expect_contains(page: Any, test_id: str, text: str) -> None:
    from playwright.sync_api import expect

    expect(page.get_by_test_id(test_id)).to_contain_text(text, timeout=WAIT_MS)


def settle(page: Any) -> None:
    """Wait until no Dash callback is pending (so a screenshot shows the finished page)."""
    page.wait_for_function(
        "() => !document.querySelector('[data-dash-is-loading=\"true\"]')", timeout=WAIT_MS
    )


def screenshot(page: Any, name: str, *dirs: Path) -> list[Path]:
    settle(page)
    saved = []
    for folder in dirs:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 10_000, f"screenshot {path} looks empty"
        saved.append(path)
    return saved


def artifacts_dir(kind: str) -> Path:
    """``.artifacts/dashboard/<kind>`` in the repository (git-ignored)."""
    return REPO / ".artifacts" / "dashboard" / kind


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Run an ASGI app with uvicorn on a free loopback port in a thread; yields its URL."""
    import uvicorn

    from launch.localray import free_port, wait_until

    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", ws="none"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="dashboard-test-server", daemon=True)
    thread.start()
    wait_until(lambda: server.started or not thread.is_alive(), 30, "uvicorn", step=0.02)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
