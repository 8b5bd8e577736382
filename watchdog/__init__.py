"""ha-watchdog: watch a two-node DRBD + PostgreSQL streaming-replication cluster."""

__version__ = "0.1.0"
