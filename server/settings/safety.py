"""Settings of content safety and AI disclosure (docs/safety.md)."""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import BaseModel, Field, FilePath, field_validator, model_validator
from pydantic_settings import NoDecode

from server.settings.common import BATCH, split_commas


class SafetySettings(BaseModel):
    """Content safety and AI disclosure (docs/safety.md)."""

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
        "every output; needs --c2pa-key and `pip install -e '.[safety]'`.", **BATCH
    )
    c2pa_key: FilePath | None = Field(
        None, description="PEM private key (unencrypted) of --c2pa-cert.", **BATCH
    )
    c2pa_tsa_url: str | None = Field(
        None, description="RFC 3161 timestamp authority for C2PA signatures (needs network).",
        **BATCH
    )

    @field_validator("safety_unsafe_labels", mode="before")
    @classmethod
    def _split_labels(cls, value: object) -> object:
        labels = split_commas(value)
        return [label for label in labels if label] if isinstance(labels, list) else labels

    @model_validator(mode="after")
    def _c2pa_pair(self) -> Self:
        if (self.c2pa_cert is None) != (self.c2pa_key is None):
            raise ValueError("c2pa_cert and c2pa_key go together: give both or neither")
        return self
