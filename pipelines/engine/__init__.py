"""The FLUX.1 Kontext [dev] engine (docs/engine.md).

  kontext.py     KontextEngine: load → warm up → run … → close, its edit in numbered steps
  options.py     EngineOptions: device, tier, memory mode, warm-up, budget, LoRA folder
  devices.py     picking the device, counting GPUs, CPU threads, freeing memory on failure
  warmup.py      the shapes a job can send, and the warm-up edits that cover them
  step_timer.py  per-step times measured where the work runs; the per-step callback
  grad_mode.py   inference_mode, or no_grad where it fails
  quiet.py       third-party warnings that do not apply, silenced at their source
"""
