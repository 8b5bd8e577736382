"""`postgres_role`: the local PostgreSQL answers, and its recovery state matches DRBD's role.

On the DRBD primary PostgreSQL must be a primary (not in recovery); on the secondary it must
be a standby (in recovery). A mismatch is CRITICAL: a primary that is also in recovery has no
writable database, and a secondary that is not in recovery is a second primary, which is
split brain at the database level.

On the primary, the details also carry this cycle's canary write (`canary`, see
probes.postgres.build_canary); a failed write is named in the summary without changing the
verdict: PostgreSQL answered, and the standby's replay_lag shows what a missing canary does.
"""

from __future__ import annotations

from watchdog.model import POSTGRES_ROLE, CheckResult, Role, Status
from watchdog.probes.postgres import PgSnapshot, snapshot_details


def check_postgres_role(snapshot: PgSnapshot, role: Role) -> CheckResult:
    """Verdict for this node's PostgreSQL given the role DRBD reports."""
    details = snapshot_details(snapshot)
    details["drbd_role"] = role.value
    canary = ""
    if snapshot.canary is not None:
        details["canary"] = snapshot.canary.to_json()
        if not snapshot.canary.ok:
            canary = f"; canary write failed: {snapshot.canary.error}"
    if not snapshot.reachable:
        return CheckResult(POSTGRES_ROLE, Status.CRITICAL,
                           f"cannot connect to PostgreSQL: {snapshot.error}", details)
    if not snapshot.answered:
        return CheckResult(POSTGRES_ROLE, Status.CRITICAL,
                           f"PostgreSQL does not answer: {snapshot.error}", details)
    in_recovery = bool(snapshot.in_recovery)
    state = "in recovery (standby)" if in_recovery else "not in recovery (primary)"
    if role == Role.PRIMARY and in_recovery:
        return CheckResult(
            POSTGRES_ROLE, Status.CRITICAL,
            "role mismatch: DRBD is primary but PostgreSQL is in recovery (a standby): "
            "no writable database on the primary node",
            details,
        )
    if role == Role.SECONDARY and not in_recovery:
        return CheckResult(
            POSTGRES_ROLE, Status.CRITICAL,
            "role mismatch: DRBD is secondary but PostgreSQL is not in recovery: a second "
            "primary (split brain at the database level)",
            details,
        )
    if role == Role.UNKNOWN:
        return CheckResult(POSTGRES_ROLE, Status.OK,
                           f"PostgreSQL answers, {state}; DRBD role unknown", details)
    return CheckResult(POSTGRES_ROLE, Status.OK,
                       f"PostgreSQL answers, {state}, as a DRBD {role.value} should{canary}",
                       details)
