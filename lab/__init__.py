"""The lab: real local stand-ins for a cluster's parts (PostgreSQL pair, daemontools tree,
DRBD state files, alert receivers), used by the test suite, `ha-watchdog demo` and bench/."""
