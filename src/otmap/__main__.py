"""``python -m otmap`` is the ``otmap`` command."""

import sys

from otmap.cli import main

sys.exit(main())
