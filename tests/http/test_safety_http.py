"""The content filter's output checkpoint and the marks, through the real HTTP API, with the
fake engine (whose output colour a test chooses through the seed) and the tiny classifier
loaded from a folder through `safety_model`, exactly as a real one is: red images are
flagged (helpers/tiny_classifier.py). The tiny real engine's outputs are noise whose colour
no test controls, so the output checkpoint is proven here; tests/e2e/test_safety_e2e.py covers
the prompt and input checkpoints on the real pipeline."""

from __future__ import annotations

import hashlib
import json
import logging

import httpx2
import pytest
from helpers.async_api import get, submit, wait_state
from helpers.c2pa_certs import write_test_chain
from helpers.fake_engine import FakeEngine
from helpers.fake_upstream import hosted_output, image_file
from helpers.http import PRO_IMG, image_of, job_of, multipart_parts, post_job
from helpers.images import image_bytes
from helpers.js_client import run_js_job
from helpers.marks import assert_marks, exiftool
from helpers.tiny_classifier import BLUE, RED

from server.jobs.screening import TOLERANCE_THRESHOLDS, job_threshold
from server.media.c2pa_signing import load_c2pa_credentials, sign_c2pa
from server.media.provenance import Disclosure
from server.wire.hosted import HostedImg2ImgConfig

PROMPT = "make the sky stormy"
BLUE_PNG = image_bytes(320, 256, color=BLUE)
RED_PNG = image_bytes(320, 256, color=RED)
MULTIPART_PNG = "multipart/form-data; image/png"
OUTPUT_REFUSED = "output: refused by the content filter (category nsfw)"
SERVER_TOKEN = "srv-upstream-token-55e1"


def seed_for(red: bool, prompt: str = PROMPT) -> int:
    """A seed whose fake-engine output is red (flagged) or clearly not: its red channel is
    the first byte of sha256(seed|prompt)."""
    def red_of(seed: int) -> int:
        return hashlib.sha256(f"{seed}|{prompt}".encode()).digest()[0]
    return next(seed for seed in range(10_000) if (red_of(seed) > 200 if red
                                                   else red_of(seed) < 50))


def live_metrics(live) -> str:
    return httpx2.get(f"{live.url}/metrics", timeout=10).text


def live_ready(live) -> dict:
    return httpx2.get(f"{live.url}/readyz", timeout=10).json()


def config(red_output: bool, **extra) -> dict:
    return {"prompt": PROMPT, "width": 512, "height": 512, "steps": 1,
            "seed": seed_for(red_output), **extra}


@pytest.fixture
def filtered(serve, tiny_classifier_dir):
    """Factory: a server whose content filter runs the tiny classifier."""
    def start(policy: str = "block", engine=None, **settings):
        return serve(engine=engine, safety=policy, safety_model=str(tiny_classifier_dir),
                     **settings)
    return start


def test_a_refused_output_is_403_and_never_returned_or_stored(filtered, tmp_path):
    live = filtered(results_dir=tmp_path)
    answer = post_job(live.url, config(True), BLUE_PNG, MULTIPART_PNG)
    assert answer.status_code == 403
    parts = multipart_parts(answer)
    assert set(parts) == {"job"}  # no output part
    job = json.loads(parts["job"][1])
    assert (job["state"]["current"], job["error"]) == ("failed", OUTPUT_REFUSED)
    raw = post_job(live.url, config(True), BLUE_PNG, "image/jpeg")
    assert raw.status_code == 403 and raw.headers["content-type"] == "application/json"
    assert raw.json()["error"] == OUTPUT_REFUSED
    # Async: the job fails, and no output file is ever written.
    accepted = submit(live.url, config(True), BLUE_PNG)
    assert accepted.status_code == 201
    job_id = accepted.json()["id"]
    wait_state(live.url, job_id, "failed")
    assert get(live.url, job_id, "job.json").json()["error"] == OUTPUT_REFUSED
    assert get(live.url, job_id, "output").json() == []
    assert get(live.url, job_id, "output/output.jpg").status_code == 404
    assert [p.name for p in (tmp_path / job_id).iterdir()] == ["job.json"]
    metrics = live_metrics(live)
    assert ('kontext_content_flags_total{category="nsfw",checkpoint="output",policy="block"} '
            "3.0") in metrics
    assert 'kontext_http_errors_total{reason="output_refused",status="403"} 2.0' in metrics


def test_flag_serves_a_flagged_output_marked_and_counted(filtered, tmp_path):
    live = filtered("flag")
    answer = post_job(live.url, config(True), BLUE_PNG, MULTIPART_PNG)
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-kontext-moderation"] == "output=nsfw"
    job = job_of(answer)
    assert job["moderation"] == {"policy": "flag", "flagged": {"output": ["nsfw"]}}
    assert set(job["metrics"]["safety_seconds"]) == {"prompt", "input", "output"}
    # Rounded to 0.1 ms: a quick check (the prompt's word list) can read 0.0, as one did once
    # in a lowest-versions run; the classifier's time on the output is the one asserted.
    seconds = job["metrics"]["safety_seconds"]
    assert all(value >= 0 for value in seconds.values()) and seconds["output"] > 0
    output = multipart_parts(answer)["output"][1]
    assert_marks(exiftool(tmp_path, output)[0], "png", edited=True, prompt=None)
    clean = post_job(live.url, config(False), BLUE_PNG, MULTIPART_PNG)
    assert clean.status_code == 200 and "x-kontext-moderation" not in clean.headers
    assert job_of(clean)["moderation"] == {"policy": "flag", "flagged": {}}
    assert ('kontext_content_flags_total{category="nsfw",checkpoint="output",policy="flag"} '
            "1.0") in live_metrics(live)


def test_the_js_client_reads_an_output_refusal_and_does_not_retry(filtered, tmp_path):
    engine = FakeEngine()
    live = filtered(engine=engine)
    image = tmp_path / "blue.png"
    image.write_bytes(BLUE_PNG)
    outcome = run_js_job(live.v2, "inference.flux-fast.dev-kontext.img2img.v1", config(True),
                         inputs=[image], accept="image/png")
    assert outcome["ok"] is False and outcome["errorClass"] == "ProdiaUserError"
    assert OUTPUT_REFUSED in outcome["message"] and "(id: " in outcome["message"]
    assert len(engine.requests) == 1  # 403 is final for the client: the job ran once


def test_an_input_refusal_stops_the_job_it_overlaps(filtered):
    engine = FakeEngine()
    engine.hold()  # a job that starts waits before its first step: the check ends first
    live = filtered(engine=engine)
    answer = post_job(live.url, config(False), RED_PNG, "application/json")
    assert (answer.status_code, answer.json()["error"]) == (
        400, "input: refused by the content filter (category nsfw)")
    # Whatever reached the engine was stopped there, before the answer went out.
    assert engine.requests == engine.cancelled
    engine.release()
    assert post_job(live.url, config(False), BLUE_PNG, "image/png").status_code == 200


def test_no_filter_or_no_marks_on_real_weights_is_said_loudly(serve, caplog):
    with caplog.at_level(logging.WARNING, logger="server.wiring"):
        live = serve(disclosure="off")
    said = caplog.text
    assert "NO CONTENT FILTER" in said and "§2(e)(i)" in said and "reviewed" in said
    assert "DISCLOSURE MARKS ARE OFF" in said and "§2(e)(ii)" in said
    ready = live_ready(live)
    assert ready["safety"]["policy"] == "off" and "§2(e)(i)" in ready["safety"]["warning"]
    assert "§2(e)(ii)" in ready["disclosure"]["warning"]
    assert ready["disclosure"]["marks"] == "off"
    output = post_job(live.url, config(False), BLUE_PNG, "image/png").content
    assert b"http://ns.adobe.com/xap/1.0/" not in output and b"iptc" not in output.lower()
    assert not image_of(output).getexif()
    # The demo checkpoint is not real weights: nothing to warn about there.
    demo = live_ready(serve(engine=FakeEngine(demo=True)))
    assert "warning" not in demo["safety"] and demo["disclosure"]["marks"] == "on"


# --- [pro]/[max]: forwarded upstream, or on [dev] with --fallback local --------------------


@pytest.fixture
def forwarding(filtered, fake, monkeypatch):
    """Factory: a filtered server forwarding [pro]/[max] to the fake hosted API."""
    fake.reset()
    monkeypatch.setenv("TEST_HOSTED_TOKEN", SERVER_TOKEN)

    def start(policy: str = "block", **settings):
        return filtered(policy, upstream="hosted", hosted_url=f"{fake.url()}/v2",
                        hosted_token_env="TEST_HOSTED_TOKEN", upstream_ca_file=fake.ca_file,
                        upstream_retry_budget=0, **settings)
    return start


@pytest.mark.parametrize(("prompt", "image", "error"), [
    ("nudify her please", BLUE_PNG, "prompt: refused by the content filter (category ncii)"),
    (PROMPT, RED_PNG, "input: refused by the content filter (category nsfw)"),
])
def test_a_forwarded_job_is_screened_before_anything_is_sent(forwarding, fake, prompt, image,
                                                              error):
    answer = post_job(forwarding().url, {"prompt": prompt}, image, "application/json",
                      job_type=PRO_IMG)
    assert (answer.status_code, answer.json()["error"]) == (400, error)
    assert fake.requests("hosted") == []


def test_a_forwarded_output_is_screened_then_marked(forwarding, fake, tmp_path):
    live = forwarding()
    fake.then("hosted", hosted_output(lambda fmt: image_file(fmt, (300, 300), RED)))
    refused = post_job(live.url, {"prompt": PROMPT}, BLUE_PNG, MULTIPART_PNG, job_type=PRO_IMG)
    assert (refused.status_code, job_of(refused)["error"]) == (403, OUTPUT_REFUSED)
    assert set(multipart_parts(refused)) == {"job"}
    served = post_job(live.url, {"prompt": PROMPT}, BLUE_PNG, "image/webp", job_type=PRO_IMG)
    assert served.status_code == 200, served.text
    assert_marks(exiftool(tmp_path, served.content)[0], "webp", edited=True, prompt=None,
                 model="FLUX.1 Kontext [pro]")


def test_an_upstream_c2pa_manifest_reaches_the_client_intact(forwarding, fake, tmp_path):
    chain = write_test_chain(tmp_path / "upstream-ca")
    credentials = load_c2pa_credentials(chain.cert_file, chain.key_file)
    signed = sign_c2pa(image_file("jpeg", (300, 300)), "image/jpeg",
                       Disclosure(edited=True, model="upstream"), credentials)
    fake.then("hosted", hosted_output(lambda fmt: signed))
    answer = post_job(forwarding("flag").url, {"prompt": PROMPT}, BLUE_PNG, "image/jpeg",
                      job_type=PRO_IMG)
    assert answer.status_code == 200, answer.text
    assert answer.content == signed  # not a byte changed: its signature still holds


def test_safety_tolerance_maps_onto_the_threshold_under_the_operators_cap(filtered):
    assert [job_threshold(HostedImg2ImgConfig(prompt="abc", safety_tolerance=t), 0.85)
            for t in range(3)] == [0.30, 0.50, 0.70]
    assert job_threshold(HostedImg2ImgConfig(prompt="abc"), 0.6) == 0.6  # default 2 → 0.70
    assert TOLERANCE_THRESHOLDS[6] == 0.99
    # The tiny classifier scores red at 0.9965: under this operator's 0.999, flagged under
    # every tolerance of the table.
    live = filtered(fallback="local", safety_threshold=0.999)
    dev = post_job(live.url, config(False), RED_PNG, "application/json")
    assert dev.status_code == 200, dev.text
    assert dev.json()["moderation"]["flagged"] == {}
    pro = post_job(live.url, {"prompt": PROMPT, "safety_tolerance": 2}, RED_PNG,
                   "application/json", job_type=PRO_IMG)
    assert (pro.status_code, pro.json()["error"]) == (
        400, "input: refused by the content filter (category nsfw)")
    blue = post_job(live.url, {"prompt": PROMPT, "seed": seed_for(False)}, BLUE_PNG,
                    "application/json", job_type=PRO_IMG)
    assert blue.json()["served_by"]["not_applied"] == ["prompt_upsampling"]
