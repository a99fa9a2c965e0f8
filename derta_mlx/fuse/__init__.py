"""Fusing a run's adapter into its base model, and the safety gate that must pass before it ships."""
