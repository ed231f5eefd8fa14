"""Several input images in one Kontext edit (docs/multi-reference.md; positions and the
budget: docs/engine.md).

  plan.py      what each input is fed as (size, rotary index, offset) within a token budget
  pipeline.py  FluxKontextPipeline that appends the references' tokens after the canvas's
"""
