"""Async jobs (POST /v2/job/async): accepted at once, run by the job service, kept on disk."""
