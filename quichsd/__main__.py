# SPDX-License-Identifier: GPL-2.0-or-later
"""``python -m quichsd`` is ``quichsd``."""

import sys

from .cli import main

sys.exit(main())
