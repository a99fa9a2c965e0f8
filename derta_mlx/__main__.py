import sys

from derta_mlx.cli.main import main

sys.exit(main())
