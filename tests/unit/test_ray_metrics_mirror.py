"""Ray Serve metrics that add up: each ingress replica's registry mirrored into Ray's
metrics, one series per replica, so that a sum over replicas is the application's figure."""

from __future__ import annotations

import pytest

from server.metrics import Metrics
from server.ray.metrics_mirror import REPLICA_TAG, MetricsMirror


class FakeRay:
    """What Ray's metrics agent would export: the last value set per (name, tags)."""

    def __init__(self) -> None:
        self.series: dict[tuple[str, frozenset], float] = {}
        self.made: dict[str, tuple[str, ...]] = {}

    def gauge(self, name: str, description: str, tag_keys: tuple[str, ...]):
        assert description and REPLICA_TAG in tag_keys
        self.made[name] = tag_keys
        ray = self

        class Gauge:
            def set(self, value: float, tags: dict[str, str] | None = None) -> None:
                assert set(tags or {}) == set(tag_keys)  # Ray refuses missing or extra tags
                ray.series[(name, frozenset((tags or {}).items()))] = value

        return Gauge()

    def total(self, name: str, **labels: str) -> float:
        """`sum without (replica) (name{labels})`."""
        return sum(value for (series, tags), value in self.series.items()
                   if series == name and set(labels.items()) <= tags)


def serve_requests(metrics: Metrics, ok: int, failed: int) -> None:
    for _ in range(ok):
        metrics.count_request("/v2/job", 200)
        metrics.job_seconds.labels(job_type="dev", model="kontext-dev", tier="exact",
                                    outcome="completed").observe(2)
    for _ in range(failed):
        metrics.count_request("/v2/job", 400)
        metrics.count_error(400, "validation")


def test_counters_from_every_replica_add_up_and_a_second_sync_counts_nothing_twice() -> None:
    ray = FakeRay()
    replicas = [(Metrics(), f"replica:{name}") for name in "abc"]
    mirrors = [MetricsMirror(metrics, name, ray.gauge) for metrics, name in
               ((m.registry, n) for m, n in replicas)]
    for (metrics, _name), (ok, failed) in zip(replicas, [(3, 1), (5, 0), (1, 2)], strict=True):
        serve_requests(metrics, ok, failed)
    for mirror in mirrors:
        assert mirror.sync() > 0
    for mirror in mirrors:  # copies of cumulative values: syncing again adds nothing
        mirror.sync()
    requests = "kontext_http_requests_total"
    assert ray.total(requests, route="/v2/job", status="200") == 9
    assert ray.total(requests, route="/v2/job", status="400") == 3
    assert ray.total("kontext_http_errors_total", status="400", reason="validation") == 3
    # Histograms keep their buckets (le), count and sum: quantiles over all replicas work.
    assert ray.total("kontext_job_duration_seconds_count", outcome="completed") == 9
    assert ray.total("kontext_job_duration_seconds_bucket", outcome="completed", le="2.0") == 9
    assert ray.total("kontext_job_duration_seconds_bucket", outcome="completed", le="1.0") == 0
    assert ray.total("kontext_job_duration_seconds_sum", outcome="completed") == 18
    # One series per replica: the replica that served a request is its own series.
    per_replica = {dict(tags)[REPLICA_TAG]: value for (name, tags), value in ray.series.items()
                   if name == requests and ("status", "200") in tags}
    assert per_replica == {"replica:a": 3, "replica:b": 5, "replica:c": 1}
    # More requests on one replica show up at its next sync, and only there.
    serve_requests(replicas[1][0], 2, 0)
    mirrors[1].sync()
    assert ray.total(requests, route="/v2/job", status="200") == 11
    assert not any(name.endswith("_created") for name in ray.made)


def test_a_series_that_disappears_is_set_to_zero() -> None:
    # kontext_build_info names the planned device until the engine replicas report theirs.
    from pipelines.contract import EngineInfo

    ray, metrics = FakeRay(), Metrics()
    info = EngineInfo(model="m", device="ray", dtype="bf16", demo=False)
    metrics.watch_build(lambda: info)
    mirror = MetricsMirror(metrics.registry, "replica:a", ray.gauge)
    mirror.sync()
    assert ray.total("kontext_build_info", device="ray") == 1
    info = EngineInfo(model="m", device="cuda:0", dtype="bf16", demo=False)
    mirror.sync()
    assert ray.total("kontext_build_info", device="cuda:0") == 1
    assert ray.total("kontext_build_info", device="ray") == 0


def test_the_names_and_tags_are_ones_ray_accepts() -> None:
    pytest.importorskip("ray")
    metrics = Metrics()
    serve_requests(metrics, 1, 1)
    mirror = MetricsMirror(metrics.registry, "replica:x")  # real ray.util.metrics gauges
    assert mirror.sync() > 0
    assert not any(gauge._discard_metric for gauge, _keys in mirror._gauges.values())
