"""`kontext batch`: many dev-kontext edits from a manifest or a folder, written to a folder.

Rows are validated with the server's own wire model and image rules, run in-process
(`--local`) or against any /v2/job server (`--server`), and recorded in a JSONL report.
Nothing here imports torch at module level.
"""
