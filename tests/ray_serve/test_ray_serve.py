"""The Ray Serve application through its real HTTP API: two engine replicas (tiny
checkpoint, CPU) behind two ingress replicas, on a local Ray instance.

Jobs run at once on both replicas (the official JS client included); an async job is read
back through another ingress replica; a full line answers 429 with Retry-After; a replica
killed under a job fails that job (503) and the next jobs are served by the other; the
ingress replicas' metrics add up in Ray's own export.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

import httpx
from helpers.async_api import get, submit, wait_until
from helpers.http import job_of, post_job
from helpers.images import image_bytes
from helpers.js_client import run_js_job
from helpers.ray_app import QUEUE_SIZE, TOKEN
from prometheus_client.parser import text_string_to_metric_families

PNG = image_bytes(640, 480)
CONFIG = {"prompt": "paint it teal", "width": 512, "height": 512, "steps": 3}
JSON = "application/json"
DEV = "inference.flux-fast.dev-kontext.img2img.v1"


def post(server, seed: int) -> httpx.Response:
    return post_job(server.url, {**CONFIG, "seed": seed}, PNG, accept=JSON, token=TOKEN,
                    timeout=120)


def test_jobs_run_at_once_on_both_replicas_js_client_included(ray_server, tmp_path):
    image = tmp_path / "input.png"
    image.write_bytes(PNG)
    ray_server.hold()
    with ThreadPoolExecutor(2) as pool:
        by_js = pool.submit(run_js_job, ray_server.v2, DEV, {**CONFIG, "seed": 1}, [image],
                            accept="image/png", token=TOKEN)
        by_http = pool.submit(post, ray_server, 2)
        # Both are held at their first step at the same time: one on each replica.
        held = wait_until(lambda: len(ray_server.held()) == 2 and ray_server.held(),
                          timeout=60, what="both jobs running")
        ray_server.release()
        js, reply = by_js.result(), by_http.result()
    assert len({marker.split("-")[0] for marker in held}) == 2  # two processes
    assert js["ok"], js
    assert reply.status_code == 200
    devices = {js["job"]["served_by"]["device"], job_of(reply)["served_by"]["device"]}
    assert len(devices) == 2 and all(d.startswith("replica:") for d in devices)
    ray_server.forget_held()


def test_async_job_is_read_back_through_another_ingress_replica(ray_server):
    created = submit(ray_server.url, {**CONFIG, "seed": 3}, PNG, token=TOKEN)
    assert created.status_code == 201
    job_id, creator = created.json()["id"], created.headers["x-kontext-ingress"]
    wait_until(lambda: get(ray_server.url, job_id, "job.state.current", TOKEN).text
               == "processed", timeout=60, what="the async job processed")

    def read_elsewhere():
        reply = get(ray_server.url, job_id, "job.json", TOKEN)
        return reply if reply.headers["x-kontext-ingress"] != creator else None

    # Ray's proxy spreads requests over both ingress replicas; read until the other answers.
    reply = wait_until(read_elsewhere, timeout=30, what="a read through the other replica")
    assert reply.status_code == 200
    assert reply.json()["state"]["current"] == "completed"
    output = get(ray_server.url, job_id, "output", TOKEN).json()
    assert len(output) == 1


def test_a_full_line_answers_429_with_retry_after(ray_server):
    # Each ingress admits QUEUE_SIZE + 2 replicas' worth; 2 ingresses → at most 6 admitted.
    admitted = 2 * (QUEUE_SIZE + 2)
    ray_server.hold()
    with ThreadPoolExecutor(admitted + 2) as pool:
        futures = [pool.submit(post, ray_server, seed) for seed in range(10, 10 + admitted + 2)]
        # Held, nothing finishes: whatever answers now was refused, and at least 2 are.
        done: set = set()
        while len(done) < 2:
            done = wait(futures, return_when=FIRST_COMPLETED, timeout=60).done
            assert done, "no answer while every replica is busy"
            done = {f for f in futures if f.done()}
        refusals = [f.result() for f in done]
        ray_server.release()
        answers = [f.result() for f in futures]
    assert all(r.status_code == 429 and int(r.headers["Retry-After"]) >= 1 for r in refusals)
    assert "the queue is full" in job_of(refusals[0])["error"]
    statuses = [r.status_code for r in answers]
    assert statuses.count(200) + statuses.count(429) == len(answers)
    assert statuses.count(200) >= 2
    ray_server.forget_held()


def test_a_killed_replica_fails_its_job_and_the_next_jobs_succeed(ray_server):
    ray_server.hold()
    created = submit(ray_server.url, {**CONFIG, "seed": 99}, PNG, token=TOKEN)
    job_id = created.json()["id"]
    held = wait_until(ray_server.held, timeout=60, what="the job running")
    os.kill(int(held[0].split("-")[0]), signal.SIGKILL)  # the replica's process dies
    wait_until(lambda: get(ray_server.url, job_id, "job.state.current", TOKEN).text
               == "failed", timeout=60, what="the job failed")
    failed = get(ray_server.url, job_id, "job.json", TOKEN).json()
    assert "died while running the job" in failed["error"]
    assert "submit it again" in failed["error"]
    ray_server.release()
    ray_server.forget_held()
    # The other replica serves the next jobs (Ray Serve replaces the dead one meanwhile).
    with ThreadPoolExecutor(2) as pool:
        replies = list(pool.map(lambda seed: post(ray_server, seed), (100, 101)))
    assert [r.status_code for r in replies] == [200, 200]


def ray_exported(metrics_url: str, name: str) -> list:
    """The samples of `name` in the Ray node's metrics export."""
    text = httpx.get(metrics_url, timeout=10).text
    return [sample for family in text_string_to_metric_families(text)
            for sample in family.samples if sample.name == name]


def test_ingress_metrics_add_up_in_rays_export(ray_server):
    # /metrics through the proxy is one replica's registry; Ray's export has them all.
    answered = Counter()
    for _ in range(12):
        reply = httpx.get(f"{ray_server.url}/no-such-route", timeout=30)
        assert reply.status_code == 404
        answered[reply.headers["x-kontext-ingress"]] += 1

    def per_replica() -> dict[str, float]:
        return {sample.labels["replica"]: sample.value for sample in ray_exported(
                    ray_server.metrics_url, "ray_kontext_http_requests_total")
                if sample.labels["route"] == "unmatched" and sample.labels["status"] == "404"}

    # Each replica copies its registry every few seconds and Ray exports it every few
    # more: poll the export (twice a second) until it holds every answer.
    deadline, counted = time.monotonic() + 120, {}
    while time.monotonic() < deadline and sum(counted.values()) < 12:
        time.sleep(0.5)
        counted = per_replica()
    assert counted == answered  # one series per ingress replica, each its own count
    builds = [sample.labels["replica"] for sample in ray_exported(
        ray_server.metrics_url, "ray_kontext_build_info") if sample.value == 1]
    # Both ingress replicas mirror, whether or not they served, each its one build.
    assert len(builds) == len(set(builds)) == 2
