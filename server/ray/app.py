"""The Ray Serve application: an ingress deployment serving this exact HTTP API (the app of
server/api/app.py, its routers, auth, limits, error bodies and playground) in front of an
engine deployment with one replica per GPU.

    HTTP → Ray Serve proxy → KontextIngress (FastAPI; job service, lanes, async store,
           forwarding of [pro]/[max]) → DeploymentHandle → KontextEngine replicas (1 GPU each)

Jobs forwarded upstream run in the ingress and never take an engine replica. Async jobs'
records and outputs live in `results_dir`, which every ingress replica must reach (shared
storage: NFS, a PVC, a mounted bucket): any replica answers GET for any job; progress and
DELETE go through the replica that holds the job while it runs (docs/scale-out.md).

Run it with `kontext serve --ray-address auto` (settings from flags and KONTEXT_*), or with
`serve run server.ray.app:app_builder` / a Serve config file (deploy/ray/serve-config.yaml).
"""

from __future__ import annotations

import logging
from typing import Any

from ray import serve
from ray.serve import Application

from server.api.app import create_app
from server.engine_build import planned_info
from server.ray.engine_replica import EngineReplica, replica_name
from server.ray.metrics_mirror import mirror_app_metrics
from server.ray.remote_engines import RayEngines
from server.settings import Settings

log = logging.getLogger(__name__)

INGRESS = "KontextIngress"
ENGINE = "KontextEngine"
#: HTTP requests one ingress replica takes at once (waiting sync jobs and event streams
#: included): far above any engine queue, so that only the job lanes refuse work.
INGRESS_MAX_ONGOING = 1000


class KontextIngress:
    """The FastAPI app of server/api/app.py around engine replicas (built in the replica)."""

    def __init__(self, settings: Settings, engine: Any) -> None:
        import os

        from server.tracing import configure as configure_tracing

        self.settings = settings
        # The replica's own process: OTEL_* from the Serve config's runtime_env.
        configure_tracing(os.environ)
        self.engines = RayEngines(engine, planned_info(settings, "ray"),
                                  capacity=settings.ray_max_replicas)

    def __serve_build_asgi_app__(self):
        # Ray Serve calls this in the replica, then runs the app's lifespan.
        app = create_app(self.settings, engines=self.engines, shared_results=True)
        app.add_middleware(IngressHeader, name=replica_name())
        # Each replica's /metrics is its own; Ray's metrics add up across them.
        mirror_app_metrics(app, replica_name())
        return app


class IngressHeader:
    """Adds `X-Kontext-Ingress: replica:<id>` to every answer: which ingress replica
    answered (for operators reading logs, and for tests proving a job is read back
    through another replica). Plain ASGI, so event streams pass through untouched."""

    def __init__(self, app, name: str) -> None:
        self.app = app
        self.header = (b"x-kontext-ingress", name.encode())

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_header(message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), self.header]}
            await send(message)

        await self.app(scope, receive, send_with_header)


def engine_deployment(settings: Settings):
    """The engine deployment: one job per replica, autoscaled between the bounds."""
    return serve.deployment(
        EngineReplica, name=ENGINE,
        ray_actor_options={"num_gpus": settings.ray_gpus_per_replica,
                           "num_cpus": settings.ray_cpus_per_replica},
        # One job per GPU; what waits beyond the lane's queue is refused (429).
        max_ongoing_requests=1,
        max_queued_requests=settings.queue_size + settings.ray_max_replicas,
        autoscaling_config={
            "min_replicas": settings.ray_min_replicas,
            "max_replicas": settings.ray_max_replicas,
            "target_ongoing_requests": settings.ray_target_ongoing_requests,
        },
        # A replica loads and warms up in its constructor: give it time.
        health_check_timeout_s=60, graceful_shutdown_timeout_s=settings.shutdown_grace_seconds,
    )


def ingress_deployment(settings: Settings):
    """The ingress deployment (CPU only)."""
    wrapped = serve.ingress()(KontextIngress)
    return serve.deployment(
        wrapped, name=INGRESS, num_replicas=settings.ray_ingress_replicas,
        ray_actor_options={"num_cpus": settings.ray_ingress_cpus},
        max_ongoing_requests=INGRESS_MAX_ONGOING,
        graceful_shutdown_timeout_s=settings.shutdown_grace_seconds + 5,
    )


def build_app(settings: Settings, factory=None) -> Application:
    """The application for `settings`; `factory(device) -> Engine` replaces the engine
    the settings describe (tests: a tiny engine that can be held or crashed)."""
    cpu_threads = max(1, round(settings.ray_cpus_per_replica))
    engine = engine_deployment(settings).bind(settings, factory, cpu_threads)
    return ingress_deployment(settings).bind(settings, engine)


def app_settings(args: dict[str, Any]) -> Settings:
    """The settings of a Serve config's `args:`: Settings fields, as in a settings file;
    `config` names such a file, whose keys the args and KONTEXT_* variables override.
    A key no setting has is a ValueError of one line naming it."""
    from pydantic import ValidationError

    from server.settings.files import unknown_key

    try:
        return Settings(**args)
    except ValidationError as exc:
        unknown = [str(e["loc"][0]) for e in exc.errors() if e["type"] == "extra_forbidden"]
        if unknown:
            raise ValueError("; ".join(unknown_key(name, Settings.model_fields,
                                                   args.get("config")) for name in unknown)
                             ) from None
        raise


def app_builder(args: dict[str, Any]) -> Application:
    """`serve run server.ray.app:app_builder key=value …`, or a Serve config's `args:`:
    Settings fields, or `config: FILE` (a settings file), or both (app_settings)."""
    return build_app(app_settings(args))


def serve_on_ray(settings: Settings) -> int:
    """`kontext serve --ray-address ADDRESS`: deploy on that cluster and serve until stopped."""
    import ray

    ray.init(address=settings.ray_address)
    serve.start(http_options={"host": settings.host, "port": settings.port})
    serve.run(build_app(settings), name="kontext", route_prefix="/", blocking=True)
    return 0
