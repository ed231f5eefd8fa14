"""The `kontext` command: serve, weights tools, and the batch client."""
