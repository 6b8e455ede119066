"""Benchmarks: deployment (see benchmarks/__init__.py)."""
