"""The one settings object. Read once from KONTEXT_* environment variables and CLI flags.

Every field's description is its --help text; nothing else in the project reads os.environ.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, FilePath, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from pipelines.references import (
    DEFAULT_REFERENCE_TOKEN_BUDGET,
    MAX_INPUT_IMAGES,
    MIN_REFERENCE_TOKEN_BUDGET,
)

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


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an address, IPv6 in brackets or not) is this machine only."""
    import ipaddress

    bare = host.strip("[]").lower().rstrip(".")
    if bare == "localhost":
        return True
    try:
        return ipaddress.ip_address(bare).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve anywhere


def plaintext_refusal(url: str, allow_plaintext: bool) -> str | None:
    """Why an upstream base URL may not carry a credential, or None when it may."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{url!r} is not an http(s) URL"
    if parts.scheme == "https" or allow_plaintext or is_loopback(parts.hostname):
        return None
    return (f"{url} is plain http to {parts.hostname}: the upstream credential would cross the "
            "network unencrypted; use https, or pass --upstream-allow-plaintext")


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
        # The official JS client sends each image twice: four images are eight parts.
        2 * MAX_INPUT_IMAGES, ge=1,
        description="Most `input` parts accepted in one multipart request (exact duplicates "
        "count; the official JS client sends each image twice).",
    )
    reference_token_budget: int = Field(
        DEFAULT_REFERENCE_TOKEN_BUDGET, ge=MIN_REFERENCE_TOKEN_BUDGET,
        description="Most latent tokens all input images of one [dev] job may add together "
        "(canvas and references; a 1024x1024 image is 4096): references are shrunk to fit. "
        "Bounds the cost of multi-reference jobs (docs/multi-reference.md).", **BATCH
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

    # --- LoRAs per job on the local [dev] model (issue 12, docs/loras.md) ---
    lora_dir: Path | None = Field(
        None,
        description="Folder of LoRA files: every *.safetensors under it (subfolders too) is "
        "a LoRA named by its relative path without the extension, for `config.loras` of "
        "dev-kontext jobs (GET /v2/loras lists them). Files added later are picked up without "
        "a restart. Unset: jobs with LoRAs are refused.", **BATCH
    )
    lora_cache_bytes: int = Field(
        4 * 1024**3, ge=0,
        description="Host memory for loaded LoRAs, least recently used evicted first (a "
        "rank-64 LoRA on every layer is ~0.7 GB in bf16).", **BATCH
    )
    lora_max_rank: int = Field(
        64, ge=1, le=1024,
        description="Rank of the LoRA slots: LoRAs up to this rank load. Each of the 3 slots "
        "costs rank × 5.4 M parameters of GPU memory (~0.7 GB at rank 64 in bf16) and a "
        "rank-sized LoRA's work per step, whatever the LoRA's own rank.", **BATCH
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

    # --- The HTTP edge: limits applied before any application code runs (issue 16) ---
    max_header_bytes: int = Field(
        32 * 1024, ge=1024, le=1024 * 1024,
        description="Largest request line plus headers accepted; larger is answered 431 and "
        "the connection closed, before the rest is read.",
    )
    header_timeout_seconds: float = Field(
        10.0, gt=0,
        description="Seconds a client has to send the request line and headers, from its "
        "connection (or, kept alive, from its next request's first byte); past this, 408 and "
        "the connection is closed (one that sent nothing is closed silently).",
    )
    body_timeout_seconds: float = Field(
        10.0, gt=0,
        description="Window over which --min-body-rate is measured while a request body is "
        "read; a window with less is answered 408 and the connection closed.",
    )
    min_body_rate: int = Field(
        8 * 1024, ge=1,
        description="Bytes per second a request body must arrive at, on average over each "
        "--body-timeout-seconds window (time the server itself is not reading does not count).",
    )
    max_connections: int = Field(
        1000, ge=4,
        description="Connections held open at once; one more is answered 503 with Retry-After "
        "and closed. The open-file limit is raised to fit.",
    )
    keep_alive_seconds: float = Field(
        65.0, gt=0,
        description="Seconds an idle keep-alive connection is kept between requests.",
    )
    max_body_bytes_in_flight: int = Field(
        64 * MB, ge=1024,
        description="Bytes of request bodies being read into memory at once, over all "
        "requests (each counted at its declared Content-Length, or max_body_bytes when "
        "undeclared); a body that does not fit is answered 429 with Retry-After before it is "
        "read.",
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
        description="Hosts (and their subdomains) that BFL's polling and result URLs may point "
        "to, comma-separated, each `host` (port 443) or `host:port`. URLs elsewhere, on another "
        "port, or not https, are refused.",
    )
    upstream_allow_plaintext: bool = Field(
        False,
        description="Allow an http:// --hosted-url / --bfl-url on a host other than loopback: "
        "the upstream credential then crosses the network unencrypted (logged loudly).",
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

    # --- Content safety and AI disclosure (issue 14; docs/safety.md) ---
    safety: Literal["block", "flag", "off"] = Field(
        "off",
        description="Content filter on the prompt (after style-preset expansion), every input "
        "image and every output image: `block` refuses what it flags (prompt/input 400, output "
        "403, no output byte returned or stored), `flag` serves it but marks the job "
        "(`moderation`, X-Kontext-Moderation) and counts it, `off` checks nothing. Off on real "
        "weights is said loudly at startup and in /readyz: the FLUX.1 [dev] licence §2(e)(i) "
        "asks for content filtering or a human review of every output.", **BATCH
    )
    safety_model: str = Field(
        "Falconsai/nsfw_image_detection",
        description="The content filter's image classifier (transformers layout): a folder, or "
        "a Hugging Face repo id already in the local cache. Never downloaded; see "
        "weights/README.md.", **BATCH
    )
    safety_threshold: float = Field(
        0.85, ge=0.0, le=1.0,
        description="An image is flagged when an unsafe label's probability reaches this.",
        **BATCH
    )
    safety_device: str = Field(
        "cpu",
        description="Device of the image classifier: `cpu` (never takes GPU memory) or e.g. "
        "`cuda` (about 350 MB; a few ms per image instead of ~0.5 CPU-core-seconds).", **BATCH
    )
    safety_unsafe_labels: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["nsfw", "porn", "hentai", "explicit", "unsafe", "sexual"],
        description="The classifier's labels that count as unsafe (comma-separated in the "
        "environment); the model must have at least one of them.", **BATCH
    )
    safety_terms_file: FilePath | None = Field(
        None,
        description="The operator's prompt term list: one regular expression per line, "
        "`[category]` lines naming the category of those after them (docs/safety.md). The "
        "built-in list (csam, ncii) is always on with --safety block|flag.", **BATCH
    )
    disclosure: Literal["on", "off"] = Field(
        "on",
        description="Machine-readable AI marks on every output (XMP DigitalSourceType, EXIF "
        "Make/Model/Software; C2PA with --c2pa-cert). `off` logs a warning: the FLUX.1 [dev] "
        "licence §2(e)(ii) asks for a disclosure where the law requires it.", **BATCH
    )
    disclosure_include_prompt: bool = Field(
        False, description="Write the prompt into each output's metadata (XMP and EXIF).",
        **BATCH
    )
    c2pa_cert: FilePath | None = Field(
        None,
        description="PEM certificate chain (signer first) for C2PA content credentials on "
        "every output; needs --c2pa-key and `pip install 'kontext-server[safety]'`.", **BATCH
    )
    c2pa_key: FilePath | None = Field(
        None, description="PEM private key (unencrypted) of --c2pa-cert.", **BATCH
    )
    c2pa_tsa_url: str | None = Field(
        None, description="RFC 3161 timestamp authority for C2PA signatures (needs network).",
        **BATCH
    )
    results_max_bytes: int = Field(
        10 * 1024 * MB, ge=1024 * 1024,
        description="Most bytes the results folder may hold; past this (after deleting expired "
        "jobs), POST /v2/job/async answers 507 before reading the request.",
    )
    results_min_free_bytes: int = Field(
        1024 * MB, ge=0,
        description="Free space to leave on the results folder's disk; with less (after "
        "deleting expired jobs), POST /v2/job/async answers 507 before reading the request.",
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

    @model_validator(mode="after")
    def _upstream_transport(self) -> Settings:
        # Only the selected upstream's URL carries a credential; the other is never used.
        field = {"hosted": "hosted_url", "bfl": "bfl_url"}.get(self.upstream)
        refusal = plaintext_refusal(getattr(self, field), self.upstream_allow_plaintext) \
            if field else None
        if refusal:
            raise ValueError(f"{field}: {refusal}")
        return self

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

    @field_validator("safety_unsafe_labels", mode="before")
    @classmethod
    def _split_labels(cls, value: object) -> object:
        labels = split_commas(value)
        return [label for label in labels if label] if isinstance(labels, list) else labels

    @model_validator(mode="after")
    def _c2pa_pair(self) -> Settings:
        if (self.c2pa_cert is None) != (self.c2pa_key is None):
            raise ValueError("c2pa_cert and c2pa_key go together: give both or neither")
        return self

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
