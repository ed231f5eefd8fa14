"""Everything that touches torch and diffusers. Nothing here knows about HTTP."""

from pipelines.quiet import silence_inapplicable_warnings

# Before any module of this package imports diffusers or transformers.
silence_inapplicable_warnings()
