"""Weights on local disk, never downloaded (weights/README.md).

  source.py  where weights come from (folder, cached repo, single file) and loading them
  check.py   `kontext weights check`: what a folder, repo or file holds, headers only
  files.py   safetensors headers, a component's files and shards, a single-file transformer
  fit.py     tensors matched against each component's config on the meta device
  report.py  what the check found, and its rendering
  tiny.py    the tiny random checkpoint of demo mode and the tests (real classes)
"""
