"""An image classifier check (e.g. an NSFW ViT) loaded through transformers from local disk.

The model comes from a folder (config.json + weights + preprocessor_config.json) or from a
Hugging Face repo id already in the local cache; it is never downloaded at run time.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

from PIL import Image

from pipelines.errors import WeightsError
from pipelines.safety.verdict import CLEAN, Verdict

DEFAULT_MODEL = "Falconsai/nsfw_image_detection"
#: Black Forest Labs' reference code flags an image when its "nsfw" score passes 0.85.
DEFAULT_THRESHOLD = 0.85
#: Label names (compared case-insensitively) that count as unsafe unless configured:
#: Falconsai's "nsfw" and the unsafe classes of other common NSFW classifiers.
DEFAULT_UNSAFE_LABELS = frozenset({"nsfw", "porn", "hentai", "explicit", "unsafe", "sexual"})
HELP = "See weights/README.md, section 'Safety classifier', to fetch it once."


def _local_folder(location: str, cache_dir: Path | None) -> str:
    """The folder to load from: `location` itself, or the repo's snapshot in the local
    Hugging Face cache. Resolved here, offline, because transformers 5 still asks the Hub
    for adapter_config.json when given a repo id, even with local_files_only=True (about
    25 s of retries on a machine without network)."""
    source = Path(location).expanduser()
    if source.is_dir():
        return str(source)
    if location.startswith((".", "/", "~")) or location.count("/") != 1:
        raise FileNotFoundError(f"no such folder: {source}")  # a path, not a repo id
    from huggingface_hub import snapshot_download

    return snapshot_download(location, local_files_only=True, cache_dir=cache_dir)


def _load(location: str, cache_dir: Path | None):
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    try:
        folder = _local_folder(location, cache_dir)
        model = AutoModelForImageClassification.from_pretrained(folder, local_files_only=True)
        processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        raise WeightsError(
            f"Safety image classifier {location!r} is not on local disk or not loadable "
            f"({type(exc).__name__}: {first_line}). {HELP}"
        ) from exc
    return model, processor


def _unsafe_indices(id2label: dict[int, str], unsafe: Iterable[str], location: str
                    ) -> dict[int, str]:
    wanted = {label.lower() for label in unsafe}
    found = {int(i): label.lower() for i, label in id2label.items() if label.lower() in wanted}
    if not found:
        raise WeightsError(
            f"Safety image classifier {location!r} has labels "
            f"{sorted(id2label.values())}; none of them is in the unsafe labels "
            f"{sorted(wanted)}. Name the unsafe ones (safety_unsafe_labels).")
    return found


class ImageClassifierCheck:
    """Flags an image when the probability of any unsafe label reaches `threshold`."""

    name = "image-classifier"

    def __init__(self, location: str = DEFAULT_MODEL, *, threshold: float = DEFAULT_THRESHOLD,
                 device: str = "cpu", unsafe_labels: Iterable[str] = DEFAULT_UNSAFE_LABELS,
                 cache_dir: Path | None = None) -> None:
        """Load the model and its image processor offline; raise WeightsError if either is
        missing, or if none of the model's labels counts as unsafe."""
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"safety threshold must be in [0, 1], got {threshold}")
        model, self.processor = _load(location, cache_dir)
        self.model = model.eval().to(device)
        self.location, self.threshold, self.device = location, threshold, device
        self.unsafe = _unsafe_indices(model.config.id2label, unsafe_labels, location)
        self._multi_label = model.config.problem_type == "multi_label_classification"

    def check_text(self, text: str) -> Verdict:
        """Prompts are the term list's business."""
        return CLEAN

    def check_image(self, image: Image.Image) -> Verdict:
        """Score `image`; flagged categories are the unsafe labels at or over the threshold."""
        import torch

        start = time.perf_counter()
        pixels = self.processor(images=self._pre_resize(image.convert("RGB")),
                                return_tensors="pt")["pixel_values"]
        with torch.inference_mode():
            logits = self.model(pixel_values=pixels.to(self.device, self.model.dtype)).logits
        logits = logits[0].float()
        probs = logits.sigmoid() if self._multi_label else logits.softmax(-1)
        scores = {label: float(probs[i]) for i, label in self.unsafe.items()}
        categories = tuple(label for label, s in scores.items() if s >= self.threshold)
        return Verdict(bool(categories), categories, scores, time.perf_counter() - start)

    def _pre_resize(self, image: Image.Image) -> Image.Image:
        """Resize to the processor's fixed input size with its own filter first: the same
        pixels as letting it resize, without converting the full-size image to floats
        (about 35 ms saved per 1024² image on a 2-core CPU)."""
        size = getattr(self.processor, "size", None) or {}
        if not getattr(self.processor, "do_resize", False) or "height" not in size:
            return image
        target = (size["width"], size["height"])
        resample = getattr(self.processor, "resample", Image.Resampling.BILINEAR)
        return image if image.size == target else image.resize(target, resample)

    def describe(self) -> str:
        """E.g. `image-classifier: Falconsai/nsfw_image_detection on cpu, unsafe nsfw >= 0.85`."""
        return (f"image-classifier: {self.location} on {self.device}, unsafe "
                f"{', '.join(self.unsafe.values())} >= {self.threshold}")
