"""The playground's LoRA picker in headless Chromium, over the fake engine's LoRA folder: the
choices come from GET /v2/loras, at most three, with scales; they reach the engine, survive a
reload, and a file added to the folder shows up on Refresh."""

import pytest
from helpers.browser import needs_chromium
from helpers.fake_engine import FakeEngine
from helpers.fake_loras import FakeLoras, fake_entry
from helpers.images import gradient_png

from pipelines.contract import LoraChoice

pytestmark = needs_chromium

SDXL = "not a FLUX transformer LoRA: SDXL UNet LoRA keys"
NOTE = "#field-loras .lora-note"


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    yield context.new_page()
    context.close()


def rows(page) -> list[tuple[str, str]]:
    """(LoRA, scale) of each picker row."""
    return [tuple(row) for row in page.eval_on_selector_all(
        "#field-loras .lora-row", """rows => rows.map(row =>
            [row.querySelector('select').value, row.querySelector('input').value])""")]


def test_the_lora_picker(serve, tmp_path, page):
    engine = FakeEngine(loras=FakeLoras([
        fake_entry("style/red"), fake_entry("blue", rank=16), fake_entry("twin"),
        fake_entry("bad/sdxl", loads=False, problem=SDXL)]))
    live = serve(engine=engine, results_dir=tmp_path)
    page.goto(live.url)
    page.wait_for_selector("body[data-ready]")
    page.wait_for_function(f"document.querySelector('{NOTE}').textContent.startsWith('3 of 4')")
    add = page.locator("#field-loras .lora-add")
    for _ in range(3):
        add.click()
    # Each new row takes the next LoRA that can be used; three is the most a job takes.
    assert rows(page) == [("blue", "1"), ("style/red", "1"), ("twin", "1")]
    assert add.is_disabled()
    sdxl = page.locator("#field-loras .lora-row >> nth=0").locator("option[value='bad/sdxl']")
    assert sdxl.is_disabled() and sdxl.get_attribute("title") == SDXL
    page.click("#field-loras .lora-row:nth-child(3) .lora-remove")
    assert add.is_enabled()
    page.fill("#field-loras .lora-row:nth-child(1) .lora-scale", "0.5")
    page.select_option("#field-loras .lora-row:nth-child(2) select", "twin")

    page.set_input_files("#file", str(_png(tmp_path)))
    page.wait_for_selector("#input-image")
    for name, value in (("width", 512), ("height", 512), ("steps", 1)):
        page.fill(f"#field-{name}", str(value))
    page.fill("#prompt", "make it red")
    page.click("#copy-curl")
    assert '"loras":[{"name":"blue","scale":0.5},{"name":"twin","scale":1}]' in \
        page.text_content("#snippet")
    page.click("#run")
    page.wait_for_function("document.querySelectorAll('#history li').length === 2"
                           " || !document.getElementById('error').hidden")
    assert page.is_hidden("#error"), page.text_content("#error")
    assert engine.requests[-1].loras == (LoraChoice("blue", 0.5), LoraChoice("twin", 1.0))

    # A reload keeps the choices; a file added to the folder appears on Refresh.
    engine.loras.add(fake_entry("new/relight"))
    page.reload()
    page.wait_for_selector("body[data-ready]")
    page.wait_for_function(f"document.querySelector('{NOTE}').textContent.startsWith('4 of 5')")
    assert rows(page) == [("blue", "0.5"), ("twin", "1")]
    engine.loras.add(fake_entry("newer"))
    page.click("#field-loras .lora-refresh")
    page.wait_for_function(f"document.querySelector('{NOTE}').textContent.startsWith('5 of 6')")
    assert "newer" in page.eval_on_selector_all(
        "#field-loras .lora-row:nth-child(1) option", "options => options.map(o => o.value)")


def test_without_a_lora_folder_the_picker_says_how(serve, tmp_path, page):
    live = serve(engine=FakeEngine(), results_dir=tmp_path)
    page.goto(live.url)
    page.wait_for_selector("body[data-ready]")
    page.wait_for_function(f"document.querySelector('{NOTE}').textContent.includes('--lora-dir')")
    assert page.is_disabled("#field-loras .lora-add")


def _png(folder):
    path = folder / "photo.png"
    path.write_bytes(gradient_png(320, 256))
    return path
