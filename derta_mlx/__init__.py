"""derta-mlx: Decoupled Refusal Training (DeRTa) for MLX."""

__version__ = "0.1.0"
