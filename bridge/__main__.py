"""``python -m trainsound.bridge`` runs the ``trainsound`` command."""

import sys

from .cli import main

sys.exit(main())
