"""The wire format: pydantic models of job configs, style presets, multipart bodies, answers."""
