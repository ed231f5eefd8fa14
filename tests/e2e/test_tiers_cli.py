"""`kontext serve` refuses a tier the machine cannot run, before serving (the engine side
is tests/engine/test_engine_tiers.py; /readyz and job metrics: tests/http/test_observability.py)."""

from __future__ import annotations


def test_kontext_serve_refuses_turbo_on_cpu_before_serving(tiny_dir, capsys):
    import logging

    from server.cli.main import main

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
