"""Probes: all I/O with the outside world (DRBD, daemontools, PostgreSQL, subprocesses).

Each probe returns a plain snapshot (a dataclass) and never raises for a failure of the
thing it probes: the failure is part of the snapshot, with its reason.
"""
