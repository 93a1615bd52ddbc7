"""A page opened in a real headless Chromium, offline: what the tests of HTML reports check."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


@dataclass
class Rendered:
    """What the browser saw: console and page errors, requests it blocked, each script's value."""

    errors: list[str]
    blocked: list[str]
    values: list[Any]


def render(page_path: Path, scripts: list[str], screenshot: str) -> Rendered:
    """Open `page_path` (every request but `file://` and `data:` blocked), run `scripts`.

    Skips the test where Chromium or Playwright is missing. A full-page screenshot
    goes to `test-artifacts/<screenshot>`.
    """
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: the browser check needs it")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    ARTIFACTS.mkdir(exist_ok=True)
    rendered = Rendered([], [], [])

    def route(request_route: Any) -> None:
        url = request_route.request.url
        if url.startswith(("file://", "data:")):
            request_route.continue_()
        else:
            rendered.blocked.append(url)
            request_route.abort()

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda message: rendered.errors.append(message.text)
                    if message.type == "error" else None)
            page.on("pageerror", lambda error: rendered.errors.append(str(error)))
            page.route("**/*", route)
            page.goto(page_path.resolve().as_uri(), wait_until="load")
            rendered.values = [page.evaluate(script) for script in scripts]
            page.screenshot(path=str(ARTIFACTS / screenshot), full_page=True)
        finally:
            browser.close()
    return rendered
