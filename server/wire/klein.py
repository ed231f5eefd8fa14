"""Configs of the FLUX.2 [klein] job types (4B, 9B and the unversioned names).

The hosted API documents its FLUX.2 job types (`inference.flux-2.{pro,flex}.*`) with
`prompt`, `width`/`height` (multiples of 16; absent on img2img: the input's size), `seed`,
`safety_tolerance` and, where steps are tunable, `steps`; klein follows them. Where they
are silent we follow the dev-kontext fields (`progressive`, `loras`). klein is
step-distilled: steps default to 4 and there is no guidance field (the model has none).
"""

from __future__ import annotations

from pydantic import Field, field_validator

from pipelines.contract import KLEIN_4B, KLEIN_9B
from server.wire.base import MAX_SEED, JobConfig, random_seed
from server.wire.loras import LORAS_DESCRIPTION, MAX_LORAS_PER_JOB, LoraItem, check_unique

#: Output sides: 64–2048 in multiples of 16 (the hosted FLUX.2 types take up to 4096; we
#: stop at klein's 4 MP).
MIN_SIDE, MAX_SIDE, SIDE_UNIT = 64, 2048, 16
#: The steps the distilled klein models are made for.
DEFAULT_STEPS = 4
#: Input images of an img2img job: every one a reference.
MAX_KLEIN_INPUTS = 4


def klein_type(size: str | None, task: str) -> str:
    """The wire name: inference.flux-2.klein[.4b|.9b].{txt2img,img2img}.v1."""
    middle = f"klein.{size}" if size else "klein"
    return f"inference.flux-2.{middle}.{task}.v1"


KLEIN_4B_TXT2IMG, KLEIN_4B_IMG2IMG = klein_type("4b", "txt2img"), klein_type("4b", "img2img")
KLEIN_9B_TXT2IMG, KLEIN_9B_IMG2IMG = klein_type("9b", "txt2img"), klein_type("9b", "img2img")
KLEIN_TXT2IMG, KLEIN_IMG2IMG = klein_type(None, "txt2img"), klein_type(None, "img2img")
#: The model family each klein job type asks for; "klein" (the unversioned names) is
#: klein-4b when served, else klein-9b (server/jobs/backends/local.py: model_for).
KLEIN_MODELS = {KLEIN_4B_TXT2IMG: KLEIN_4B, KLEIN_4B_IMG2IMG: KLEIN_4B,
                KLEIN_9B_TXT2IMG: KLEIN_9B, KLEIN_9B_IMG2IMG: KLEIN_9B,
                KLEIN_TXT2IMG: "klein", KLEIN_IMG2IMG: "klein"}


class _KleinConfig(JobConfig):
    # The hosted FLUX.2 types take 32768 characters; a job's JSON is capped at 64 KiB here
    # (max_json_bytes) and the text encoder reads 512 tokens: dev-kontext's 4096.
    prompt: str = Field(min_length=1, max_length=4096,
                        description="The prompt, or the edit instruction.")
    seed: int = Field(default_factory=random_seed, ge=0, le=MAX_SEED,
                      description="Random seed; absent means random, and the seed used is "
                      "echoed.")
    steps: int = Field(DEFAULT_STEPS, ge=1, le=50, description="Denoising steps (the "
                       "distilled model is made for 4).")
    safety_tolerance: int = Field(2, ge=0, le=5, description="Content filter tolerance, 0 "
                                  "(strict) to 5 (permissive); applies when the server "
                                  "runs its content filter.")
    progressive: bool = Field(False, description="Write a progressive JPEG when output is "
                              "JPEG.")
    loras: list[LoraItem] | None = Field(None, max_length=MAX_LORAS_PER_JOB, title="LoRAs",
                                         description=LORAS_DESCRIPTION)

    _unique_loras = field_validator("loras")(check_unique)


class KleinTxt2ImgConfig(_KleinConfig):
    """Config of `inference.flux-2.klein[.4b|.9b].txt2img.v1`: an image from a prompt."""

    width: int = Field(1024, ge=MIN_SIDE, le=MAX_SIDE, multiple_of=SIDE_UNIT,
                       description="Output width: 64–2048, a multiple of 16.")
    height: int = Field(1024, ge=MIN_SIDE, le=MAX_SIDE, multiple_of=SIDE_UNIT,
                        description="Output height: 64–2048, a multiple of 16.")


class KleinImg2ImgConfig(_KleinConfig):
    """Config of `inference.flux-2.klein[.4b|.9b].img2img.v1`: an edit of 1 to 4 input
    images, every one a reference."""

    width: int | None = Field(None, ge=MIN_SIDE, le=MAX_SIDE, multiple_of=SIDE_UNIT,
                              description="Output width: 64–2048, a multiple of 16; absent: "
                              "the first input's (at most 1024², multiples of 16).")
    height: int | None = Field(None, ge=MIN_SIDE, le=MAX_SIDE, multiple_of=SIDE_UNIT,
                               description="Output height; see width.")
