"""Helpers that test packages share (no test module imports another test module)."""
