"""Readers for pretrained weight files."""
