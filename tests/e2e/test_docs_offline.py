"""/docs (Swagger UI) renders with no network: its assets come from this server."""

import httpx2
import pytest
from helpers.browser import block_network, needs_chromium

pytestmark = needs_chromium


@pytest.fixture
def offline(browser):
    """A page that can reach loopback only, and the list of other URLs it tried."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    attempted = block_network(context)
    yield context.new_page(), attempted
    context.close()


def test_swagger_ui_lists_the_operations_offline(serve, tmp_path, offline):
    page, attempted = offline
    live = serve(results_dir=tmp_path)
    page.goto(f"{live.url}/docs")
    job = page.locator(".opblock-post .opblock-summary-path[data-path='/v2/job']")
    job.wait_for(state="visible", timeout=20_000)
    assert page.locator(".opblock-post .opblock-summary-path[data-path='/v2/job/async']"
                        ).is_visible()
    # Opening an operation shows its documentation, rendered from /openapi.json.
    job.click()
    page.locator(".opblock-post.is-open .opblock-description-wrapper").first.wait_for()
    assert "Accept header" in page.text_content(".opblock-post.is-open")
    assert attempted == []


def test_no_redoc(serve, tmp_path):
    """ReDoc's bundle loads its logo from a CDN, so only Swagger UI is served."""
    live = serve(results_dir=tmp_path)
    assert httpx2.get(f"{live.url}/redoc").status_code == 404
