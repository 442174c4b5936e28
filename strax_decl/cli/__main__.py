"""``python -m strax_decl.cli``: the ``strax-decl`` command line."""

import sys

from strax_decl.cli import main

sys.exit(main())
