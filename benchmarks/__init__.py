"""Benchmarks: timing runs that report numbers (not tests: they assert nothing about speed)."""
