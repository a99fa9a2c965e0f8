"""Data: file formats -> typed rows -> token-level training instances."""
