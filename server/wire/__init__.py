"""The wire format: pydantic models of job configs, style presets and job answers."""
