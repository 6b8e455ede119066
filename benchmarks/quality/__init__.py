"""Benchmarks: quality (see benchmarks/__init__.py)."""
