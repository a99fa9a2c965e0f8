"""Models: the catalogue, finding and loading a model (hub, embedded GGUF, local), GGUF
conversion, and logits where they are read."""
