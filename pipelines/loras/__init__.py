"""LoRAs per job on the local [dev] model (docs/loras.md; the slots: docs/engine.md).

  choices.py  the rules a job's LoRA list must follow (torch-free; the server reuses them)
  formats.py  what a .safetensors file holds: layout, rank, claimed base model (torch-free)
  library.py  the LoRA folder, rescanned cheaply on every listing (torch-free)
  cache.py    loaded adapters kept in memory, least recently used evicted by bytes
  loading.py  a file → an adapter ready for the slots, through diffusers' own converters
  slots.py    fixed-rank LoRA slots in the transformer, switched in place (no recompile)
  manager.py  the engine's one entry point: switch a job's LoRAs in, reset, list, stats
"""
