"""Data: file formats -> typed rows -> token-level training instances (templates, segments, the
refusal token and opening, harmful-prefix sampling, batches)."""
