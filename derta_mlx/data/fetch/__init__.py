"""`derta-mlx data fetch`: public datasets -> our JSON Lines formats (catalogue, download, convert)."""
