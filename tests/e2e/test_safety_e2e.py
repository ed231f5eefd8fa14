"""Content safety and AI disclosure end to end: real servers around the tiny real engine, the
tiny classifier loaded from a folder through `safety_model` exactly as a real one is (red
images are flagged: helpers/tiny_classifier.py), the official JS client, `kontext batch
--local`, and the marks read back with exiftool and c2pa's Reader. The output checkpoint,
which needs an output whose colour a test controls, is proven in tests/http/test_safety_http.py."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import httpx2
import pytest
from helpers.async_api import get, submit, wait_state
from helpers.c2pa_certs import CertChain, write_test_chain
from helpers.http import job_of, multipart_parts, post_job
from helpers.images import image_bytes
from helpers.js_client import run_js_job
from helpers.live_server import LiveServer, start_server
from helpers.marks import actions_of, assert_marks, exiftool, read_manifest
from helpers.servers import make_settings
from helpers.tiny_classifier import BLUE, RED

from server.api.app import create_app
from server.cli.main import main
from server.media.provenance import EDITED
from server.wiring import SafeguardsError

ROOT = Path(__file__).resolve().parents[2]
DEV = "inference.flux-fast.dev-kontext.img2img.v1"
BLUE_PNG = image_bytes(320, 256, color=BLUE)
RED_PNG = image_bytes(320, 256, color=RED)
INPUT_REFUSED = "input: refused by the content filter (category nsfw)"
TERMS = "# the operator's own list\n[style-policy]\n\\bclaymation\\b\n"


def config(prompt: str = "make the sky stormy", **extra) -> dict:
    return {"prompt": prompt, "width": 512, "height": 512, "steps": 1, "seed": 7, **extra}


def refusal(live: LiveServer, prompt: str, image: bytes = BLUE_PNG, **extra) -> tuple:
    answer = post_job(live.url, config(prompt, **extra), image, "application/json")
    return answer.status_code, answer.json().get("error")


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> CertChain:
    return write_test_chain(tmp_path_factory.mktemp("c2pa"))


@pytest.fixture(scope="module")
def servers(tiny_engine, tiny_classifier_dir, chain, tmp_path_factory):
    """`block` with an operator term file, `flag`, and `off` with C2PA signing: one
    tiny engine behind them all."""
    terms = tmp_path_factory.mktemp("terms") / "terms.txt"
    terms.write_text(TERMS)
    model = {"safety_model": str(tiny_classifier_dir)}
    made = {
        "block": make_settings(safety="block", safety_terms_file=terms, **model,
                               results_dir=tmp_path_factory.mktemp("results")),
        "flag": make_settings(safety="flag", **model),
        "off": make_settings(c2pa_cert=chain.cert_file, c2pa_key=chain.key_file),
    }
    live = {name: start_server(create_app(settings, tiny_engine))
            for name, settings in made.items()}
    yield live
    for server in live.values():
        server.stop()


@pytest.mark.parametrize(("prompt", "category"), [
    ("LOLI in a park", "csam"),
    ("lоlі in a park", "csam"),          # Cyrillic о and і
    ("ｌｏｌｉ in a park", "csam"),        # fullwidth letters
    ("lo\u200bli in a park", "csam"),    # a zero-width space inside
    ("Please NUDIFY her", "ncii"),
    ("make her naked", "ncii"),
])
def test_listed_prompts_are_refused_with_400_naming_only_the_category(servers, prompt,
                                                                      category):
    assert refusal(servers["block"], prompt) == (
        400, f"prompt: refused by the content filter (category {category})")


def test_prompts_off_the_list_pass_the_prompt_checkpoint(servers):
    # Near misses of the list. A red input makes the next checkpoint answer: proof that the
    # prompt itself passed.
    for prompt in ("a lollipop on the table", "a children's book illustration"):
        assert refusal(servers["block"], prompt, RED_PNG) == (400, INPUT_REFUSED)


def test_the_prompt_checkpoint_sees_the_style_preset_expanded(servers):
    # "claymation" is only in the craft-clay template, never in what the client typed.
    live = servers["block"]
    assert refusal(live, "make it look handmade", style_preset="craft-clay") == (
        400, "prompt: refused by the content filter (category style-policy)")
    assert refusal(live, "make it look handmade", RED_PNG) == (400, INPUT_REFUSED)


def test_async_prompt_refusal_is_a_400_before_the_job_exists(servers):
    answer = submit(servers["block"].url, config("make her naked"), BLUE_PNG)
    assert answer.status_code == 400
    assert answer.json()["error"] == "prompt: refused by the content filter (category ncii)"


def test_a_red_input_is_refused_and_nothing_is_returned_or_stored(servers):
    live = servers["block"]
    answer = post_job(live.url, config(), RED_PNG, "multipart/form-data; image/png")
    assert answer.status_code == 400
    assert set(multipart_parts(answer)) == {"job"}
    assert job_of(answer)["error"] == INPUT_REFUSED
    accepted = submit(live.url, config(), RED_PNG)
    assert accepted.status_code == 201  # the input is checked while the job waits and runs
    job_id = accepted.json()["id"]
    wait_state(live.url, job_id, "failed")
    assert get(live.url, job_id, "job.json").json()["error"] == INPUT_REFUSED
    assert get(live.url, job_id, "output").json() == []
    results = live.kontext.settings.results_dir / job_id
    assert [path.name for path in results.iterdir()] == ["job.json"]


def test_the_js_client_gets_a_readable_error(servers, tmp_path):
    red = tmp_path / "red.png"
    red.write_bytes(RED_PNG)
    outcome = run_js_job(servers["block"].v2, DEV, config(), inputs=[red], accept="image/png")
    assert outcome["ok"] is False and outcome["errorClass"] == "ProdiaUserError"
    assert INPUT_REFUSED in outcome["message"] and "(id: " in outcome["message"]


def test_flag_serves_the_job_marked_and_counted_with_the_filters_cost(servers):
    live = servers["flag"]
    answer = post_job(live.url, config(), RED_PNG, "multipart/form-data; image/png")
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-kontext-moderation"] == "input=nsfw"
    job = job_of(answer)
    assert job["moderation"]["policy"] == "flag"
    assert job["moderation"]["flagged"]["input"] == ["nsfw"]
    seconds = job["metrics"]["safety_seconds"]
    assert set(seconds) == {"prompt", "input", "output"} and min(seconds.values()) > 0
    metrics = httpx2.get(f"{live.url}/metrics", timeout=10).text
    assert ('kontext_content_flags_total{category="nsfw",checkpoint="input",policy="flag"} '
            "1.0") in metrics
    assert 'kontext_content_check_seconds_count{checkpoint="input"} 1.0' in metrics


def test_off_checks_nothing(servers):
    answer = post_job(servers["off"].url, config(), RED_PNG, "application/json")
    assert answer.status_code == 200, answer.text
    assert "moderation" not in answer.json()
    assert "safety_seconds" not in answer.json()["metrics"]


def test_readyz_says_what_the_filter_and_the_marks_do(servers):
    block = httpx2.get(f"{servers['block'].url}/readyz", timeout=10).json()
    assert block["safety"]["policy"] == "block"
    terms, classifier = block["safety"]["checks"]
    assert terms.startswith("terms:") and "style-policy" in terms
    assert classifier.startswith("image-classifier:") and "nsfw >= 0.85" in classifier
    assert block["disclosure"] == {"marks": "on", "c2pa": False, "include_prompt": False}
    off = httpx2.get(f"{servers['off'].url}/readyz", timeout=10).json()
    # The tiny checkpoint is demo mode: no licence warning, which real weights would get.
    assert off["safety"] == {"policy": "off", "checks": []}
    assert off["disclosure"]["c2pa"] is True


def test_demo_mode_filters_with_its_demo_classifier_and_says_so(tiny_engine, tmp_path):
    # The real classifier is not on disk (343 MB): demo mode writes a tiny one that flags
    # mostly-red images, so `--demo --safety block` runs and can be tried.
    settings = make_settings(safety="block", demo_dir=tmp_path / "tiny-checkpoint")
    live = start_server(create_app(settings, tiny_engine))
    try:
        ready = httpx2.get(f"{live.url}/readyz", timeout=10).json()["safety"]
        assert "demo classifier: flags mostly-red images" in ready["note"]
        assert str(tmp_path / "demo-classifier") in ready["checks"][1]
        assert refusal(live, "make the sky stormy", RED_PNG) == (400, INPUT_REFUSED)
        assert post_job(live.url, config(), BLUE_PNG, "image/png").status_code == 200
    finally:
        live.stop()


def test_the_test_chain_of_the_docs_is_accepted_and_a_self_signed_one_is_not(tmp_path):
    # docs/safety.md's openssl commands, run as written; the server's own startup check.
    from server.media.c2pa_signing import C2paSigningError, load_c2pa_credentials

    if shutil.which("openssl") is None:
        pytest.fail("openssl is not installed (Debian: apt-get install openssl)")
    docs = (ROOT / "docs" / "safety.md").read_text()
    block = next(b for b in re.findall(r"```bash\n(.*?)```", docs, re.S) if "openssl" in b)
    script = "\n".join(line for line in block.splitlines() if not line.startswith("kontext"))
    subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, check=True,
                   capture_output=True, timeout=60)
    assert load_c2pa_credentials(tmp_path / "chain.pem", tmp_path / "key.pem").alg == "es256"
    with pytest.raises(C2paSigningError, match=r"self-signed.*docs/safety\.md"):
        load_c2pa_credentials(tmp_path / "ca.pem", tmp_path / "ca-key.pem")


def test_every_output_form_carries_the_marks(servers, tiny_dir, tiny_classifier_dir,
                                             tmp_path):
    live = servers["block"]
    forms = {  # name: (bytes, format); JPEG comes from the async file below
        "png": (post_job(live.url, config(), BLUE_PNG, "image/png").content, "png"),
        "progressive": (post_job(live.url, config(progressive=True), BLUE_PNG,
                                 "image/jpeg").content, "jpeg")}
    multipart = post_job(live.url, config(), BLUE_PNG, "multipart/form-data; image/webp")
    forms["multipart"] = (multipart_parts(multipart)["output"][1], "webp")
    job_id = submit(live.url, config(), BLUE_PNG).json()["id"]
    wait_state(live.url, job_id, "processed")
    on_disk = live.kontext.settings.results_dir / job_id / "output.jpg"
    forms["async"] = (on_disk.read_bytes(), "jpeg")
    assert get(live.url, job_id, "output/output.jpg").content == forms["async"][0]
    forms["batch"] = (batch_output(tmp_path, tiny_dir, tiny_classifier_dir), "png")
    readings = exiftool(tmp_path, *(data for data, _ in forms.values()))
    for (name, (_, fmt)), tags in zip(forms.items(), readings, strict=True):
        assert tags.get("ExifTool:Validate") == "OK", name
        assert_marks(tags, fmt, edited=True, prompt=None)


def batch_output(tmp_path: Path, tiny_dir: Path, classifier: Path) -> bytes:
    """`kontext batch --local` under `--safety block`: the red image's row is refused, the
    blue one's output is written; that output's bytes."""
    images, out = tmp_path / "photos", tmp_path / "edited"
    images.mkdir()
    (images / "blue.png").write_bytes(BLUE_PNG)
    (images / "red.png").write_bytes(RED_PNG)
    status = main(["batch", "--images", str(images), "--prompt", "make it blue", "--out",
                   str(out), "--local", "--demo", "--demo-dir", str(tiny_dir), "--width", "512",
                   "--height", "512", "--steps", "1", "--safety", "block", "--safety-model",
                   str(classifier), "--log-level", "warning"])
    assert status == 1  # a row failed
    rows = {Path(row["image"]).name: row for row in map(
        json.loads, (out / "report.jsonl").read_text().splitlines())}
    assert rows["red.png"]["status"] == "failed"
    assert rows["red.png"]["error"] == "image: refused by the content filter (category nsfw)"
    assert rows["blue.png"]["status"] == "ok"
    assert not (out / "red.png").exists()
    return (out / "blue.png").read_bytes()


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_c2pa_manifest_records_the_edit_and_its_input(servers, chain, fmt):
    answer = post_job(servers["off"].url, config(), BLUE_PNG, f"image/{fmt}")
    assert answer.status_code == 200, answer.text
    store, manifest = read_manifest(answer.content, f"image/{fmt}", chain)
    assert store["validation_state"] == "Trusted"
    assert [a["action"] for a in actions_of(manifest)] == ["c2pa.opened", "c2pa.edited"]
    assert actions_of(manifest)[1]["digitalSourceType"] == EDITED
    (ingredient,) = manifest["ingredients"]
    assert (ingredient["relationship"], ingredient["format"]) == ("parentOf", "image/png")


def test_a_filter_or_signer_that_cannot_work_stops_the_server(tiny_engine, chain, tmp_path):
    missing = make_settings(safety="block", safety_model=str(tmp_path / "no-classifier"))
    with pytest.raises(SafeguardsError, match=r"weights/README\.md"):
        create_app(missing, tiny_engine)
    tls = make_settings(c2pa_cert=chain.tls_cert_file, c2pa_key=chain.key_file)
    with pytest.raises(SafeguardsError, match="certificate is invalid"):
        create_app(tls, tiny_engine)
