"""``python -m forgetkit``: the same as the ``forgetkit`` command."""

import sys

from forgetkit.cli import main

sys.exit(main())
