"""The daemon's unix service: fd handoff and socket-ops (docs/unix-protocol.md)."""
