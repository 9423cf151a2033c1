import sys

from simpledet.cli import main

sys.exit(main())
