"""``python -m lmrun``: the operator CLI."""

import sys

from lmrun.cli import main

sys.exit(main())
