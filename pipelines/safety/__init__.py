"""Content safety: a filter over prompts, input images and output images.

    from pipelines.safety import build_content_filter
    content_filter = build_content_filter(model="Falconsai/nsfw_image_detection")
    verdict = content_filter.check_text(prompt)       # and .check_image(pil_image)
    if verdict.flagged: ...  # verdict.categories, verdict.scores, verdict.seconds

torch and transformers are imported only when the image classifier is loaded or run.
"""

from pipelines.safety.classifier import (
    DEFAULT_MODEL,
    DEFAULT_THRESHOLD,
    DEFAULT_UNSAFE_LABELS,
    ImageClassifierCheck,
)
from pipelines.safety.content_filter import ContentFilter, build_content_filter
from pipelines.safety.normalize import normalize_text
from pipelines.safety.terms import BUILTIN_TERMS, TermCheck, read_terms_file
from pipelines.safety.verdict import CLEAN, SafetyCheck, Verdict

__all__ = [
    "BUILTIN_TERMS",
    "CLEAN",
    "DEFAULT_MODEL",
    "DEFAULT_THRESHOLD",
    "DEFAULT_UNSAFE_LABELS",
    "ContentFilter",
    "ImageClassifierCheck",
    "SafetyCheck",
    "TermCheck",
    "Verdict",
    "build_content_filter",
    "normalize_text",
    "read_terms_file",
]
