"""``python -m hybridstream.chaos``: see :mod:`hybridstream.chaos.runner`."""

import sys

from hybridstream.chaos.runner import main

sys.exit(main())
