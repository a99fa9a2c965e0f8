"""One module per `derta-mlx` sub-command; each has `register(subparsers)`."""
