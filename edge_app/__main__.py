"""``python -m edge_app run|forward --config FILE``: how the Greengrass component starts the app."""

import sys

from edge_app.cli import main

sys.exit(main())
