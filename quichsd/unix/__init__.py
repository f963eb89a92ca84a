# SPDX-License-Identifier: GPL-2.0-or-later
"""The daemon's unix service: fd handoff and socket-ops (docs/unix-protocol.md)."""
