"""``python -m atomlens``: same as the ``atomlens`` command."""

import sys

from .cli import main

sys.exit(main())
