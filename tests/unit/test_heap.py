# SPDX-License-Identifier: GPL-2.0-or-later
"""quichsd.heap.release_free_heap hands freed heap pages back to the kernel (issue 15):
the daemon calls it after start-up, after a reload, and in the fork server before it
forks workers. Run in a fresh interpreter so the heap is known."""

from __future__ import annotations

import subprocess
import sys

CODE = """
from pathlib import Path
from quichsd.heap import release_free_heap

def rss():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

# 40 MB in malloc'd chunks (above pymalloc's 512 bytes), then one chunk above them all:
# freeing the others leaves free memory below the top, which malloc keeps
chunks = [bytes(2048) + bytes([i % 256]) for i in range(20000)]
pin = bytes(4096) + b"x"
del chunks
before = rss()
returned = release_free_heap()
after = rss()
print(before, after, returned)
"""


def test_release_free_heap_returns_freed_memory() -> None:
    out = subprocess.run(
        [sys.executable, "-c", CODE], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    before, after, returned = out.split()
    assert returned == "True"
    assert int(before) - int(after) > 20_000, out  # KB: most of the 40 MB freed
