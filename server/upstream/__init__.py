"""Talking to an upstream API for forwarded [pro]/[max] jobs: a hosted /v2/job API or BFL's."""
