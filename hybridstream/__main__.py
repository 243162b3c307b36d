import sys

from hybridstream.cli import main

sys.exit(main())
