"""The speed and memory levers of an engine (docs/engine.md, "Tiers").

  plan.py        EnginePlan: which levers a tier and memory mode apply on this machine
  apply.py       applying a plan to a loaded pipeline, in order
  attention.py   the attention backend: set explicitly, chosen by measurement
  quantize.py    fused QKV and torchao float8 linears
  step_cache.py  turbo's step cache: predicted transformer forwards
"""
