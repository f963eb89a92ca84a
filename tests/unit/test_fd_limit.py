# SPDX-License-Identifier: GPL-2.0-or-later
"""quichsd.daemon.raise_fd_limit: the soft open-file limit goes up to the hard one."""

from __future__ import annotations

import logging
import resource
from collections.abc import Iterator

import pytest

from quichsd.daemon import raise_fd_limit


@pytest.fixture
def limits() -> Iterator[tuple[int, int]]:
    saved = resource.getrlimit(resource.RLIMIT_NOFILE)
    yield saved
    resource.setrlimit(resource.RLIMIT_NOFILE, saved)


def test_soft_limit_raised_to_hard(
    limits: tuple[int, int], caplog: pytest.LogCaptureFixture
) -> None:
    _, hard = limits
    resource.setrlimit(resource.RLIMIT_NOFILE, (512, hard))
    caplog.set_level(logging.DEBUG, logger="quichsd")
    raise_fd_limit()
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)
    assert f"open-file limit raised from 512 to {hard}" in caplog.text


def test_equal_limits_left_alone(limits: tuple[int, int], caplog: pytest.LogCaptureFixture) -> None:
    _, hard = limits
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    caplog.set_level(logging.DEBUG, logger="quichsd")
    raise_fd_limit()
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)
    assert caplog.text == ""
