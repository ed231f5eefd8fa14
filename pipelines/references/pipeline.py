"""FluxKontextPipeline that appends more reference images after the canvas's tokens.

Stock Kontext encodes its one image, packs it into 2×2-patch tokens and gives every token
the rotary ids (1, row, column); the denoising loop appends those tokens to the noisy ones.
This subclass changes one step, `prepare_latents`: while `appending(...)` is active it
encodes each reference exactly as stock encodes the canvas and appends its tokens and ids
(index, row + top, column + left) after the canvas's. Outside it, it is stock diffusers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from diffusers import FluxKontextPipeline
from PIL import Image

from pipelines.references.plan import AppendedReferences, FedImage


class KontextMultiReferencePipeline(FluxKontextPipeline):
    """FluxKontextPipeline plus references appended for the duration of `appending`."""

    _appended: AppendedReferences | None = None

    @classmethod
    def from_stock(cls, pipe: FluxKontextPipeline) -> KontextMultiReferencePipeline:
        """The same components (no copy) behind this class."""
        # Not DiffusionPipeline.from_pipe: it casts the new pipeline to float32 by default.
        return cls(**pipe.components)

    @contextlib.contextmanager
    def appending(self, appended: AppendedReferences | None) -> Iterator[None]:
        """Append `appended` in the pipeline calls inside this block (None: nothing)."""
        self._appended = appended
        try:
            yield
        finally:
            self._appended = None  # never leak one job's references into the next

    def prepare_latents(self, image, batch_size, num_channels_latents, height, width, dtype,
                        device, generator=None, latents=None):
        """Stock `prepare_latents`, then the appended references' tokens and ids."""
        latents, image_latents, latent_ids, image_ids = super().prepare_latents(
            image, batch_size, num_channels_latents, height, width, dtype, device, generator,
            latents)
        appended = self._appended
        if appended is None:
            return latents, image_latents, latent_ids, image_ids
        if image_latents is None or batch_size != 1:
            raise ValueError("appended references need a canvas image and a batch of one")
        # float32 ids: bf16 holds integers exactly only up to 256, and laid-out references
        # can reach further (the transformer turns ids into float32 positions anyway).
        tokens, ids = [image_latents], [image_ids.float()]
        for reference, fed in zip(appended.images, appended.fed, strict=True):
            packed, packed_ids = self._encode_reference(reference, fed, num_channels_latents,
                                                        dtype, device, generator)
            tokens.append(packed)
            ids.append(packed_ids)
        return latents, torch.cat(tokens, dim=1), latent_ids, torch.cat(ids, dim=0)

    def _encode_reference(self, image: Image.Image, fed: FedImage, channels: int, dtype,
                          device, generator) -> tuple[torch.Tensor, torch.Tensor]:
        """One reference through the canvas's own steps: resize, preprocess, VAE, pack, ids."""
        if image.mode != "RGB":
            image = image.convert("RGB")
        pixels = self.image_processor.resize(image, fed.height, fed.width)
        pixels = self.image_processor.preprocess(pixels, fed.height, fed.width)
        encoded = self._encode_vae_image(pixels.to(device=device, dtype=dtype), generator)
        rows, cols = encoded.shape[2:]
        packed = self._pack_latents(encoded, 1, channels, rows, cols)
        ids = self._prepare_latent_image_ids(1, rows // 2, cols // 2, device, torch.float32)
        ids[..., 0] = fed.index
        ids[..., 1] += fed.top
        ids[..., 2] += fed.left
        return packed, ids
