"""Benchmarks: studies (see benchmarks/__init__.py)."""
