"""Everything that touches torch and diffusers. Nothing here knows about HTTP."""
