"""Interop tests against real third-party authorization servers."""
