"""``python -m strax_decl``: the ``strax-decl`` command line."""

import sys

from strax_decl.cli import main

sys.exit(main())
