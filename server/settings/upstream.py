"""Settings of forwarding [pro]/[max] jobs upstream, and of the local fallback."""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import BaseModel, Field, FilePath, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from server.settings.common import MB, Size, plaintext_refusal, split_commas


class UpstreamSettings(BaseModel):
    """Forwarding [pro]/[max] jobs upstream, and the local fallback."""

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
    upstream_max_bytes: Size = Field(
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

    @model_validator(mode="after")
    def _upstream_transport(self) -> Self:
        # Only the selected upstream's URL carries a credential; the other is never used.
        field = {"hosted": "hosted_url", "bfl": "bfl_url"}.get(self.upstream)
        refusal = plaintext_refusal(getattr(self, field), self.upstream_allow_plaintext) \
            if field else None
        if refusal:
            raise ValueError(f"{field}: {refusal}")
        return self

    @field_validator("upstream_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        hosts = split_commas(value)
        return [h.lower() for h in hosts if h] if isinstance(hosts, list) else hosts

    def upstream_credential(self) -> SecretStr | None:
        """The selected upstream's token or key, from the variable its *_env field names."""
        import os

        name = {"hosted": self.hosted_token_env, "bfl": self.bfl_key_env}.get(self.upstream)
        value = os.environ.get(name, "").strip() if name else ""
        return SecretStr(value) if value else None
