"""The playground page in a real headless Chromium (Debian's `chromium`, driven by Playwright).

Set PLAYGROUND_SCREENSHOT=docs/playground.png to refresh the screenshot in the docs.
"""

import hashlib
import io
import os
import re
import shutil
from pathlib import Path

import pytest
from helpers.fake_engine import FakeEngine
from PIL import Image, ImageDraw

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium package"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright package")


def scene_png(path: Path) -> Path:
    """A small made-up landscape (sky, sun, hills), so the screenshot shows a real picture."""
    image = Image.new("RGB", (640, 480))
    draw = ImageDraw.Draw(image)
    for y in range(480):
        draw.line([(0, y), (640, y)], fill=(90 + y // 6, 150 + y // 8, 235))
    draw.ellipse([460, 60, 560, 160], fill=(255, 214, 90))
    draw.polygon([(0, 330), (180, 250), (360, 320), (520, 260), (640, 300), (640, 480),
                  (0, 480)], fill=(60, 130, 70))
    draw.rectangle([0, 420, 640, 480], fill=(70, 95, 60))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    path.write_bytes(buffer.getvalue())
    return path


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1200, "height": 760})
    page = context.new_page()
    page.add_init_script("""
        window.statuses = [];
        document.addEventListener("DOMContentLoaded", () => new MutationObserver(() =>
            window.statuses.push(document.getElementById("status").textContent)
        ).observe(document.getElementById("status"), {childList: true, characterData: true,
                                                      subtree: true}));
    """)
    yield page
    context.close()


def fill_form(page, image: Path, **fields) -> None:
    page.set_input_files("#file", str(image))
    for selector, value in fields.items():
        if selector == "style":
            page.select_option("#style", value)
        else:
            page.fill(f"#{selector}", str(value))


def result_digest(page) -> str:
    data = page.evaluate("""async () => {
        const bytes = await (await fetch(document.getElementById("result-image").src))
            .arrayBuffer();
        return Array.from(new Uint8Array(bytes));
    }""")
    return hashlib.sha256(bytes(data)).hexdigest()


def save_screenshot(page, path: Path) -> None:
    """A full-page screenshot, cut to 128 colours: a third of the bytes, for the docs."""
    shot = Image.open(io.BytesIO(page.screenshot(full_page=True))).convert("RGB")
    shot.quantize(128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
        path, optimize=True)


def wait_for_result(page, previous: str = "") -> None:
    page.wait_for_function(
        """previous => { const img = document.getElementById("result-image");
                         return img.src && img.src !== previous && img.complete
                                && img.naturalWidth > 0; }""",
        arg=previous, timeout=60_000)


def test_edit_in_the_browser(serve, tiny_engine, tmp_path, page):
    live = serve(engine=tiny_engine, results_dir=tmp_path, shutdown_grace_seconds=0)
    page.goto(live.url)
    assert page.locator("#style option").count() == 18  # none + the 17 presets
    assert page.is_hidden("#token-row")
    fill_form(page, scene_png(tmp_path / "scene.png"), prompt="make it a snowy winter day",
              style="photographic", width=512, height=576, steps=3, guidance=3.5, seed=1234)
    page.wait_for_function("document.getElementById('input-image').naturalWidth > 0")
    page.click("#run")
    wait_for_result(page)

    size = page.evaluate("""() => { const img = document.getElementById("result-image");
                                    return [img.naturalWidth, img.naturalHeight]; }""")
    assert size == [512, 576]
    assert page.text_content("#result-size") == "512 × 576"
    assert page.text_content("#input-size") == "640 × 480"
    assert re.search(r"Done in [\d.]+ s — seed 1234$", page.text_content("#status"))
    assert page.get_attribute("#download", "download") == "kontext-1234.jpg"
    statuses = page.evaluate("window.statuses")
    assert any(re.match(r"Step [123] of 3", text) for text in statuses), statuses
    assert page.is_visible("#notice")  # the demo checkpoint says its images are noise
    if os.environ.get("PLAYGROUND_SCREENSHOT"):
        save_screenshot(page, Path(os.environ["PLAYGROUND_SCREENSHOT"]))

    # Re-run with the same seed: the same image, byte for byte.
    first, src = result_digest(page), page.get_attribute("#result-image", "src")
    page.fill("#seed", "")
    page.click("#rerun")
    wait_for_result(page, src)
    assert page.input_value("#seed") == "1234"
    assert result_digest(page) == first

    # A value the server refuses: its message, readable.
    page.fill("#width", "1000")
    page.click("#run")
    page.wait_for_selector("#error:not([hidden])")
    assert page.text_content("#error") == \
        "400: config.width: must be a multiple of 32, got 1000"


def test_token_is_asked_for_and_used(serve, tmp_path, page):
    live = serve(engine=FakeEngine(), results_dir=tmp_path, tokens=["s3cret"])
    page.goto(live.url)
    page.wait_for_selector("#token-row:not([hidden])")
    # Drop the image on the drop zone, as a user dragging a file would.
    scene = list(scene_png(tmp_path / "scene.png").read_bytes())
    dropped = page.evaluate_handle("""bytes => { const transfer = new DataTransfer();
        transfer.items.add(new File([new Uint8Array(bytes)], "dropped.png",
                                    {type: "image/png"}));
        return transfer; }""", scene)
    page.dispatch_event("#drop", "drop", {"dataTransfer": dropped})
    page.wait_for_function("document.getElementById('input-image').naturalWidth > 0")
    assert "dropped.png" in page.text_content("#drop-text")
    page.fill("#prompt", "make it night")
    page.fill("#width", "512")
    page.fill("#height", "512")
    page.fill("#steps", "2")
    page.click("#run")
    page.wait_for_selector("#error:not([hidden])")
    assert "needs a bearer token" in page.text_content("#error")
    page.fill("#token", "s3cret")
    page.select_option("#format", "png")
    page.click("#run")
    wait_for_result(page)
    assert page.is_hidden("#error")
    with page.expect_download() as download:
        page.click("#download")
    saved = Image.open(download.value.path())
    assert (saved.format, saved.size) == ("PNG", (512, 512))
    assert re.fullmatch(r"kontext-\d+\.png", download.value.suggested_filename)
