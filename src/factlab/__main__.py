"""`python -m factlab` is the `factlab` command."""

import sys

from factlab.cli import main

sys.exit(main())
