"""Tiny models with the real tokenizers, built locally, for tests and offline demos."""
