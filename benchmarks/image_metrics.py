"""How far one output is from another: relative L2 of latents, PSNR and SSIM of images.

SSIM (structural similarity) comes from torchmetrics (a well-kept library, light: torch,
numpy and two small pure-Python packages; the GPU machine's image has it), so that a lossy
lever is judged by more than PSNR: published fp8 recipes lose several dB of PSNR while
structure stays close.
"""

from __future__ import annotations

import math

import numpy as np


def relative_l2(latents: np.ndarray, reference: np.ndarray) -> float:
    """‖a − b‖ / ‖b‖ of two latent arrays (0 when identical)."""
    denominator = max(float(np.linalg.norm(reference)), 1e-30)
    return float(np.linalg.norm(latents - reference)) / denominator


def psnr_db(image: np.ndarray, reference: np.ndarray) -> float:
    """PSNR of two 8-bit images in dB (inf when identical)."""
    mse = float(np.mean((image.astype(np.float64) - reference.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def ssim(image: np.ndarray, reference: np.ndarray) -> float:
    """Structural similarity of two 8-bit RGB images (1.0 when identical), torchmetrics'
    Gaussian-window SSIM over the whole image."""
    import torch
    from torchmetrics.functional.image import structural_similarity_index_measure

    def tensor(array: np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)[None].double()

    value = structural_similarity_index_measure(tensor(image), tensor(reference),
                                                data_range=255.0)
    return float(value)


def describe(latents, image, ref_latents, ref_image) -> dict:
    """Every measure of one output against the reference output, JSON-able."""
    psnr = psnr_db(image, ref_image)
    return {"relative_l2": float(f"{relative_l2(latents, ref_latents):.3e}"),
            "psnr_db": None if math.isinf(psnr) else round(psnr, 2),
            "ssim": round(ssim(image, ref_image), 4),
            "finite": bool(np.isfinite(latents).all())}
