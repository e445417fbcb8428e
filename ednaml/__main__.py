import sys

from ednaml.cli import main

sys.exit(main())
