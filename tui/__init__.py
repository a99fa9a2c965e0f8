"""Textual terminal UI for derta-mlx. Depends on derta_mlx's public API only."""
