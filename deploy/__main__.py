"""python -m deploy COMMAND --stack FILE: see deploy/cli.py and `python -m deploy --help`."""

import sys

from deploy.cli import main

sys.exit(main())
