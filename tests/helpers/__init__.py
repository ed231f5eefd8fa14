"""Test helpers: a real server on loopback, a fake engine, image factories."""
