"""``python -m quichsd`` is ``quichsd``."""

import sys

from .cli import main

sys.exit(main())
