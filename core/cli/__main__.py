"""``python -m core.cli ...`` and ``accelerate launch -m core.cli ...``: the ``fintune`` command."""

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
