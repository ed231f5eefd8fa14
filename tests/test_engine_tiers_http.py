"""The tier as the server shows it: refusal before serving, /readyz and job metrics.

(HTTP side of tests/engine/test_engine_tiers.py, which imports no server code.)
"""

from __future__ import annotations

import dataclasses

import httpx
from helpers.fake_engine import FakeEngine
from helpers.http import job_of, post_job
from helpers.images import gradient_png


def test_kontext_serve_refuses_turbo_on_cpu_before_serving(tiny_dir, capsys):
    import logging

    from server.cli import main

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        code = main(["serve", "--demo", "--demo-dir", str(tiny_dir), "--device", "cpu",
                     "--tier", "turbo", "--port", "0"])
    finally:  # serve() configures logging onto the captured stderr; put it back
        root.handlers[:] = handlers
        root.setLevel(level)
    assert code == 2
    assert "--tier turbo needs a CUDA GPU" in capsys.readouterr().err


def test_readyz_and_job_metrics_show_the_tier(serve):
    engine = FakeEngine()
    engine.info = dataclasses.replace(engine.info, tier="turbo")
    live = serve(engine=engine)
    assert httpx.get(f"{live.url}/readyz").json()["tier"] == "turbo"
    reply = post_job(live.url, {"prompt": "make it red", "width": 512, "height": 512},
                     gradient_png(320, 320), "application/json")
    assert reply.status_code == 200, reply.text
    assert job_of(reply)["metrics"]["tier"] == "turbo"
