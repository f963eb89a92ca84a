# SPDX-License-Identifier: GPL-2.0-or-later
"""Importing only the part of pyroute2 the agent uses.

``import pyroute2.netlink`` first runs ``pyroute2/__init__.py``, which imports every
public class of the library (IPRoute, NDB, IPDB, nftables, nl80211, ...): 163 modules and
about 9.4 MB of resident memory here (pyroute2 0.9.7, Python 3.11), against 16 modules and
about 13 MB (from 10.9 MB for a bare interpreter) for the generic-netlink socket alone
(issue 15). :func:`import_lean` registers the ``pyroute2`` package without running its
``__init__`` (its submodules import each other by full name, never from the package's
namespace), then imports ``pyroute2.config``, whose logging set-up ``__init__`` would
have run. Where something already imported pyroute2 in full, nothing changes.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys


def import_lean() -> None:
    if "pyroute2" in sys.modules:
        return
    spec = importlib.util.find_spec("pyroute2")
    if spec is None or spec.submodule_search_locations is None:
        return  # not installed: the caller's import fails with the usual ImportError
    package = importlib.util.module_from_spec(spec)  # not executed: no __init__ imports
    sys.modules["pyroute2"] = package
    try:
        importlib.import_module("pyroute2.config")
    except BaseException:
        del sys.modules["pyroute2"]
        raise
