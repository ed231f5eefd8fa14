"""Everything that touches torch and diffusers. Nothing here knows about HTTP.

  contract.py  what the server sees of the engine (torch-free): requests, results, run
               control, the Engine interface, the LoRA catalog, the limits
  errors.py    the errors the engine raises on purpose (no HTTP status: the server maps them)
  engine/      the engine: KontextEngine, its options, its device, warm-up and step timing
  references/  several input images in one edit: how each is fed, the pipeline that feeds them
  levers/      speed and memory levers: the plan of a tier and memory mode, and applying it
  memory/      the GPU memory a memory mode needs, planned before any weight is read
  weights/     finding, loading and checking weights; the tiny demo checkpoint
  loras/       LoRAs per job: the folder, the adapter cache, the slots
  safety/      the content filter: term list and image classifier
"""

from pipelines.engine.quiet import silence_inapplicable_warnings

# Before any module of this package imports diffusers or transformers.
silence_inapplicable_warnings()
