"""``python -m proxyhpo``: the same as the ``proxyhpo`` command."""

import sys

from proxyhpo.cli import main

sys.exit(main())
