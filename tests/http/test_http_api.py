"""The /v2/job contract end to end through a real server on loopback (fake engine)."""

import re
import threading
import time
import uuid
from datetime import datetime, timedelta

import httpx2
import pytest
from helpers.async_api import wait_until
from helpers.fake_engine import FakeEngine
from helpers.http import DEV, image_of, input_part, job_of, job_part, multipart_parts, post_job
from helpers.images import gradient_png

from pipelines.errors import EngineFailure, OutOfMemory

CONFIG = {"prompt": "make the sky stormy", "width": 512, "height": 576, "steps": 2, "seed": 7}
PNG = gradient_png(640, 480)
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture
def live(serve):
    return serve()


@pytest.mark.parametrize(
    ("accept", "content_type", "pil_format"),
    [(None, "image/jpeg", "JPEG"), ("*/*", "image/jpeg", "JPEG"),
     ("image/jpeg", "image/jpeg", "JPEG"), ("image/png", "image/png", "PNG"),
     ("image/webp", "image/webp", "WEBP")],
)
def test_raw_image_answers(live, accept, content_type, pil_format):
    reply = post_job(live.url, CONFIG, PNG, accept)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == content_type
    image = image_of(reply.content)
    assert (image.format, image.size) == (pil_format, (512, 576))


@pytest.mark.parametrize(
    ("accept", "filename", "mime"),
    [("multipart/form-data", "output.jpg", "image/jpeg"),
     ("multipart/form-data; image/png", "output.png", "image/png"),
     ("multipart/form-data; image/webp", "output.webp", "image/webp"),
     ("multipart/form-data; image/jpeg; quality=90", "output.jpg", "image/jpeg")],
)
def test_multipart_answers(live, accept, filename, mime):
    reply = post_job(live.url, CONFIG, PNG, accept)
    assert reply.status_code == 200, reply.text
    parts = multipart_parts(reply)
    assert set(parts) == {"job", "output"}
    job_headers, _ = parts["job"]
    assert 'filename="job.json"' in job_headers["content-disposition"]
    assert job_headers["content-type"] == "application/json"
    headers, data = parts["output"]
    assert f'filename="{filename}"' in headers["content-disposition"]
    assert headers["content-type"] == mime
    assert image_of(data).size == (512, 576)


def test_json_answer_is_the_job(live):
    reply = post_job(live.url, {"prompt": "add a bowler hat"}, PNG, "application/json")
    assert reply.status_code == 200
    job = reply.json()
    uuid.UUID(job["id"], version=4)
    assert job["type"] == DEV
    assert job["state"] == {"current": "completed"}
    for key in ("created_at", "updated_at", "expires_at"):
        assert TIMESTAMP.match(job[key]), job[key]
    created = datetime.fromisoformat(job["created_at"].replace("Z", "+00:00"))
    expires = datetime.fromisoformat(job["expires_at"].replace("Z", "+00:00"))
    assert expires - created == timedelta(minutes=5)
    assert job["config"] == {"prompt": "add a bowler hat", "width": 1024, "height": 1024,
                             "steps": 30, "guidance_scale": 2.5, "progressive": False,
                             "reference_method": "offset", "seed": job["config"]["seed"]}
    assert isinstance(job["config"]["seed"], int)
    assert job["metrics"]["elapsed"] > 0 and job["metrics"]["ips"] > 0
    assert "price" not in job and "error" not in job
    # Where it ran, as forwarded jobs say it too: here the local engine and its device.
    assert job["served_by"] == {"backend": "local", "model": "fake", "device": "cpu"}
    assert "x-kontext-served-by" not in reply.headers


def test_price_query_adds_zero_dollars(live):
    job = post_job(live.url, CONFIG, PNG, "application/json", params={"price": "true"}).json()
    assert job["price"] == {"product": DEV, "dollars": 0}


def test_seed_used_reaches_the_engine_and_is_echoed(serve):
    engine = FakeEngine()
    live = serve(engine)
    job = post_job(live.url, {"prompt": "add a hat"}, PNG, "application/json").json()
    assert engine.requests[-1].seed == job["config"]["seed"]


def test_progressive_jpeg(live):
    reply = post_job(live.url, {**CONFIG, "progressive": True}, PNG, "image/jpeg")
    assert image_of(reply.content).info.get("progressive") == 1


def test_client_quirks_inputs_first_and_duplicated(serve):
    engine = FakeEngine()
    live = serve(engine)
    files = [input_part(PNG, "photo.png"), input_part(PNG, "image.jpg"), job_part(CONFIG)]
    reply = httpx2.post(f"{live.v2}/job", files=files, headers={"Accept": "image/png"})
    assert reply.status_code == 200, reply.text
    assert engine.requests[-1].image.size == (640, 480)


def expect_failed(reply: httpx2.Response, status: int, message: str) -> dict:
    assert reply.status_code == status, reply.text
    job = job_of(reply)
    assert job["state"] == {"current": "failed"}
    assert message in job["error"], job["error"]
    return job


def test_validation_error_is_multipart_when_accept_allows(live):
    reply = post_job(live.url, {**CONFIG, "width": 1000}, PNG, "multipart/form-data; image/png")
    assert reply.headers["content-type"].startswith("multipart/form-data")
    assert set(multipart_parts(reply)) == {"job"}
    job = expect_failed(reply, 400, "config.width: must be a multiple of 16, got 1000")
    assert job["type"] == DEV


def test_validation_error_is_json_otherwise(live):
    reply = post_job(live.url, {**CONFIG, "steps": 51}, PNG, "image/png")
    assert reply.headers["content-type"] == "application/json"
    expect_failed(reply, 400, "config.steps: must be at most 50, got 51")


def test_unknown_job_type_lists_supported(live):
    reply = post_job(live.url, CONFIG, PNG, job_type="inference.nope.v1")
    expect_failed(reply, 400, f"unknown job type 'inference.nope.v1'; this server supports: {DEV}")


@pytest.mark.parametrize(
    ("files", "message"),
    [([job_part(CONFIG), job_part(CONFIG), input_part(PNG)],
      "job: expected exactly one `job` part, got 2"),
     ([input_part(PNG)], "job: expected exactly one `job` part, got 0"),
     ([job_part(CONFIG), *(input_part(gradient_png(600 + i, 500)) for i in range(5))],
      "input: inference.flux-fast.dev-kontext.img2img.v1 takes at most 4 input images (the "
      "image to edit and 3 references), got 5 distinct ones"),
     ([job_part(CONFIG)], "needs 1 input image, got none"),
     ([input_part(b"not an image at all" * 10), job_part(CONFIG)],
      "input: is not a readable PNG, JPEG or WebP image"),
     ([input_part(gradient_png(200, 300)), job_part(CONFIG)],
      "input: is 200x300; each side must be at least 256 px")],
    ids=["two-job-parts", "no-job-part", "five-distinct-inputs", "no-input", "unreadable",
         "too-small"],
)
def test_multipart_shape_errors(live, files, message):
    reply = httpx2.post(f"{live.v2}/job", files=files, headers={"Accept": "multipart/form-data"})
    expect_failed(reply, 400, message)


def test_json_body_without_image_names_the_input(live):
    expect_failed(post_job(live.url, CONFIG, None), 400, "input:")


def test_not_json_body(live):
    reply = httpx2.post(f"{live.v2}/job", content=b"{nope", headers={
        "Content-Type": "application/json"})
    expect_failed(reply, 400, "body: is not valid JSON")


def test_wrong_content_type_is_415(live):
    reply = httpx2.post(f"{live.v2}/job", content=b"hello", headers={"Content-Type": "text/plain"})
    expect_failed(reply, 415, "Content-Type: must be application/json or multipart/form-data")


def test_body_over_limit_is_413(serve):
    live = serve(max_body_bytes=64 * 1024)
    reply = post_job(live.url, CONFIG, gradient_png(1200, 1200) + b"\0" * 70_000)
    expect_failed(reply, 413, "over the 65536-byte limit")


def test_unacceptable_accept_is_406(live):
    expect_failed(post_job(live.url, CONFIG, PNG, "text/html"), 406, "Accept: none of")


def test_token_required_when_configured(serve):
    live = serve(tokens=["s3cret-token-0f1e"])
    for token in (None, "wrong"):
        reply = post_job(live.url, CONFIG, PNG, "multipart/form-data", token=token)
        assert reply.status_code == 401
        assert reply.headers["content-type"].startswith("text/plain")
        assert "token is invalid" in reply.text
    assert post_job(live.url, CONFIG, PNG, token="s3cret-token-0f1e").status_code == 200


@pytest.mark.parametrize(
    ("error", "message"),
    [(EngineFailure("boom"), "the job failed while running: boom"),
     (OutOfMemory("CUDA out of memory"), "the job ran out of device memory")],
)
def test_engine_failure_is_500_and_the_next_job_succeeds(serve, error, message):
    engine = FakeEngine()
    live = serve(engine)
    engine.fail_next.append(error)
    expect_failed(post_job(live.url, CONFIG, PNG, "application/json"), 500, message)
    assert post_job(live.url, CONFIG, PNG).status_code == 200


def test_full_queue_is_429_with_retry_after(serve):
    engine = FakeEngine()
    engine.hold()
    live = serve(engine, queue_size=1, client_share=1)  # one client: see test_client_fairness
    replies: list[httpx2.Response] = []
    threads = [threading.Thread(target=lambda: replies.append(post_job(live.url, CONFIG, PNG)))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    full = {"waiting": 1, "capacity": 1, "running": True}  # one runs, one waits
    wait_until(lambda: httpx2.get(f"{live.url}/readyz").json()["queue"] == full,
               what="a full queue")
    reply = post_job(live.url, CONFIG, PNG, "application/json")
    job = expect_failed(reply, 429, "queue is full")
    assert int(reply.headers["retry-after"]) >= 1
    assert job["type"] == "unknown"  # refused before its body (and so its type) was read
    engine.release()
    for thread in threads:
        thread.join()
    assert [r.status_code for r in replies] == [200, 200]


def test_disconnect_cancels_the_running_job(serve):
    engine = FakeEngine(step_seconds=0.1)
    live = serve(engine)
    with pytest.raises(httpx2.ReadTimeout):
        post_job(live.url, {**CONFIG, "steps": 50}, PNG, timeout=0.6)
    deadline = time.monotonic() + 5
    while not engine.cancelled and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(engine.cancelled) == 1 and engine.cancelled[0].steps == 50
    # The cancelled job let go of the engine: the next one runs, and runs alone.
    assert post_job(live.url, CONFIG, PNG).status_code == 200
    assert [r.steps for r in engine.requests] == [50, CONFIG["steps"]]


def test_readyz_is_503_until_loaded_and_jobs_wait_for_it(serve):
    engine = FakeEngine()
    engine.load_gate.clear()  # loading until the test says so (no race with a sleep)
    live = serve(engine, wait_ready=False)
    early = httpx2.get(f"{live.url}/readyz")
    assert early.status_code == 503 and early.json()["ready"] is False
    assert httpx2.get(f"{live.url}/healthz").status_code == 200
    expect_failed(post_job(live.url, CONFIG, PNG), 503, "engine is loading")
    engine.load_gate.set()
    live.wait_ready()
    body = httpx2.get(f"{live.url}/readyz").json()
    assert body["ready"] is True and body["queue"]["capacity"] == 16


def test_openapi_describes_both_request_forms(live):
    spec = httpx2.get(f"{live.url}/openapi.json").json()
    content = spec["paths"]["/v2/job"]["post"]["requestBody"]["content"]
    assert set(content) == {"application/json", "multipart/form-data"}
    assert set(content["multipart/form-data"]["schema"]["properties"]) == {"job", "input"}
    assert httpx2.get(f"{live.url}/docs").status_code == 200


def test_token_is_checked_before_anything_else(serve):
    live = serve(tokens=["s3cret-token-0f1e"])
    reply = post_job(live.url, CONFIG, PNG, "text/html")
    assert reply.status_code == 401 and "token is invalid" in reply.text


def test_overlong_number_is_refused_in_plain_words(live):
    body = b'{"type": "%s", "config": {"prompt": "abc", "seed": %s}}' % (DEV.encode(), b"9" * 5000)
    reply = httpx2.post(f"{live.v2}/job", content=body,
                        headers={"Content-Type": "application/json"})
    job = expect_failed(reply, 400, "body: is not valid JSON: a number has too many digits")
    assert "sys." not in job["error"]
