"""The tiny classifier of the tests is the demo one (pipelines/safety/demo_classifier.py):
it flags mostly-red images. Colours the tests use, by what the classifier says of them."""

from __future__ import annotations

from pipelines.safety.demo_classifier import build_demo_classifier as build_tiny_classifier
from pipelines.safety.demo_classifier import write_demo_classifier as write_tiny_classifier

__all__ = ["BLUE", "GREY", "RED", "build_tiny_classifier", "write_tiny_classifier"]

RED = (220, 30, 30)      # flagged
BLUE = (30, 30, 220)     # not flagged
GREY = (100, 100, 100)   # not flagged
