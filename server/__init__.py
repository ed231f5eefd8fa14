"""The HTTP side: wire format, job dispatch, queue and upstream clients. No torch at import."""
