"""The playground in a real headless Chromium, against a real server on the tiny engine.

Every step also checks that no displayed <img> is broken: after each action, and on every
animation frame in between (helpers.browser.WATCH_IMAGES).

Set PLAYGROUND_SCREENSHOTS=docs to refresh docs/playground.png and playground-mobile.png.
"""

import io
import os
import re
import subprocess
from pathlib import Path

import httpx2
import pytest
from helpers.browser import WATCH_IMAGES, needs_chromium
from helpers.fake_engine import FakeEngine
from helpers.held_engine import HeldEngine
from helpers.js_client import JS_DIR, require_js_client
from PIL import Image, ImageDraw

pytestmark = needs_chromium

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}

# Progress bar values as the page sets them (value/max), and status lines, in order.
RECORD = """
    window.statuses = []; window.bars = [];
    document.addEventListener("DOMContentLoaded", () => {
        const status = document.getElementById("status");
        new MutationObserver(() => window.statuses.push(status.textContent))
            .observe(status, {childList: true, characterData: true, subtree: true});
        const bar = document.getElementById("progress");
        new MutationObserver(() => {
            if (bar.hasAttribute("value")) window.bars.push(`${bar.value}/${bar.max}`);
        }).observe(bar, {attributes: true});
    });
"""


def scene_png(path: Path) -> Path:
    """A small made-up landscape (sky, sun, hills), so the screenshots show a real picture."""
    image = Image.new("RGB", (640, 480))
    draw = ImageDraw.Draw(image)
    for y in range(480):
        draw.line([(0, y), (640, y)], fill=(90 + y // 6, 150 + y // 8, 235))
    draw.ellipse([460, 60, 560, 160], fill=(255, 214, 90))
    draw.polygon([(0, 330), (180, 250), (360, 320), (520, 260), (640, 300), (640, 480),
                  (0, 480)], fill=(60, 130, 70))
    draw.rectangle([0, 420, 640, 480], fill=(70, 95, 60))
    image.save(path, "PNG")
    return path


@pytest.fixture
def open_page(browser):
    """open_page(url, viewport=DESKTOP): a fresh browser profile on the playground."""
    contexts = []

    def _open(url: str, viewport=DESKTOP):
        context = browser.new_context(viewport=viewport)
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=url)
        contexts.append(context)
        page = context.new_page()
        page.add_init_script(WATCH_IMAGES + RECORD)
        page.goto(url)
        page.wait_for_selector("body[data-ready]")
        return page

    yield _open
    for context in contexts:
        context.close()


def no_broken_images(page) -> None:
    """Every displayed <img> has loaded, now and on every frame so far."""
    assert page.evaluate("window.displayedBroken()") == []
    assert page.evaluate("window.brokenImages") == []


def history(page) -> list[str]:
    return page.locator("#history li .caption").all_inner_texts()


def run_edit(page, steps_done: int, submit=lambda page: page.click("#run")) -> None:
    """Run the edit as set up and wait until the history has `steps_done` steps."""
    submit(page)
    page.wait_for_function("document.getElementById('cancel').disabled"
                           f" && (document.querySelectorAll('#history li').length === {steps_done}"
                           "     || !document.getElementById('error').hidden)")
    assert page.is_hidden("#error"), page.text_content("#error")
    page.wait_for_selector("#result-image")
    no_broken_images(page)


def start_chain(page, image: Path, **fields) -> None:
    page.set_input_files("#file", str(image))
    page.wait_for_selector("#input-image")
    for name, value in fields.items():
        page.fill(f"#field-{name}" if name != "prompt" else "#prompt", str(value))
    no_broken_images(page)


def bytes_at(page, selector: str) -> bytes:
    """The bytes behind an <img> or <a href> (a blob: URL) in the page."""
    data = page.evaluate("""async selector => { const node = document.querySelector(selector);
        const bytes = await (await fetch(node.src || node.href)).arrayBuffer();
        return Array.from(new Uint8Array(bytes)); }""", selector)
    return bytes(data)


def image_at(page, selector: str) -> Image.Image:
    return Image.open(io.BytesIO(bytes_at(page, selector)))


def save_screenshot(page, name: str) -> None:
    """A full-page screenshot, cut to 128 colours (a third of the bytes), for the docs."""
    if not os.environ.get("PLAYGROUND_SCREENSHOTS"):
        return
    shot = Image.open(io.BytesIO(page.screenshot(full_page=True))).convert("RGB")
    shot.quantize(128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
        Path(os.environ["PLAYGROUND_SCREENSHOTS"]) / name, optimize=True)


def test_chain_undo_reload_and_copy_as_curl(serve, tiny_engine, tmp_path, open_page):
    live = serve(engine=tiny_engine, results_dir=tmp_path / "results", shutdown_grace_seconds=0)
    page = open_page(live.url)
    assert page.is_visible("#stage-empty") and page.is_hidden("#token-row")
    assert page.locator("#job-type option").all_inner_texts() == ["FLUX.1 Kontext [dev] — edit"]
    assert "--fallback local" in page.text_content("#job-type-note")
    assert page.locator("#field-style_preset option").count() == 18  # none + 17 presets
    no_broken_images(page)

    start_chain(page, scene_png(tmp_path / "scene.png"), prompt="make it a snowy winter day",
                width=512, height=576, steps=1, seed=11)
    page.select_option("#field-style_preset", "photographic")
    # 1. Ctrl+Enter runs the edit.
    run_edit(page, 2, submit=lambda page: page.keyboard.press("Control+Enter"))
    assert image_at(page, "#result-image").size == (512, 576)
    assert re.fullmatch(r"Result 512 × 576 — seed 11, [\d.]+ s",
                        page.text_content("#after-label"))
    assert page.is_visible("#notice")  # the demo checkpoint says its images are noise
    # 2. and 3. Edit the result, twice.
    for steps_done, prompt in ((3, "add a red barn"), (4, "make it night")):
        page.click("#edit-result")
        page.wait_for_selector(f"#history li:nth-child({steps_done - 1}).input")
        page.fill("#prompt", prompt)
        run_edit(page, steps_done)
    captions = history(page)
    assert [text.split("\n")[0] for text in captions] == [
        "#0 scene.png", "#1 make it a snowy winter day", "#2 add a red barn", "#3 make it night"]
    assert all("seed 11" in text for text in captions[1:])

    # Back to the upload: the picture, and what the first edit made of it.
    page.click("#history li:nth-child(1) button")
    page.wait_for_selector("#history li:nth-child(1).input")
    assert page.is_disabled("#undo")
    no_broken_images(page)
    save_screenshot(page, "playground.png")

    # Undo to step 1: it is the input again, and step 2 its result.
    page.click("#history li:nth-child(2) button")
    page.wait_for_selector("#history li:nth-child(2).input")
    no_broken_images(page)
    step1 = page.get_attribute("#history li:nth-child(2) a", "href")
    assert page.get_attribute("#input-image", "src") == step1
    assert page.text_content("#inputs") == "result #1 (512 × 576)"

    # A reload keeps the chain, the place in it and the settings.
    page.reload()
    page.wait_for_selector("body[data-ready]")
    page.wait_for_selector("#input-image")
    assert history(page) == captions
    assert page.get_attribute("#history li:nth-child(2)", "class") == "input"
    assert page.input_value("#prompt") == "make it night"
    no_broken_images(page)

    # Copy as curl, run it: the same job through POST /v2/job.
    page.click("#copy-curl")
    command = page.evaluate("navigator.clipboard.readText()")
    assert command == page.text_content("#snippet")
    name = re.search(r"input=@([\w.-]+)", command)[1]
    (tmp_path / name).write_bytes(bytes_at(page, "#input-image"))
    done = subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    output = Image.open(tmp_path / "kontext-edit.jpg")
    assert (output.format, output.size) == ("JPEG", (512, 576))

    # An edit from the earlier step replaces the steps after it.
    page.fill("#prompt", "make it autumn")
    run_edit(page, 3)
    assert history(page)[2].startswith("#2 make it autumn")


def test_progress_and_cancel(serve, tiny_engine, tmp_path, open_page):
    engine = HeldEngine(tiny_engine)
    live = serve(engine=engine, results_dir=tmp_path / "results", shutdown_grace_seconds=0)
    page = open_page(live.url)
    start_chain(page, scene_png(tmp_path / "scene.png"), prompt="make it rain", width=512,
                height=512, steps=3)

    # Progress from the job's events: held at step 1 of 3, then the final 3 of 3.
    engine.release.clear()
    page.click("#run")
    page.wait_for_function("document.getElementById('status').textContent"
                           ".startsWith('Step 1 of 3')")
    assert page.is_disabled("#run") and page.is_enabled("#cancel")
    engine.release.set()
    run_edit(page, 2, submit=lambda page: None)
    bars = page.evaluate("window.bars")
    assert bars[0] == "1/3" and bars[-1] == "3/3", bars
    assert any(re.fullmatch(r"Step 1 of 3( — about \d+ s left)?", text)
               for text in page.evaluate("window.statuses"))

    # Cancel a running job: DELETE, the page says so, the engine stops at its next step.
    engine.release.clear()
    engine.steps_after_hold.clear()
    page.fill("#field-steps", "4")
    with page.expect_response(lambda reply: reply.url.endswith("/v2/job/async")) as posted:
        page.click("#run")
    job_id = posted.value.json()["id"]
    page.wait_for_function("document.getElementById('status').textContent"
                           ".startsWith('Step 1 of 4')")
    page.click("#cancel")
    page.wait_for_function("document.getElementById('status').textContent === 'Cancelled'")
    engine.release.set()
    page.wait_for_selector("#run:enabled")
    assert page.is_hidden("#progress") and page.is_hidden("#error")
    assert len(history(page)) == 2
    job = httpx2.get(f"{live.url}/v2/job/async/{job_id}/job.json").json()
    assert (job["state"]["current"], job["error"]) == ("failed", "cancelled")
    # The worker is free: the next edit runs, and the cancelled job ran no step past the hold.
    page.fill("#field-steps", "1")
    run_edit(page, 2)
    assert engine.steps_after_hold == []
    assert httpx2.get(f"{live.url}/v2/job/async/{job_id}/output").json() == []


def test_phone_layout(serve, tiny_engine, tmp_path, open_page):
    live = serve(engine=tiny_engine, results_dir=tmp_path / "results", shutdown_grace_seconds=0)
    page = open_page(live.url, viewport=PHONE)
    start_chain(page, scene_png(tmp_path / "scene.png"), prompt="make it a watercolor painting",
                width=512, height=512, steps=1)
    run_edit(page, 2)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    boxes = {name: page.locator(name).bounding_box() for name in ("#stage", "#controls",
                                                                  "#history-area")}
    # One column, the picture first; nothing wider than the screen.
    assert boxes["#stage"]["y"] + boxes["#stage"]["height"] <= boxes["#controls"]["y"]
    assert boxes["#controls"]["y"] < boxes["#history-area"]["y"]
    for box in boxes.values():
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    frame = page.locator("#frame").bounding_box()
    assert frame["width"] <= PHONE["width"] and frame["height"] > 100
    page.evaluate("window.scrollTo(0, 0)")
    save_screenshot(page, "playground-mobile.png")


def run_js_snippet(page, folder: Path, url: str) -> None:
    """Copy as JS, run it with node and the official client: it writes the edited image."""
    require_js_client()
    page.click("#copy-js")
    script = page.text_content("#snippet")
    assert f'baseUrl: "{url}/v2"' in script and "process.env.KONTEXT_TOKEN" in script
    (folder / "node_modules").symlink_to(JS_DIR / "node_modules")
    (folder / "edit.mjs").write_text(script)
    (folder / "dropped.png").write_bytes(bytes_at(page, "#input-image"))
    done = subprocess.run(["node", "edit.mjs"], cwd=folder, capture_output=True, text=True,
                          timeout=60, check=False,
                          env={**os.environ, "KONTEXT_TOKEN": "s3cret-token-0f1e"})
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"seed \d+\n", done.stdout)
    assert Image.open(folder / "kontext-edit.png").size == (512, 512)


@pytest.mark.js  # also runs the copied JS through node
def test_token_drop_and_server_errors(serve, tmp_path, open_page):
    live = serve(engine=FakeEngine(), results_dir=tmp_path, tokens=["s3cret-token-0f1e"])
    page = open_page(live.url)
    assert page.is_visible("#token-row")
    # Drop the image on the drop zone, as a user dragging a file would.
    scene = list(scene_png(tmp_path / "scene.png").read_bytes())
    dropped = page.evaluate_handle("""bytes => { const transfer = new DataTransfer();
        transfer.items.add(new File([new Uint8Array(bytes)], "dropped.png",
                                    {type: "image/png"}));
        return transfer; }""", scene)
    page.dispatch_event("#drop", "drop", {"dataTransfer": dropped})
    page.wait_for_selector("#input-image")
    assert page.text_content("#inputs") == "dropped.png (640 × 480)"
    for name, value in (("width", 512), ("height", 512), ("steps", 2)):
        page.fill(f"#field-{name}", str(value))
    page.fill("#prompt", "make it night")
    page.click("#run")
    page.wait_for_selector("#error:not([hidden])")
    assert "needs a bearer token" in page.text_content("#error")
    page.fill("#token", "s3cret-token-0f1e")
    page.select_option("#format", "png")
    run_edit(page, 2)
    assert page.is_hidden("#error")
    with page.expect_download() as download:
        page.click("#download")
    saved = Image.open(download.value.path())
    assert (saved.format, saved.size) == ("PNG", (512, 512))
    assert re.fullmatch(r"kontext-1-\d+\.png", download.value.suggested_filename)
    # The curl command reads the token from $KONTEXT_TOKEN, never from the page.
    page.click("#copy-curl")
    assert '-H "Authorization: Bearer $KONTEXT_TOKEN"' in page.text_content("#snippet")
    assert "s3cret-token-0f1e" not in page.text_content("#snippet")
    run_js_snippet(page, tmp_path, live.url)
    # A value the server refuses: its message, readable.
    page.fill("#field-width", "1001")
    page.click("#run")
    page.wait_for_selector("#error:not([hidden])")
    assert re.fullmatch(r"400: config\.width: must be a multiple of (16|32), got 1001",
                        page.text_content("#error"))
    no_broken_images(page)


def test_pro_and_max_when_the_server_can_run_them(serve, tmp_path, open_page):
    live = serve(engine=FakeEngine(), results_dir=tmp_path, fallback="local")
    page = open_page(live.url)
    assert page.locator("#job-type option").count() == 5
    assert page.is_hidden("#job-type-note")
    start_chain(page, scene_png(tmp_path / "scene.png"), prompt="make it a postcard")
    page.select_option("#job-type", "inference.flux-kontext.pro.img2img.v2")
    # Their own fields, with the limits of the wire models; none of [dev]'s.
    assert page.get_attribute("#field-safety_tolerance", "max") == "2"
    assert page.is_hidden("#field-width") or page.locator("#field-width").count() == 0
    page.fill("#field-aspect_ratio", "3:2")
    page.fill("#field-safety_tolerance", "1")
    page.check("#field-prompt_upsampling")
    page.fill("#field-seed", "9007199254740993")  # past 2^53: sent exactly
    page.click("#copy-curl")
    assert ('"config":{"prompt":"make it a postcard","aspect_ratio":"3:2",'
            '"safety_tolerance":1,"prompt_upsampling":true,"seed":9007199254740993}}'
            in page.text_content("#snippet"))
    run_edit(page, 2)
    # Run on the local [dev] model at the preferred size nearest 3:2.
    assert image_at(page, "#result-image").size == (1248, 832)
    assert "seed 9007199254740993" in history(page)[1]

    # Text to image: no input is sent; the result joins the chain.
    page.click("#edit-result")
    page.select_option("#job-type", "inference.flux-kontext.max.txt2img.v2")
    assert page.is_hidden("#drop") and page.is_visible("#no-inputs")
    assert page.get_attribute("#field-safety_tolerance", "max") == "6"
    assert page.input_value("#field-aspect_ratio") == "1:1"
    page.fill("#prompt", "a lighthouse at dusk")
    run_edit(page, 3)
    assert image_at(page, "#result-image").size == (1024, 1024)


def input_captions(page) -> list[str]:
    return page.locator("#inputs .input-caption").all_inner_texts()


def sent_sizes(engine: FakeEngine) -> list[tuple[int, int]]:
    request = engine.requests[-1]
    return [request.image.size, *(image.size for image in request.references)]


def test_two_images_reordered_and_kept_across_a_reload(serve, tmp_path, open_page):
    engine = FakeEngine()
    live = serve(engine=engine, results_dir=tmp_path, fallback="local")
    page = open_page(live.url)
    assert page.is_visible("#ref-drop") and page.is_hidden("#field-reference_method")
    red = tmp_path / "red.png"
    Image.new("RGB", (300, 400), (210, 40, 30)).save(red)
    # 1. Two images picked at once: the first is edited, the other becomes a reference.
    page.set_input_files("#file", [str(scene_png(tmp_path / "scene.png")), str(red)])
    page.wait_for_function("document.querySelectorAll('#inputs li').length === 2")
    assert input_captions(page) == ["1 · edited: scene.png (640 × 480)",
                                    "2 · reference: red.png (300 × 400)"]
    assert page.is_visible("#field-reference_method")
    page.fill("#prompt", "put the red box in the sky")
    for name, value in (("width", 512), ("height", 512), ("steps", 1), ("seed", 3)):
        page.fill(f"#field-{name}", str(value))
    page.select_option("#field-reference_method", "stitch")
    run_edit(page, 2)
    assert sent_sizes(engine) == [(640, 480), (300, 400)]
    assert engine.requests[-1].reference_method == "stitch"

    # 2. Reorder: the reference goes first. The order survives a reload.
    page.click("#inputs li:nth-child(2) button[aria-label='Move input 2 earlier']")
    page.wait_for_function("document.querySelector('#inputs li').dataset.key !== 'chain'")
    page.reload()
    page.wait_for_selector("body[data-ready]")
    page.wait_for_function("document.querySelectorAll('#inputs li').length === 2")
    assert input_captions(page) == ["1 · edited: red.png (300 × 400)",
                                    "2 · reference: scene.png (640 × 480)"]
    page.click("#copy-curl")
    assert re.findall(r"input=@([\w.-]+)", page.text_content("#snippet")) == [
        "red.png", "scene.png"]
    assert '"reference_method":"stitch"' in page.text_content("#snippet")
    run_edit(page, 2)
    assert sent_sizes(engine) == [(300, 400), (640, 480)]
    no_broken_images(page)

    # 3. Remove the reference: one input again, sent without reference_method.
    page.click("#inputs button[aria-label='Remove input 1']")
    page.wait_for_function("document.querySelectorAll('#inputs li').length === 1")
    assert page.text_content("#inputs") == "scene.png (640 × 480)"
    assert page.is_hidden("#field-reference_method")
    page.click("#copy-curl")
    assert "reference_method" not in page.text_content("#snippet")
    # A model that takes one image offers no references.
    page.set_input_files("#ref-file", str(red))
    page.wait_for_function("document.querySelectorAll('#inputs li').length === 2")
    page.select_option("#job-type", "inference.flux-kontext.pro.img2img.v2")
    page.wait_for_function("document.querySelectorAll('#inputs li').length === 1")
    assert page.is_hidden("#ref-drop") and page.text_content("#inputs") == "scene.png (640 × 480)"


def exif_rotated_jpeg(path: Path, stored=(2400, 1800)) -> Path:
    """A photo stored landscape with EXIF orientation 6 (shown portrait), as phones write."""
    image = Image.new("RGB", stored, (90, 140, 200))
    ImageDraw.Draw(image).rectangle([0, 0, stored[0] // 4, stored[1] // 4], fill=(250, 60, 40))
    exif = Image.Exif()
    exif[0x0112] = 6
    image.save(path, "JPEG", quality=85, exif=exif)
    return path


def test_a_large_photo_is_shrunk_and_its_shape_is_the_output_size(serve, tmp_path, open_page):
    engine = FakeEngine()
    live = serve(engine=engine, results_dir=tmp_path)
    page = open_page(live.url)
    start_chain(page, exif_rotated_jpeg(tmp_path / "photo.jpg"), prompt="add a hat", steps=1)
    # Shown upright (1800 x 2400), over the 1920 px the server takes: shrunk, said in a line.
    assert page.text_content("#status") == (
        "photo.jpg: 1800 × 2400 is over the 1920 px a side this server takes; it is sent as "
        "1440 × 1920 (same shape).")
    assert page.text_content("#inputs") == "photo-1440x1920.jpg (1440 × 1920)"
    # No size typed: the page says what it will ask for, the photo's 3:4 at about 1 MP.
    assert page.text_content("#size-note").startswith("Output: 784 × 1040 — the input's shape")
    run_edit(page, 2)
    request = engine.requests[-1]
    assert request.image.size == (1440, 1920) and (request.width, request.height) == (784, 1040)
    # Copy as curl names the shrunk copy (the original would get a 400) and says so; with
    # that copy saved (what the history's Download link holds), it runs as written.
    page.click("#copy-curl")
    command = page.text_content("#snippet")
    assert '"width":784,"height":1040' in command
    assert re.findall(r"input=@([\w.-]+)", command) == ["photo-1440x1920.jpg"]
    assert "# photo.jpg (1800 × 2400) is over this server's limit" in command
    (tmp_path / "photo-1440x1920.jpg").write_bytes(bytes_at(page, "#input-image"))
    done = subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert engine.requests[-1].image.size == (1440, 1920)
    # Typed sizes win, and the note follows them.
    page.fill("#field-width", "512")
    page.fill("#field-height", "640")
    assert page.text_content("#size-note") == "Output: 512 × 640"


def test_the_page_picks_the_size_the_command_line_clients_pick(serve, tmp_path, open_page):
    from server.cli.photos import output_size

    page = open_page(serve(engine=FakeEngine(), results_dir=tmp_path).url)
    shapes = [(4032, 3024), (3024, 4032), (1920, 1080), (1000, 1000), (640, 480), (6000, 1000),
              (1000, 6000), (2048, 1536), (1170, 2532), (4000, 3000), (801, 600)]
    rule = page.evaluate("fetch('/playground/config.json').then(r => r.json())")[
        "job_types"][0]["size_from_input"]
    in_page = page.evaluate("""async ([shapes, rule]) => {
        const { sizeForShape } = await import('/static/size.js');
        return shapes.map(([w, h]) => { const s = sizeForShape(w, h, rule);
                                        return [s.width, s.height]; }); }""", [shapes, rule])
    assert [tuple(size) for size in in_page] == [output_size(shape) for shape in shapes]


def test_the_model_picker_offers_klein_beside_kontext(serve, kontext_and_klein, tmp_path,
                                                      open_page):
    live = serve(kontext_and_klein, results_dir=tmp_path)
    page = open_page(live.url)
    labels = page.locator("#job-type option").all_inner_texts()
    assert labels[0] == "FLUX.1 Kontext [dev] — edit"
    assert "FLUX.2 [klein] 4B — text to image" in labels
    assert not any("9B" in label for label in labels)  # not served: not offered
    page.select_option("#job-type", "inference.flux-2.klein.4b.txt2img.v1")
    assert page.is_visible("#no-inputs")
    assert page.input_value("#field-steps") == "4"
    assert page.locator("#field-guidance_scale").count() == 0
    page.fill("#prompt", "a lighthouse at dusk")
    page.fill("#field-width", "128")
    page.fill("#field-height", "96")
    run_edit(page, 1)
    assert image_at(page, "#result-image").size == (128, 96)
