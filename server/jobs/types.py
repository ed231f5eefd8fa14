"""The one table of job types: each row is a config model and the backend that runs it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pipelines.contract import MAX_INPUT_IMAGES
from server.errors import UnknownJobType
from server.wire.base import WireModel
from server.wire.hosted import (
    MAX_IMG2IMG,
    MAX_TXT2IMG,
    PRO_IMG2IMG,
    PRO_TXT2IMG,
    HostedImg2ImgConfig,
    HostedTxt2ImgConfig,
)
from server.wire.klein import (
    KLEIN_MODELS,
    MAX_KLEIN_INPUTS,
    KleinImg2ImgConfig,
    KleinTxt2ImgConfig,
)
from server.wire.models import DevKontextConfig

DEV_KONTEXT = "inference.flux-fast.dev-kontext.img2img.v1"

Backend = Literal["local", "upstream"]


@dataclass(frozen=True)
class JobType:
    """A job type: how its config is validated, how many input images it takes (distinct
    ones, from `min_inputs` to `max_inputs`), who runs it."""

    name: str
    config_model: type[WireModel]
    min_inputs: int
    max_inputs: int
    backend: Backend
    #: The local model family it runs on (`--models`), for local jobs: kontext-dev,
    #: klein-4b, klein-9b, or "klein" (klein-4b when served, else klein-9b).
    model: str | None = None


JOB_TYPES: dict[str, JobType] = {
    # The image to edit, then up to three references (our multi-reference extension).
    DEV_KONTEXT: JobType(DEV_KONTEXT, DevKontextConfig, 1, MAX_INPUT_IMAGES, backend="local",
                         model="kontext-dev"),
    # Hosted-only [pro]/[max]: forwarded upstream, or run on [dev] with --fallback local.
    # One image, as the hosted job types document (docs/forwarding.md: BFL's experimental
    # input_image_2..4 are not part of the hosted wire format).
    PRO_TXT2IMG: JobType(PRO_TXT2IMG, HostedTxt2ImgConfig, 0, 0, backend="upstream"),
    PRO_IMG2IMG: JobType(PRO_IMG2IMG, HostedImg2ImgConfig, 1, 1, backend="upstream"),
    MAX_TXT2IMG: JobType(MAX_TXT2IMG, HostedTxt2ImgConfig, 0, 0, backend="upstream"),
    MAX_IMG2IMG: JobType(MAX_IMG2IMG, HostedImg2ImgConfig, 1, 1, backend="upstream"),
}


def _klein(name: str, model: str) -> JobType:
    """A klein row: text to image (no input), or an edit of 1 to 4 references."""
    if ".txt2img." in name:
        return JobType(name, KleinTxt2ImgConfig, 0, 0, backend="local", model=model)
    return JobType(name, KleinImg2ImgConfig, 1, MAX_KLEIN_INPUTS, backend="local", model=model)


# FLUX.2 [klein] on the local engines (docs/models.md).
JOB_TYPES.update({name: _klein(name, model) for name, model in KLEIN_MODELS.items()})


def lookup(name: str) -> JobType:
    """The job type called `name`, or UnknownJobType listing the supported ones."""
    try:
        return JOB_TYPES[name]
    except KeyError:
        supported = ", ".join(JOB_TYPES)  # in table order: dev-kontext first
        raise UnknownJobType(
            f"unknown job type {name!r}; this server supports: {supported}", field="type"
        ) from None
