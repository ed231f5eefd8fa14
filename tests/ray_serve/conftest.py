"""The ray tier: the Ray Serve application on a local Ray instance that the tests start
(CPU only, fractional CPUs), with two engine replicas of the tiny checkpoint and two
ingress replicas, served over HTTP on loopback. Started once for the folder."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import pytest
from helpers.ray_app import QUEUE_SIZE, TOKEN, RayServer, free_port, wait_ready

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="package")
def ray_server(tiny_dir, tmp_path_factory):
    ray = pytest.importorskip("ray", reason="needs kontext-server[ray]")
    from helpers.device_engines import gated_tiny_engine
    from helpers.servers import make_settings
    from ray import serve

    from server.ray.app import build_app

    gate, results = tmp_path_factory.mktemp("gate"), tmp_path_factory.mktemp("results")
    settings = make_settings(
        demo=True, demo_dir=tiny_dir, tokens=[TOKEN], queue_size=QUEUE_SIZE,
        results_dir=results, ray_min_replicas=2, ray_max_replicas=2,
        ray_gpus_per_replica=0, ray_cpus_per_replica=0.25,
        ray_ingress_replicas=2, ray_ingress_cpus=0.1, shutdown_grace_seconds=5,
        # Every request here carries the one token: it may fill the whole line, so that a
        # full line is refused as full, not as one client's share.
        client_share=1)
    # A loaded 2-core machine can take longer than Ray's default to start its node.
    os.environ.setdefault("RAY_raylet_start_wait_time_s", "180")
    # Workers import the project and the test helpers (the engine factory) from here.
    metrics_port = free_port()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}"}},
             _metrics_export_port=metrics_port)
    try:
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app(settings, partial(gated_tiny_engine, settings, str(gate))),
                  name="kontext", route_prefix="/", blocking=False)
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, timeout=180)
        yield RayServer(url, gate, results, f"http://127.0.0.1:{metrics_port}/metrics")
    finally:
        (gate / "hold").unlink(missing_ok=True)
        serve.shutdown()
        ray.shutdown()
