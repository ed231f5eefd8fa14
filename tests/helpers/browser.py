"""Headless Chromium for the browser tests: Debian's `chromium`, driven by Playwright.

Never `playwright install`: the browser is the distribution's package (scripts/install.sh).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 # Nothing but loopback resolves: a request to a CDN fails even if a route
                 # below were to miss it.
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]

needs_chromium = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium package"),
]

#: Every <img> that is displayed must have loaded. Recorded on every animation frame, so a
#: broken-image icon that shows for one frame is caught too (window.brokenImages).
WATCH_IMAGES = """
    window.brokenImages = [];
    window.displayedBroken = () => Array.from(document.images).filter(img =>
        img.getClientRects().length > 0 && !(img.complete && img.naturalWidth > 0))
        .map(img => img.id || img.alt || img.src);
    (function watch() {
        for (const name of window.displayedBroken()) window.brokenImages.push(name);
        requestAnimationFrame(watch);
    })();
"""


def launch(playwright):
    """Debian's Chromium, headless."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def block_network(context) -> list[str]:
    """Abort every request that is not to loopback; the list of what was attempted."""
    attempted: list[str] = []

    def handle(route) -> None:
        url = route.request.url
        if url.startswith(("data:", "blob:")) or urlsplit(url).hostname in ("127.0.0.1",
                                                                             "localhost"):
            route.continue_()
        else:
            attempted.append(url)
            route.abort("internetdisconnected")

    context.route("**/*", handle)
    return attempted


def sync_playwright():
    """Playwright's sync API context manager; skips the test when the package is missing."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright package")
    return sync_api.sync_playwright()


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium for one test module (import it into the module as a fixture)."""
    with sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()
