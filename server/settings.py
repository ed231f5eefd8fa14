"""The one settings object. Read once from KONTEXT_* environment variables and CLI flags.

Every field's description is its --help text; nothing else in the project reads os.environ.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, FilePath, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MB = 1024 * 1024
#: Marks the fields `kontext batch` takes as flags too (engine and image settings).
BATCH = {"json_schema_extra": {"batch": True}}


def default_cache_dir() -> Path:
    """Where the demo checkpoint is written: $XDG_CACHE_HOME/kontext or ~/.cache/kontext."""
    import os

    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "kontext"


def split_commas(value: object) -> object:
    """A comma-separated string, or a list of them, as one list of stripped items."""
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return [part.strip() for item in value for part in item.split(",")]
    return value


class Settings(BaseSettings):
    """Server configuration. Environment variable for each field: KONTEXT_<FIELD_NAME>."""

    model_config = SettingsConfigDict(env_prefix="KONTEXT_", extra="forbid")

    weights: str | None = Field(
        None,
        description="FLUX.1-Kontext-dev weights: a diffusers-layout folder, a Hugging Face repo "
        "id already in the local cache, or BFL's flux1-kontext-dev.safetensors file.", **BATCH
    )
    base_weights: str | None = Field(
        None,
        description="With a single-file transformer: the folder or cached repo id holding the "
        "other components (text encoders, VAE, tokenizers). Default: "
        "black-forest-labs/FLUX.1-Kontext-dev from the local cache.", **BATCH
    )
    demo: bool = Field(
        False,
        description="Run on a tiny random checkpoint (CPU, no weights needed). Images are noise.",
        **BATCH,
    )
    demo_dir: Path = Field(
        default_factory=lambda: default_cache_dir() / "tiny-checkpoint",
        description="Where --demo writes (once) and loads its tiny checkpoint.", **BATCH
    )
    host: str = Field("127.0.0.1", description="Address to bind.")
    port: int = Field(8000, ge=0, le=65535, description="Port to bind (0 picks a free one).")
    device: Literal["auto", "cuda", "cpu"] = Field(
        "auto", description="Device for the local engine; auto picks cuda when present.", **BATCH
    )
    queue_size: int = Field(
        16, ge=1, description="Jobs that may wait for the GPU; past this, 429 with Retry-After."
    )

    # --- Every GPU of a machine (issue 11) ---
    devices: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Run one engine per device, all fed from one queue: `all` (every GPU), "
        "GPU indices `0,1,3`, or `cpu,cpu` (two CPU engines). Empty: one engine on --device.",
    )
    device_workers: Literal["process", "thread"] = Field(
        "process",
        description="With --devices: run each device's engine in a process of its own "
        "(a crash or CUDA fault takes down that device only, which is restarted) or in a "
        "thread of the server's process.",
    )
    ready_devices: int | None = Field(
        None, ge=1,
        description="With --devices: how many devices must be ready for /readyz to say "
        "ready and for jobs to be taken. Default: all of them.",
    )
    tokens: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Bearer tokens accepted (comma-separated in the environment). Empty: no "
        "authentication.",
    )
    warmup: bool = Field(True, description="Run one warm-up edit before reporting ready.")
    warmup_steps: int = Field(2, ge=1, le=50, description="Denoising steps of the warm-up edit.")
    max_body_bytes: int = Field(
        12 * MB, ge=1024, description="Largest request body accepted; larger is 413."
    )
    max_input_bytes: int = Field(
        10 * MB, ge=1024, description="Largest input image file accepted; larger is 400.", **BATCH
    )
    max_input_parts: int = Field(
        4, ge=1, description="Most `input` parts accepted in one multipart request."
    )
    jpeg_quality: int = Field(92, ge=1, le=100, description="Quality of JPEG outputs.", **BATCH)
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Log level.", **BATCH
    )

    # --- GPU engine tiers and memory modes (issue 4) ---
    tier: Literal["exact", "fp8", "turbo"] = Field(
        "exact",
        description="Engine tier: `exact` (bf16, no lossy lever), `fp8` (torchao float8 "
        "linears; CUDA with compute capability 8.9+ and torchao) or `turbo` (fp8 plus a "
        "TaylorSeer step cache that computes the first 25% of steps in full).", **BATCH
    )
    memory_mode: Literal["full", "24gb", "16gb"] = Field(
        "full",
        description="GPU memory budget: `full` (everything on the GPU), `24gb` (transformer "
        "weights at one byte each, T5 streamed from CPU memory) or `16gb` (transformer and T5 "
        "streamed from CPU memory; exact tier only). CUDA only.", **BATCH
    )

    # --- Production: auth, limits, logs, shutdown (issue 6) ---
    token_file: Path | None = Field(
        None,
        description="File of bearer tokens, one per line (`#` starts a comment); used together "
        "with --tokens.",
    )
    allow_open: bool = Field(
        False,
        description="Allow binding a non-loopback address with no tokens configured (anyone "
        "who can reach the port may run jobs).",
    )
    open_probes: bool = Field(
        True, description="Serve /healthz, /readyz and /metrics without a token."
    )
    max_json_bytes: int = Field(
        64 * 1024, ge=1024, description="Largest job JSON (body or `job` part); larger is 413."
    )
    max_json_depth: int = Field(
        32, ge=2, le=256, description="Deepest nesting accepted in the job JSON; deeper is 400."
    )
    job_timeout_seconds: float = Field(
        600.0, gt=0,
        description="Seconds one local job may run on the engine (queue wait excluded); past "
        "this it is cancelled and answered 504.",
    )
    shutdown_grace_seconds: float = Field(
        60.0, ge=0,
        description="On SIGTERM: seconds queued and running jobs get to finish before they "
        "are cancelled (a second SIGTERM cancels at once).",
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="Log lines as text, or as one JSON object per line."
    )
    log_prompts: bool = Field(
        False, description="Debugging aid: log job prompts (never logged otherwise)."
    )

    # --- Many machines on Ray Serve (issue 11; pip install 'kontext-server[ray]') ---
    ray_address: str | None = Field(
        None,
        description="Serve on Ray Serve instead of in this process: `auto` (the Ray cluster "
        "this machine belongs to) or a cluster address. The engine runs in replicas of one "
        "GPU each, autoscaled between --ray-min-replicas and --ray-max-replicas.",
    )
    ray_min_replicas: int = Field(1, ge=1, description="Fewest engine replicas on Ray Serve.")
    ray_max_replicas: int = Field(
        1, ge=1, description="Most engine replicas on Ray Serve (one GPU each); the queue's "
        "bound counts this many running jobs."
    )
    ray_target_ongoing_requests: float = Field(
        1.0, gt=0,
        description="Autoscaling target: jobs per engine replica, running and queued (1: "
        "add a replica as soon as jobs wait).",
    )
    ray_gpus_per_replica: float = Field(
        1.0, ge=0, description="GPUs each engine replica reserves (0 for CPU engines)."
    )
    ray_cpus_per_replica: float = Field(
        1.0, gt=0, description="CPUs each engine replica reserves (fractions allowed)."
    )
    ray_ingress_replicas: int = Field(
        1, ge=1, description="Replicas of the HTTP ingress on Ray Serve (CPU only)."
    )
    ray_ingress_cpus: float = Field(
        0.5, gt=0, description="CPUs each ingress replica reserves (fractions allowed)."
    )

    # --- Forwarding [pro]/[max] jobs upstream, and the local fallback (issue 3) ---
    upstream: Literal["none", "hosted", "bfl"] = Field(
        "none",
        description="Where [pro]/[max] jobs go: `hosted` (a /v2/job API), `bfl` (Black Forest "
        "Labs' API) or `none` (answered 503 unless --fallback local).",
    )
    hosted_url: str = Field(
        "https://inference.prodia.com/v2",
        description="Base URL of the hosted /v2/job API (jobs are POSTed to <url>/job).",
    )
    hosted_token_env: str = Field(
        "PRODIA_TOKEN", description="Environment variable holding the hosted API's token."
    )
    bfl_url: str = Field(
        "https://api.bfl.ai",
        description="Base URL of Black Forest Labs' API: https://api.bfl.ai (global), "
        "https://api.eu.bfl.ai or https://api.us.bfl.ai.",
    )
    bfl_key_env: str = Field(
        "BFL_API_KEY", description="Environment variable holding the BFL API key."
    )
    upstream_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["bfl.ai"],
        description="Host names (and their subdomains) that BFL's polling and result URLs may "
        "point to (comma-separated). URLs elsewhere, or not https, are refused.",
    )
    upstream_ca_file: FilePath | None = Field(
        None, description="Extra CA certificates (PEM) trusted for upstream HTTPS, beside the "
        "system's."
    )
    upstream_timeout: float = Field(
        60.0, gt=0, description="Seconds one upstream HTTP request may take."
    )
    upstream_job_timeout: float = Field(
        300.0, gt=0, description="Seconds a forwarded job may take in all, polling included."
    )
    upstream_retry_budget: float = Field(
        30.0, ge=0,
        description="Seconds a job may spend waiting on upstream 429 Retry-After before the "
        "client is answered 429.",
    )
    upstream_max_in_flight: int = Field(
        8, ge=1, description="Forwarded jobs in flight at once; past this, 429 with Retry-After."
    )
    upstream_poll_interval: float = Field(
        0.5, gt=0, description="Seconds before BFL's first poll; the wait grows ×1.5 to 5 s."
    )
    upstream_max_bytes: int = Field(
        50 * MB, ge=1024, description="Largest upstream answer or result image accepted."
    )
    fallback: Literal["none", "local"] = Field(
        "none",
        description="With --upstream none: `local` runs [pro]/[max] jobs on the local [dev] "
        "model (prompt_upsampling and safety_tolerance are not applied).",
    )
    fallback_steps: int = Field(
        30, ge=1, le=50, description="Denoising steps of a [pro]/[max] job run on [dev]."
    )

    # --- Async jobs (POST /v2/job/async) and their results on disk (issue 5) ---
    results_dir: Path = Field(
        default_factory=lambda: default_cache_dir() / "results",
        description="Where async jobs' records and outputs are kept, so a restart loses no "
        "finished result (created on first use).",
    )
    results_retention_seconds: float = Field(
        24 * 3600.0, gt=0,
        description="How long an async job and its outputs are kept after it was created (its "
        "expires_at); then it answers 404 and is deleted.",
    )
    results_cleanup_seconds: float = Field(
        60.0, gt=0, description="How often expired async jobs are deleted from results_dir."
    )
    async_queue_size: int = Field(
        64, ge=1,
        description="Async jobs that may be unfinished at once; past this, POST /v2/job/async "
        "answers 429 with Retry-After.",
    )

    @field_validator("tokens", mode="before")
    @classmethod
    def _split_tokens(cls, value: object) -> object:
        # The flag (repeatable) and the environment both split on commas; spaces around a
        # token are dropped; an empty token would let `Authorization: Bearer ` in.
        tokens = split_commas(value)
        if isinstance(tokens, list) and not all(tokens):
            raise ValueError("a token is empty or only spaces; remove it or give a real one")
        return tokens

    @field_validator("devices", mode="before")
    @classmethod
    def _split_devices(cls, value: object) -> object:
        devices = split_commas(value)
        if isinstance(devices, list):
            from pipelines.devices import parse_device  # plain string work, no torch
            from pipelines.errors import InvalidInput

            for item in devices:
                try:
                    if item.lower() != "all":
                        parse_device(item)
                except InvalidInput as exc:
                    raise ValueError(str(exc)) from exc
        return devices

    @field_validator("upstream_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        hosts = split_commas(value)
        return [h.lower() for h in hosts if h] if isinstance(hosts, list) else hosts

    @model_validator(mode="after")
    def _replica_bounds(self) -> Settings:
        if self.ray_min_replicas > self.ray_max_replicas:
            raise ValueError(f"ray_min_replicas ({self.ray_min_replicas}) is above "
                             f"ray_max_replicas ({self.ray_max_replicas})")
        return self

    def upstream_credential(self) -> SecretStr | None:
        """The selected upstream's token or key, from the variable its *_env field names."""
        import os

        name = {"hosted": self.hosted_token_env, "bfl": self.bfl_key_env}.get(self.upstream)
        value = os.environ.get(name, "").strip() if name else ""
        return SecretStr(value) if value else None

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, **_rest):
        # CLI flags arrive as init kwargs and win over the environment; no .env files.
        return (init_settings, env_settings)
