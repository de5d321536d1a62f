import sys

from scep.cli.main import main

sys.exit(main())
