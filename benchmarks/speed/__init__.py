"""Benchmarks: speed (see benchmarks/__init__.py)."""
