"""[pro]/[max] jobs forwarded to a hosted /v2/job API: a real HTTPS fake upstream on loopback."""

from __future__ import annotations

import json
import logging
import threading

import httpx2
import pytest
from helpers.async_api import wait_until
from helpers.fake_engine import FakeEngine
from helpers.fake_upstream import (
    Truncated,
    hang,
    hosted_job,
    image_file,
    multipart,
    reply,
)
from helpers.http import (
    MAX_IMG,
    MAX_TXT,
    PRO_IMG,
    PRO_TXT,
    image_of,
    job_of,
    multipart_parts,
    post_images,
    post_job,
)
from helpers.images import gradient_png, image_bytes
from helpers.js_client import run_js_job

SERVER_TOKEN = "srv-upstream-token-93bd1e"
CLIENT_TOKEN = "client-token-5521"
MULTIPART_PNG = "multipart/form-data; image/png"


@pytest.fixture
def hosted(serve, fake, monkeypatch):
    """Factory: our server forwarding to the fake with the server's token."""
    fake.reset()
    monkeypatch.setenv("TEST_HOSTED_TOKEN", SERVER_TOKEN)

    def start(engine=None, **settings):
        settings = {"upstream": "hosted", "hosted_url": f"{fake.url()}/v2",
                    "hosted_token_env": "TEST_HOSTED_TOKEN", "upstream_ca_file": fake.ca_file,
                    "tokens": [CLIENT_TOKEN], "upstream_retry_budget": 0, **settings}
        return serve(engine=engine, **settings)
    return start


def send(live, job_type=PRO_IMG, config=None, image=b"default", accept=MULTIPART_PNG,
         params=None) -> httpx2.Response:
    image = gradient_png(640, 480) if image == b"default" else image
    return post_job(live.url, config or {"prompt": "make it blue"}, image, accept=accept,
                    job_type=job_type, token=CLIENT_TOKEN, params=params)


def test_img2img_round_trip_with_server_credentials(hosted, fake):
    live = hosted()
    image = gradient_png(640, 480)
    answer = send(live, image=image, config={"prompt": "make it blue", "seed": 7},
                  params={"price": "true"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-kontext-served-by"] == "upstream-hosted"
    parts = multipart_parts(answer)
    job = json.loads(parts["job"][1])
    assert job["state"]["current"] == "completed"
    assert job["served_by"] == {"backend": "upstream-hosted", "host": "localhost",
                                "job_id": "upstream-job-1"}
    assert job["metrics"] == {"elapsed": 2.5, "ips": 11.0}
    assert job["price"] == {"product": PRO_IMG, "dollars": 0.04}
    assert job["config"] == {"prompt": "make it blue", "seed": 7, "prompt_upsampling": False,
                             "safety_tolerance": 2}
    assert image_of(parts["output"][1]).format == "PNG"
    (seen,) = fake.requests("hosted")
    assert seen.headers["authorization"] == f"Bearer {SERVER_TOKEN}"
    assert seen.headers["accept"] == MULTIPART_PNG
    assert seen.form["input"] == image
    assert json.loads(seen.form["job"]) == {"type": PRO_IMG, "config": job["config"]}
    assert CLIENT_TOKEN.encode() not in seen.body + json.dumps(seen.headers).encode()


def test_an_input_the_server_shrinks_is_forwarded_shrunk(hosted, fake):
    # --downscale-inputs: upstream gets what this server decided to edit, not the original.
    answer = send(hosted(downscale_inputs=True), image=image_bytes(3000, 2000, "JPEG"),
                  accept="application/json")
    assert answer.status_code == 200, answer.text
    (seen,) = fake.requests("hosted")
    sent = image_of(seen.form["input"])
    assert (sent.format, sent.size) == ("JPEG", (1920, 1280))


@pytest.mark.parametrize("job_type", [PRO_TXT, PRO_IMG, MAX_TXT, MAX_IMG])
def test_every_pro_max_type_is_forwarded(hosted, fake, job_type):
    image = b"default" if job_type.endswith("img2img.v2") else None
    answer = send(hosted(), job_type, image=image, accept="application/json")
    assert answer.status_code == 200, answer.text
    assert answer.json()["type"] == job_type
    assert json.loads(fake.requests("hosted")[0].form["job"])["type"] == job_type


def test_txt2img_json_converted_to_the_format_the_client_asked(hosted, fake):
    def jpeg_only(seen, fake_):
        job = json.dumps(hosted_job(seen)).encode()
        return multipart([("job", job, "job.json", "application/json"),
                          ("output", image_file("jpeg"), "output.jpg", "image/jpeg")])
    fake.then("hosted", jpeg_only)
    live = hosted()
    answer = send(live, MAX_TXT, {"prompt": "a red fox", "aspect_ratio": "16:9"}, image=None,
                  accept="image/webp")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "image/webp"
    assert image_of(answer.content).format == "WEBP"
    (seen,) = fake.requests("hosted")
    assert "input" not in seen.form
    config = json.loads(seen.form["job"])["config"]
    assert config["aspect_ratio"] == "16:9" and config["safety_tolerance"] == 4
    assert isinstance(config["seed"], int)


def test_an_output_part_without_a_filename_is_read_as_the_bytes_sent(hosted, fake):
    """Some servers send the `output` part with no filename; read as text, a PNG's bytes
    were re-encoded (not an image any more: 502). Read as bytes, the image is intact."""
    upstream_png = image_file("png", size=(80, 48), color=(200, 20, 120))

    def no_filename(seen, fake_):
        job = json.dumps(hosted_job(seen)).encode()
        return multipart([("job", job, "job.json", "application/json"),
                          ("output", upstream_png, None, "image/png")])
    fake.then("hosted", no_filename)
    answer = send(hosted(), accept="image/png")
    assert answer.status_code == 200, answer.text
    assert image_of(answer.content).tobytes() == image_of(upstream_png).tobytes()


def test_upstream_429_retried_within_the_budget(hosted, fake):
    fake.then("hosted", reply(429, "slow down", {"Retry-After": "1"}))
    live = hosted(upstream_retry_budget=5)
    answer = send(live)
    assert answer.status_code == 200, answer.text
    assert len(fake.requests("hosted")) == 2


def test_upstream_429_past_the_budget_is_429_with_retry_after(hosted, fake):
    fake.then("hosted", reply(429, "slow down", {"Retry-After": "7"}))
    answer = send(hosted(upstream_retry_budget=3))
    assert answer.status_code == 429
    assert answer.headers["retry-after"] == "7"
    assert "429" in job_of(answer)["error"]
    assert len(fake.requests("hosted")) == 1


@pytest.mark.parametrize("make_reply", [
    lambda: reply(400, {"error": f"prompt refused for Bearer {SERVER_TOKEN}"}),
    lambda: reply(400, f"prompt refused for Bearer {SERVER_TOKEN}"),
    lambda: lambda seen, fake: multipart([("job", json.dumps(
        {"state": {"current": "failed"}, "error": f"prompt refused {SERVER_TOKEN}"}).encode(),
        "job.json", "application/json")], status=400),
], ids=["json", "text", "multipart"])
def test_upstream_4xx_keeps_status_and_text_without_the_token(hosted, fake, make_reply):
    fake.then("hosted", make_reply())
    answer = send(hosted())
    assert answer.status_code == 400
    error = job_of(answer)["error"]
    assert "answered 400: prompt refused" in error
    assert SERVER_TOKEN not in answer.text and "[redacted]" in error


@pytest.mark.parametrize(("handler", "status", "words"), [
    (reply(503, "upstream overloaded"), 502, "answered 503: upstream overloaded"),
    (reply(401, "token is invalid"), 502, "refused the server's credentials (401)"),
    (reply(302, "", {"Location": "https://elsewhere.invalid/"}), 502, "redirect (302)"),
    (hang(3), 504, "did not answer in time"),
    (lambda seen, fake: Truncated(b"--xyz\r\nContent-Disposition: form-data; name=\"job\""
                                  b"\r\n\r\n{\"id", "multipart/form-data; boundary=xyz"),
     502, "RemoteProtocolError"),
    (lambda seen, fake: multipart([("job", b"{}", "job.json", "application/json")]), 502,
     "without an output image"),
    (lambda seen, fake: multipart([("output", b"not an image", "output.png", "image/png")]),
     502, "cannot be read"),
    (reply(200, {"id": "x"}), 502, "without an output image"),
], ids=["5xx", "401", "redirect", "timeout", "truncated", "no-output", "bad-image", "json"])
def test_upstream_failures_map_to_502_504(hosted, fake, handler, status, words):
    fake.then("hosted", handler)
    answer = send(hosted(upstream_timeout=0.5), accept="multipart/form-data")
    assert answer.status_code == status, answer.text
    job = job_of(answer)
    assert job["state"]["current"] == "failed"
    assert words in job["error"]


def test_connection_refused_is_502(hosted):
    live = hosted(hosted_url="https://127.0.0.1:9/v2")  # nothing listens on port 9 (discard)
    answer = send(live, accept="application/json")
    assert answer.status_code == 502
    assert "ConnectError" in answer.json()["error"]


@pytest.mark.parametrize(("job_type", "config", "image", "words"), [
    (PRO_TXT, {"prompt": "a fox", "aspect_ratio": "3:1"}, None, "config.aspect_ratio"),
    (PRO_TXT, {"prompt": "a fox", "safety_tolerance": 7}, None, "config.safety_tolerance"),
    (PRO_IMG, {"prompt": "a fox", "safety_tolerance": 3}, b"default", "must be at most 2"),
    (PRO_IMG, {"prompt": "a"}, b"default", "config.prompt"),
    (PRO_IMG, {"prompt": "a fox"}, image_bytes(100, 100), "at least 256 px"),
    (PRO_IMG, {"prompt": "a fox"}, None, "needs 1 input image"),
    (PRO_TXT, {"prompt": "a fox"}, b"default", "takes no input image"),
])
def test_bad_jobs_never_reach_upstream(hosted, fake, job_type, config, image, words):
    answer = send(hosted(), job_type, config, image=image, accept="application/json")
    assert answer.status_code == 400, answer.text
    assert words in answer.json()["error"]
    assert fake.seen == []


def test_several_images_on_pro_and_max_never_reach_upstream(hosted, fake):
    # The hosted [pro]/[max] types take one image; references are a [dev] extension.
    live = hosted()
    for job_type in (PRO_IMG, MAX_IMG):
        answer = post_images(live.url, {"prompt": "a fox"},
                             [gradient_png(640, 480), image_bytes(300, 300)],
                             "application/json", job_type=job_type, token=CLIENT_TOKEN)
        assert answer.status_code == 400, answer.text
        assert "takes 1 input image" in answer.json()["error"]
    assert fake.seen == []


def test_in_flight_bound_answers_429(hosted, fake):
    fake.then("hosted", hang(1.5))
    live = hosted(upstream_max_in_flight=1, upstream_timeout=5)
    first: list[httpx2.Response] = []
    thread = threading.Thread(target=lambda: first.append(send(live)))
    thread.start()
    while not fake.requests("hosted"):
        threading.Event().wait(0.02)
    second = send(live, accept="application/json")
    thread.join()
    assert second.status_code == 429
    assert int(second.headers["retry-after"]) >= 1
    assert "in flight" in second.json()["error"]
    assert first[0].status_code == 502  # the hang answered 200 with no image


def test_upstream_jobs_do_not_wait_behind_gpu_jobs(hosted, fake):
    engine = FakeEngine(step_seconds=0.1)
    live = hosted(engine=engine, queue_size=1, client_share=1)  # one client fills it
    dev: list[httpx2.Response] = []

    def dev_job() -> None:
        dev.append(post_job(live.url, {"prompt": "slow local job", "width": 512,
                                       "height": 512, "steps": 15}, image_bytes(),
                            token=CLIENT_TOKEN))
    threads = [threading.Thread(target=dev_job) for _ in range(2)]
    threads[0].start()
    assert engine.started.wait(10)
    threads[1].start()
    while live.kontext.jobs.waiting < 1:  # one running, one waiting: the GPU queue is full
        threading.Event().wait(0.02)
    answer = send(live)
    gpu_jobs_done_first = len(dev)
    for thread in threads:
        thread.join()
    assert answer.status_code == 200, answer.text
    assert gpu_jobs_done_first == 0
    assert [reply.status_code for reply in dev] == [200, 200]


def test_credentials_never_logged_or_answered(hosted, fake, caplog):
    caplog.set_level(logging.DEBUG)
    fake.then("hosted", reply(500, f"internal error near {SERVER_TOKEN}"))
    live = hosted()
    failed, ok = send(live), send(live)
    assert failed.status_code == 502 and ok.status_code == 200
    for answer in (failed, ok):
        assert SERVER_TOKEN not in answer.text + json.dumps(dict(answer.headers))
    assert SERVER_TOKEN not in caplog.text
    assert "upstream" in caplog.text  # the failure was logged, without the token
    for seen in fake.requests("hosted"):
        assert CLIENT_TOKEN not in seen.body.decode("latin-1") + json.dumps(seen.headers)


def test_missing_token_is_503_naming_the_variable(serve, fake, monkeypatch):
    monkeypatch.delenv("NO_SUCH_TOKEN_VAR", raising=False)
    live = serve(upstream="hosted", hosted_url=f"{fake.url()}/v2",
                 hosted_token_env="NO_SUCH_TOKEN_VAR")
    answer = post_job(live.url, {"prompt": "make it blue"}, gradient_png(), job_type=PRO_IMG,
                      accept="application/json")
    assert answer.status_code == 503
    assert "NO_SUCH_TOKEN_VAR" in answer.json()["error"]


@pytest.mark.js
def test_official_js_client_round_trips_a_pro_img2img_job(hosted, fake, tmp_path):
    live = hosted()
    source = tmp_path / "input.png"
    source.write_bytes(gradient_png(512, 384))
    out = tmp_path / "out.png"
    result = run_js_job(live.v2, PRO_IMG, {"prompt": "make it a watercolour", "seed": 3},
                        inputs=[source], accept="image/png", token=CLIENT_TOKEN,
                        output_path=out)
    assert result["ok"], result
    assert result["job"]["served_by"]["backend"] == "upstream-hosted"
    assert result["job"]["config"]["seed"] == 3
    assert image_of(out.read_bytes()).format == "PNG"
    (seen,) = fake.requests("hosted")
    assert seen.form["input"] == source.read_bytes()
    assert seen.headers["authorization"] == f"Bearer {SERVER_TOKEN}"


def test_a_client_that_leaves_frees_its_in_flight_slot(hosted, fake):
    fake.then("hosted", hang(8))
    live = hosted(upstream_max_in_flight=1, upstream_timeout=10)
    with pytest.raises(httpx2.ReadTimeout):
        post_job(live.url, {"prompt": "make it blue"}, gradient_png(), job_type=PRO_IMG,
                 token=CLIENT_TOKEN, timeout=0.5)
    # The disconnect reaches the server asynchronously; once it has ended the job, the
    # slot is free (without abandoning it, it would be held for the 8 s hang: 429).
    wait_until(lambda: live.kontext.service.in_flight == 0, timeout=10,
               what="the abandoned job ended")
    answer = send(live, accept="application/json")
    assert answer.status_code == 200, answer.text


def test_upstream_outcomes_are_counted_in_metrics(hosted, fake):
    from prometheus_client.parser import text_string_to_metric_families

    live = hosted()
    assert send(live).status_code == 200
    fake.then("hosted", reply(503, {"error": "upstream is down"}))
    assert send(live).status_code == 502
    text = httpx2.get(f"{live.url}/metrics").text
    samples = {(s.labels.get("backend"), s.labels.get("outcome")): s.value
               for family in text_string_to_metric_families(text)
               if family.name == "kontext_upstream_outcomes" for s in family.samples
               if s.name.endswith("_total")}
    assert samples[("hosted", "ok")] == 1
    assert samples[("hosted", "upstream")] == 1
