"""``python -m fleet_artifacts`` is the ``fleet-artifacts`` command."""

import sys

from fleet_artifacts.cli import main

sys.exit(main())
