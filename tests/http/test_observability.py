"""/metrics after real jobs, JSON log lines with job and request ids, secrets never logged."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
from collections.abc import Iterator

import httpx2
from helpers.async_api import wait_until
from helpers.fake_engine import FakeEngine
from helpers.http import DEV, job_of, post_job
from helpers.images import gradient_png, image_bytes
from prometheus_client.parser import text_string_to_metric_families

from pipelines.errors import EngineFailure
from server.logs import make_handler

PNG = image_bytes(640, 480)
PROMPT = "paint the fence a secret shade of teal"
CONFIG = {"prompt": PROMPT, "width": 512, "height": 512, "steps": 3}


def samples(live) -> dict[tuple[str, frozenset], float]:
    """{(sample name, labels): value} scraped from /metrics."""
    reply = httpx2.get(f"{live.url}/metrics")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain")
    found = {}
    for family in text_string_to_metric_families(reply.text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(found: dict, name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


def test_metrics_after_jobs_failures_and_refusals(serve):
    engine = FakeEngine()
    live = serve(engine, tokens=["metrics-token-8b7a6c5d"])
    for _ in range(2):
        assert post_job(live.url, CONFIG, PNG, token="metrics-token-8b7a6c5d").status_code == 200
    engine.fail_next.append(EngineFailure("boom"))
    assert post_job(live.url, CONFIG, PNG, token="metrics-token-8b7a6c5d").status_code == 500
    bad = {**CONFIG, "width": 1000}
    assert post_job(live.url, bad, PNG, token="metrics-token-8b7a6c5d").status_code == 400
    assert post_job(live.url, CONFIG, PNG).status_code == 401

    found = samples(live)
    duration = "kontext_job_duration_seconds_count"
    dev = {"job_type": DEV, "model": "kontext-dev", "tier": "exact"}
    assert value(found, duration, **dev, outcome="completed") == 2
    assert value(found, duration, **dev, outcome="job_failed") == 1
    assert value(found, "kontext_denoise_step_seconds_count", device="cpu",
                 model="kontext-dev") == 2
    jobs = "kontext_device_jobs_total"
    assert value(found, jobs, device="cpu", outcome="completed") == 2
    assert value(found, jobs, device="cpu", outcome="failed") == 1
    assert value(found, "kontext_device_busy", device="cpu") == 0
    errors = "kontext_http_errors_total"
    assert value(found, errors, status="500", reason="job_failed") == 1
    assert value(found, errors, status="400", reason="validation") == 1
    assert value(found, errors, status="401", reason="unauthorized") == 1
    assert value(found, "kontext_queue_depth") == 0
    assert value(found, "kontext_jobs_in_flight") == 0
    # A CPU engine exports no GPU memory gauge.
    assert not any(name.startswith("kontext_gpu") for name, _ in found)


def test_readiness_503_while_starting_is_not_counted_as_an_error(serve):
    engine = FakeEngine()
    engine.load_gate.clear()
    live = serve(engine, wait_ready=False)
    assert httpx2.get(f"{live.url}/readyz").status_code == 503
    assert httpx2.get(f"{live.url}/readyz").status_code == 503
    engine.load_gate.set()
    wait_until(lambda: httpx2.get(f"{live.url}/readyz").status_code == 200)
    found = samples(live)
    assert not any(name == "kontext_http_errors_total" for name, _ in found)
    assert value(found, "kontext_readiness_probes_total", ready="false") >= 2
    assert value(found, "kontext_readiness_probes_total", ready="true") == 1


def test_a_job_refused_while_the_engine_loads_is_logged_as_a_warning_not_an_error(serve):
    # 503 not_ready is a refusal the server means to give; an operator's ERROR alerts
    # must not fire while a server starts.
    engine = FakeEngine()
    engine.load_gate.clear()
    live = serve(engine, wait_ready=False)
    try:
        with captured_logs("json", []) as stream:
            reply = post_job(live.url, CONFIG, PNG)
    finally:
        engine.load_gate.set()
    assert reply.status_code == 503 and job_of(reply)["error"].startswith("the engine is")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    refused = [line for line in lines if line["message"].startswith("job refused (503")]
    assert [line["level"] for line in refused] == ["warning"]
    assert not [line for line in lines if line["level"] == "error"]


@contextlib.contextmanager
def captured_logs(fmt: str, secrets: list[str]) -> Iterator[io.StringIO]:
    """Everything logged while the block runs, through the server's own handler."""
    stream = io.StringIO()
    handler = make_handler(fmt, secrets, stream)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def test_json_logs_carry_ids_and_no_prompt(serve):
    live = serve()
    with captured_logs("json", []) as stream:
        reply = post_job_with_id(live.url, "req-abc.123")
        job_id = reply.json()["id"]
    assert reply.headers["x-request-id"] == "req-abc.123"
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    accepted = [line for line in lines if line["message"] == "job accepted"]
    assert len(accepted) == 1
    assert accepted[0]["job_id"] == job_id and accepted[0]["request_id"] == "req-abc.123"
    assert accepted[0]["config"]["width"] == 512 and "prompt" not in accepted[0]["config"]
    assert any(line["message"].startswith("job completed") for line in lines)
    assert PROMPT not in stream.getvalue()


def test_log_prompts_setting_allows_prompts(serve):
    live = serve(log_prompts=True)
    with captured_logs("json", []) as stream:
        assert post_job_with_id(live.url, "req-1").status_code == 200
    assert PROMPT in stream.getvalue()


def test_request_id_made_when_missing_or_unsafe(serve):
    live = serve()
    made = httpx2.get(f"{live.url}/readyz").headers["x-request-id"]
    assert len(made) == 32
    unsafe = httpx2.get(f"{live.url}/readyz", headers={"X-Request-ID": "a b\tc"})
    assert unsafe.headers["x-request-id"] not in ("a b\tc", made)


def test_tokens_never_reach_the_logs(serve):
    token = "tok-7f3a9c1e-never-log-me"
    live = serve(tokens=[token])
    with captured_logs("text", [token]) as stream:
        assert post_job(live.url, CONFIG, PNG, token=token).status_code == 200
        assert post_job(live.url, CONFIG, PNG, token="wrong-" + token).status_code == 401
        # Defence in depth: even a careless log line is scrubbed.
        logging.getLogger("careless").warning("Authorization: Bearer %s", token)
        try:
            raise RuntimeError(f"bad token {token}")
        except RuntimeError:
            logging.getLogger("careless").exception("failed")
    text = stream.getvalue()
    assert token not in text
    assert text.count("[redacted]") >= 2
    assert "job completed" in text


def post_job_with_id(url: str, request_id: str) -> httpx2.Response:
    files = [("input", ("in.png", PNG, "image/png")),
             ("job", ("job.json", json.dumps({"type": DEV, "config": CONFIG}),
                      "application/json"))]
    return httpx2.post(f"{url}/v2/job", files=files, timeout=30,
                      headers={"Accept": "application/json", "X-Request-ID": request_id})


def test_readyz_and_job_metrics_show_the_tier(serve):
    engine = FakeEngine()
    engine.info = dataclasses.replace(engine.info, tier="turbo")
    live = serve(engine=engine)
    assert httpx2.get(f"{live.url}/readyz").json()["tier"] == "turbo"
    reply = post_job(live.url, {"prompt": "make it red", "width": 512, "height": 512},
                     gradient_png(320, 320), "application/json")
    assert reply.status_code == 200, reply.text
    assert job_of(reply)["metrics"]["tier"] == "turbo"


def test_readiness_says_which_levers_the_tier_applies_and_which_it_goes_without(serve):
    """An fp8 engine on a GPU without FlashAttention 3: its plan's note reaches /readyz."""
    from pipelines.levers.plan import Capabilities, plan_engine

    plan = plan_engine("fp8", "full", "cuda", Capabilities(
        cuda=True, compute_capability=(9, 0), torchao=True, flash_attn_3=False))
    engine = FakeEngine()
    engine.info = dataclasses.replace(engine.info, tier="fp8", extra={
        "levers": ", ".join(plan.levers()), "notes": "; ".join(plan.notes)})
    body = httpx2.get(f"{serve(engine).url}/readyz").json()
    assert body["tier"] == "fp8" and "fp8_linears" in body["levers"]
    assert "fp8_attention" not in body["levers"]
    assert "fp8 attention is off: it needs FlashAttention 3" in body["tier_notes"]


def test_requests_total_by_route_and_status_build_info_and_no_created_series(serve):
    live = serve(FakeEngine())
    assert post_job(live.url, CONFIG, PNG).status_code == 200
    assert post_job(live.url, {**CONFIG, "width": 1000}, PNG).status_code == 400
    unknown = "0123456789abcdef0123456789abcdef"
    assert httpx2.get(f"{live.url}/v2/job/async/{unknown}/job.json").status_code == 404
    assert httpx2.get(f"{live.url}/no/such/path").status_code == 404
    assert httpx2.get(f"{live.url}/healthz").status_code == 200
    found = samples(live)
    requests = "kontext_http_requests_total"
    assert value(found, requests, route="/v2/job", status="200") == 1
    assert value(found, requests, route="/v2/job", status="400") == 1
    # Route templates, never raw paths: a job id is not a label.
    assert value(found, requests, route="/v2/job/async/{job_id}/job.json", status="404") == 1
    assert value(found, requests, route="unmatched", status="404") == 1
    assert value(found, requests, route="/healthz", status="200") == 1
    assert not any(unknown in str(labels) for _name, labels in found)
    # The error ratio's two sides agree: every failed answer is also a request.
    failed = sum(v for (name, _l), v in found.items() if name == "kontext_http_errors_total")
    failed_requests = sum(v for (name, labels), v in found.items()
                          if name == requests and dict(labels)["status"] >= "400")
    assert failed == failed_requests == 3
    assert not any(name.endswith("_created") for name, _labels in found)
    from server.metrics import server_version

    assert value(found, "kontext_build_info", version=server_version(), model="fake",
                 tier="exact", device="cpu") == 1
