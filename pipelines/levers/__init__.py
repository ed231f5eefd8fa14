"""The speed and memory levers of an engine (docs/engine.md, "Tiers").

  plan.py        EnginePlan: which levers a tier and memory mode apply on this machine
  apply.py       applying a plan to a loaded pipeline, in order
  attention.py   the attention backend: set explicitly, chosen by measurement
  attention_fp8.py  fp8 attention: FlashAttention 3 with float8 q/k/v (fp8 tiers, Hopper)
  quantize.py    fused QKV and torchao float8 linears (which linears stay bf16)
  cuda_graphs.py CUDA graphs of whole transformer forwards, for repeated geometries
  step_cache.py  turbo's step cache: predicted transformer forwards
"""
