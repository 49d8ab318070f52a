"""nbval runs the chapter notebooks from here: progress bars off, so that no bar enters a
compared output (the Makefile sets the same for `make nbval`; this covers a bare pytest)."""

import os

os.environ.setdefault("FORGETKIT_PROGRESS", "0")
