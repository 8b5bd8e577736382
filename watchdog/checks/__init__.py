"""Checks: pure functions from probe snapshots to `CheckResult`s (no I/O here)."""
