# SPDX-License-Identifier: GPL-2.0-or-later
"""quichsd.accept.Throttled: one line per interval, counting what it left out (issue 11
item 13: at the fd limit a failed accept must not be logged each time)."""

from __future__ import annotations

import logging

import pytest

from quichsd.accept import Throttled


def test_issue_11_item_13_throttled_logs_once_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    t = Throttled(logging.getLogger("test.throttled"), interval=10, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, "test.throttled"):
        for i in range(1000):
            now[0] = 100 + i * 0.01  # 1,000 failures in 10 s
            t(logging.WARNING, "accept failed: %s", "EMFILE")
        now[0] = 110.5
        t(logging.WARNING, "accept failed: %s", "EMFILE")
    assert caplog.messages == [
        "accept failed: EMFILE",
        "accept failed: EMFILE (999 more since the last line)",
    ]
    assert t.total == 1001
