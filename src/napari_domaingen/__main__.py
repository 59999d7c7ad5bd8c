"""``python -m napari_domaingen`` is the ``domaingen`` command."""

import sys

from .cli import main

sys.exit(main())
