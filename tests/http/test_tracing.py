"""OpenTelemetry traces of each job's phases, through a real server on loopback, caught by
the SDK's in-memory exporter; off (nothing imported) without the OTEL_* variables."""

from __future__ import annotations

import itertools
import subprocess
import sys

import pytest
from helpers.fake_engine import FakeEngine
from helpers.fake_upstream import reply
from helpers.http import DEV, PRO_IMG, post_job
from helpers.images import gradient_png, image_bytes

from server import tracing

# scripts/install.sh --test installs the `otel` extra, so CI runs these; an install
# without it (the lowest-versions run, say) skips them.
pytest.importorskip("opentelemetry.sdk", reason="needs kontext-server[otel]")
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import StatusCode

PNG = image_bytes(640, 480)
CONFIG = {"prompt": "paint the fence teal", "width": 512, "height": 512, "steps": 3}
UPSTREAM_TOKEN = "srv-upstream-token-93bd1e"


@pytest.fixture
def spans():
    """Every span the server ends while the test runs."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use(provider)
    yield exporter
    tracing.use(None)
    provider.shutdown()


def job_trace(exporter: InMemorySpanExporter) -> dict[str, object]:
    """The one job's spans by name, each checked to be a child of its `kontext.job`."""
    ended = exporter.get_finished_spans()
    (job,) = [span for span in ended if span.name == "kontext.job"]
    phases = {span.name: span for span in ended if span.parent is not None
              and span.parent.span_id == job.context.span_id}
    assert all(span.context.trace_id == job.context.trace_id for span in phases.values())
    return {"kontext.job": job, **phases}


def test_a_local_job_traces_each_phase_and_every_step(serve, spans) -> None:
    live = serve(FakeEngine())
    assert post_job(live.url, CONFIG, PNG).status_code == 200
    trace = job_trace(spans)
    assert set(trace) == {"kontext.job", "kontext.admission", "kontext.decode",
                          "kontext.queue_wait", "kontext.engine", "kontext.encode"}
    job, engine = trace["kontext.job"], trace["kontext.engine"]
    assert job.attributes["kontext.job_type"] == DEV
    assert job.attributes["kontext.backend"] == "local"
    assert job.status.status_code == StatusCode.UNSET
    assert [(e.name, e.attributes["step"]) for e in engine.events] == [
        ("step", 1), ("step", 2), ("step", 3)]
    assert engine.attributes["kontext.device"] == "cpu"
    assert trace["kontext.decode"].attributes["kontext.inputs"] == 1
    assert trace["kontext.encode"].attributes["kontext.format"] == "jpeg"
    # The phases follow one another: admission, decode, the wait, the engine, encoding.
    order = [trace[name] for name in ("kontext.admission", "kontext.decode",
                                      "kontext.queue_wait", "kontext.engine",
                                      "kontext.encode")]
    assert all(a.end_time <= b.start_time for a, b in itertools.pairwise(order))
    assert job.start_time <= order[0].start_time and order[-1].end_time <= job.end_time


def test_a_refused_job_ends_its_trace_as_an_error(serve, spans) -> None:
    live = serve(FakeEngine())
    assert post_job(live.url, {**CONFIG, "width": 1000}, PNG).status_code == 400
    trace = job_trace(spans)
    assert set(trace) == {"kontext.job", "kontext.admission"}
    assert trace["kontext.job"].status.status_code == StatusCode.ERROR
    assert trace["kontext.job"].attributes["kontext.error"] == "validation"
    assert trace["kontext.admission"].status.status_code == StatusCode.ERROR


def test_a_forwarded_job_traces_its_upstream_call(serve, fake, spans, monkeypatch) -> None:
    fake.reset()
    monkeypatch.setenv("TEST_HOSTED_TOKEN", UPSTREAM_TOKEN)
    live = serve(upstream="hosted", hosted_url=f"{fake.url()}/v2",
                 hosted_token_env="TEST_HOSTED_TOKEN", upstream_ca_file=fake.ca_file,
                 upstream_retry_budget=0)
    fake.then("hosted", reply(503, {"error": "upstream is down"}))
    answer = post_job(live.url, {"prompt": "make it blue"}, gradient_png(640, 480),
                      job_type=PRO_IMG)
    assert answer.status_code == 502
    trace = job_trace(spans)
    assert {"kontext.admission", "kontext.decode", "kontext.queue_wait",
            "kontext.upstream"} <= set(trace)
    assert "kontext.engine" not in trace
    assert trace["kontext.upstream"].attributes["kontext.upstream"] == "hosted"
    assert trace["kontext.upstream"].status.status_code == StatusCode.ERROR
    assert trace["kontext.job"].attributes["kontext.error"] == "upstream"


@pytest.mark.parametrize(("environ", "on"), [
    ({}, False),
    ({"OTEL_SERVICE_NAME": "kontext"}, False),  # names the service, exports nothing
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
    ({"OTEL_TRACES_EXPORTER": "console"}, True),
    ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
    ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
])
def test_the_standard_variables_turn_tracing_on(environ: dict, on: bool) -> None:
    assert tracing.wanted(environ) is on


def test_off_without_the_variables_imports_nothing_and_costs_nothing() -> None:
    code = ("import sys; from server import tracing; from server.wiring import build_server; "
            "assert tracing.configure({}) is False; "
            "assert tracing.start_job('x') is tracing.NO_TRACE; "
            "assert not [m for m in sys.modules if m.startswith('opentelemetry.sdk')], 'sdk'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr


def test_the_variables_without_the_extra_warn_and_stay_off(monkeypatch, caplog) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)  # not installed
    assert tracing.configure({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}) is False
    assert tracing.start_job("x") is tracing.NO_TRACE
    assert "pip install 'kontext-server[otel]'" in caplog.text
