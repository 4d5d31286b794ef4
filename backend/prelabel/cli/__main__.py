"""``python -m prelabel.cli``: the same as the ``prelabel`` console script."""

import sys

from prelabel.cli import main

sys.exit(main())
