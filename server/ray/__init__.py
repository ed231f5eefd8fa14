"""Ray Serve: the same /v2/job API in front of engine replicas across machines."""
