import sys

from jaxgd.cli import main

sys.exit(main())
