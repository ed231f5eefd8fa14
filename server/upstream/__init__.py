"""Forwarding [pro]/[max] jobs upstream: to a hosted /v2/job API or to BFL's API."""
