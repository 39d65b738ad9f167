"""``python -m cltdr``: the ``cltdr`` command (what ``torchrun ... -m cltdr train ...`` runs in each process)."""

import sys

from cltdr.cli import main

if __name__ == "__main__":
    sys.exit(main())
