"""GGUF files: the header reader and the conversion into an mlx-lm model directory."""
