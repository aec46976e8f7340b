import sys

from padhash.cli import main

sys.exit(main())
