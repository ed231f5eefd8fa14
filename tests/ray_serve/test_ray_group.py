"""A Ray Serve replica as a context-parallel group (`--context-parallel 2` with
`--ray-gpus-per-replica 0`: two CPU ranks in the replica): a job through the Ray Serve
application runs on the group and names its devices. Its own local Ray instance, one
replica; started and stopped in this module."""

from __future__ import annotations

import os
from pathlib import Path

import httpx2
import pytest
from helpers.http import image_of, job_of, multipart_parts, post_images
from helpers.images import gradient_png
from helpers.ray_app import free_port, wait_ready
from helpers.servers import make_settings

#: Processes start and load on 2 shared cores: minutes, not pytest's default 300 s.
pytestmark = pytest.mark.timeout(1200)

ROOT = Path(__file__).resolve().parents[2]
CONFIG = {"prompt": "make it blue", "width": 512, "height": 512, "steps": 2, "seed": 5}
CANVAS = gradient_png(256, 256)


@pytest.fixture(scope="module")
def ray_group(tiny_dir, tmp_path_factory):
    ray = pytest.importorskip("ray", reason="needs kontext-server[ray]")
    from ray import serve

    from server.ray.app import build_app

    settings = make_settings(
        demo=True, demo_dir=tiny_dir, results_dir=tmp_path_factory.mktemp("results"),
        ray_address="auto", context_parallel=2, ray_gpus_per_replica=0,
        ray_cpus_per_replica=0.5, ray_ingress_cpus=0.1, shutdown_grace_seconds=5)
    os.environ.setdefault("RAY_raylet_start_wait_time_s", "180")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}"}})
    try:
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app(settings), name="kontext-group", route_prefix="/",
                  blocking=False)
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, timeout=300)
        yield url, settings
    finally:
        serve.shutdown()
        ray.shutdown()


def test_a_replica_is_a_group_of_two_ranks(ray_group):
    """The job runs on the replica's two ranks (the same engine as `--devices cpu,cpu
    --context-parallel 2`, whose image equals one process's: tests/e2e)."""
    url, _settings = ray_group
    reply = post_images(url, CONFIG, [CANVAS], "multipart/form-data; image/png")
    assert reply.status_code == 200, reply.text
    job = job_of(reply)
    assert job["served_by"]["device"].endswith("[cpu:0,cpu:1]"), job["served_by"]
    assert image_of(multipart_parts(reply)["output"][1]).size == (512, 512)
    assert httpx2.get(f"{url}/readyz").status_code == 200
