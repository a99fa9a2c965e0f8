"""Plumbing every layer uses: atomic writes, user-facing errors, files PyPI packages ship, progress."""
