"""The HTTP API: the FastAPI app, its routes, request reading, rendering and auth."""
