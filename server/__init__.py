"""The HTTP side of kontext-server: no torch at import (see docs/architecture.md).

Sub-packages, imports one way (api → asyncjobs → jobs → wire/media → foundation):
api/ the HTTP API (routes, rendering, auth); asyncjobs/ async jobs and their store;
jobs/ the job service, admission, the engine worker and the local backends; upstream/
forwarding [pro]/[max]; wire/ the job JSON's pydantic models; media/ image formats,
decoding and encoding; cli/ the `kontext` command and the batch client. The foundation
(settings, errors, logs, metrics) sits at the top of the package.
"""
