"""Shared helpers for the docs tests: where the Markdown sources are."""
