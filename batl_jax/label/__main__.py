import sys

from batl_jax.label.cli import main

sys.exit(main())
