"""Our Prometheus metrics, mirrored into Ray's metrics API so that they add up across
ingress replicas.

Under Ray Serve each ingress replica keeps its own registry, and /metrics through Ray's
proxy lands on a random replica: counters scraped there jump between replicas' values.
Ray's metrics (ray.util.metrics) are exported by every node's metrics agent, each series
tagged with the replica that recorded it; `sum without (replica)` over them is the whole
application's figure, whichever replica answered which request.

Every sample is copied as it stands (counters, histogram buckets, sums and counts, gauges,
build info), as a Ray Gauge holding that replica's cumulative value: no deltas are kept, so
nothing is lost or counted twice when a sync is missed, and a restarted replica starts a
fresh series as a restarted process would. Ray prefixes the names with `ray_`:
`kontext_http_requests_total` is exported as `ray_kontext_http_requests_total`; names keep
their `_total`/`_bucket`/`_count`/`_sum` endings, so rate() and histogram_quantile() read
them as they read the originals.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol

from prometheus_client import CollectorRegistry

log = logging.getLogger(__name__)

#: Seconds between copies: Ray's agents export every few seconds, Prometheus scrapes
#: every 15 s or more; a copy costs one walk over the registry.
SYNC_SECONDS = 5.0
REPLICA_TAG = "replica"


class GaugeLike(Protocol):
    """What the mirror needs of a Ray Gauge."""

    def set(self, value: float, tags: dict[str, str] | None = None) -> None: ...


#: (name, description, tag keys) -> a gauge; ray.util.metrics.Gauge in a replica.
GaugeFactory = Callable[[str, str, tuple[str, ...]], GaugeLike]


def ray_gauge(name: str, description: str, tag_keys: tuple[str, ...]) -> GaugeLike:
    """A Ray Gauge (exported by the node's metrics agent as `ray_<name>`)."""
    from ray.util.metrics import Gauge

    return Gauge(name, description=description, tag_keys=tag_keys)


class MetricsMirror:
    """Copies every sample of `registry` into gauges made by `make`, tagged `replica`."""

    def __init__(self, registry: CollectorRegistry, replica: str,
                 make: GaugeFactory = ray_gauge) -> None:
        self.registry = registry
        self.replica = replica
        self.make = make
        self._gauges: dict[str, tuple[GaugeLike, tuple[str, ...]]] = {}
        #: (name, labels) of every series the last sync copied.
        self._seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()

    def sync(self) -> int:
        """Copy the registry's current samples; returns how many were copied. A series
        copied before and gone now (kontext_build_info's device once the engine loaded)
        is set to 0: Ray keeps every series it was given, and a stale 1 would say a
        build or a state that no longer is."""
        copied, seen = 0, set()
        for family in self.registry.collect():
            for sample in family.samples:
                if self._copy(sample.name, family.documentation, sample.labels, sample.value):
                    copied += 1
                    seen.add((sample.name, tuple(sorted(sample.labels.items()))))
        for name, labels in self._seen - seen:
            self._gauges[name][0].set(0.0, tags={**dict(labels), REPLICA_TAG: self.replica})
        self._seen = seen
        return copied

    def _copy(self, name: str, text: str, labels: dict[str, str], value: float) -> bool:
        keys = tuple(sorted(labels))
        if name not in self._gauges:
            self._gauges[name] = (self.make(name, text, (*keys, REPLICA_TAG)), keys)
        gauge, known = self._gauges[name]
        if keys != known:  # a sample whose labels differ from its family's first: skipped
            return False
        gauge.set(value, tags={**labels, REPLICA_TAG: self.replica})
        return True

    def start(self, every: float = SYNC_SECONDS) -> threading.Event:
        """Copy every `every` seconds on a daemon thread until the returned event is set."""
        stop = threading.Event()

        def run() -> None:
            while not stop.wait(every):
                try:
                    self.sync()
                except Exception:  # never take the replica down for a metric
                    log.exception("copying metrics to Ray failed")

        threading.Thread(target=run, name="kontext-metrics-mirror", daemon=True).start()
        return stop


def mirror_app_metrics(app: Any, replica: str) -> threading.Event | None:
    """Start mirroring the metrics of the server `app` was built around (None: none)."""
    from server.api.deps import server_of

    server = server_of(app)
    if server is None:
        return None
    return MetricsMirror(server.metrics.registry, replica).start()
