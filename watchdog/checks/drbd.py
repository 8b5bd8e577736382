"""The `drbd` check and this node's role, from a DRBD snapshot (pure, no I/O).

Healthy means: every selected resource Connected, both disks UpToDate, exactly one side
Primary. A resync is a WARNING (it ends by itself, with percent and ETA); everything that
leaves the data on one node only, or both nodes able to write, or nobody serving, is
CRITICAL. Split brain is never announced by DRBD: it shows as StandAlone.

Output that contradicts itself (connected to a peer whose role is Unknown or not shown) is
not healthy: the resource is UNKNOWN with the reason, and this node's role is unknown too.
A node in doubt is never taken for the primary.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Tuple

from watchdog.families import Family, Sample, gauge, number
from watchdog.model import DRBD, CheckResult, Role, Status, worst
from watchdog.nagios import num, perf
from watchdog.probes.drbd import DrbdConnection, DrbdResource, DrbdSnapshot
from watchdog.units import format_duration

_RESYNC_SOURCE_SIDE = frozenset({"StartingSyncS", "WFBitMapS", "SyncSource", "PausedSyncS"})
_RESYNC_TARGET_SIDE = frozenset(
    {"StartingSyncT", "WFBitMapT", "WFSyncUUID", "SyncTarget", "PausedSyncT"}
)
_RESYNC = _RESYNC_SOURCE_SIDE | _RESYNC_TARGET_SIDE
_VERIFY = frozenset({"VerifyS", "VerifyT"})
_SPLIT_BRAIN = "StandAlone: split brain suspected, or disconnected by hand"

Problem = Tuple[Status, str]


# ---------------------------------------------------------------- role


def contradictions(resource: DrbdResource) -> List[str]:
    """What in one resource's state cannot all be true (empty: consistent).

    A connected peer always has a known role: DRBD learns it in the handshake, before the
    connection counts as Connected. `Connected Secondary/Unknown` (or a `drbdadm status`
    connection without `role:`) is a state the tools should never print: trust none of it.
    """
    found = []
    for conn in resource.connections:
        if conn.cstate == "Connected" and conn.peer_role not in ("Primary", "Secondary"):
            label = _peer_label(resource, conn)
            found.append(
                f"{label}connected, but peer role {conn.peer_role or 'not shown'}".strip()
            )
    return found


def role_and_reason(snapshot: DrbdSnapshot) -> Tuple[Role, str]:
    """This node's role, and in words why it is unknown when it is."""
    if snapshot.error:
        return Role.UNKNOWN, "DRBD state could not be read"
    if snapshot.bad_line is not None:
        return Role.UNKNOWN, "DRBD output could not be read"
    if snapshot.missing:
        return Role.UNKNOWN, "configured resources missing: " + ", ".join(snapshot.missing)
    if not snapshot.resources:
        return Role.UNKNOWN, "no DRBD resources"
    unconfigured = [r.name for r in snapshot.resources if r.unconfigured]
    if unconfigured:
        return Role.UNKNOWN, "unconfigured: " + ", ".join(unconfigured)
    doubtful = [f"{r.name}: {'; '.join(contradictions(r))}" for r in snapshot.resources
                if contradictions(r)]
    if doubtful:
        return Role.UNKNOWN, "contradictory DRBD state (" + "; ".join(doubtful) + ")"
    roles = {r.role for r in snapshot.resources}
    if roles == {"Primary"}:
        return Role.PRIMARY, "all resources Primary"
    if roles == {"Secondary"}:
        return Role.SECONDARY, "all resources Secondary"
    listing = ", ".join(f"{r.name} {r.role or 'no role'}" for r in snapshot.resources)
    return Role.UNKNOWN, f"mixed roles ({listing})"


def detect_role(snapshot: DrbdSnapshot) -> Role:
    """primary / secondary when every selected resource agrees, else unknown."""
    return role_and_reason(snapshot)[0]


# ---------------------------------------------------------------- one resource


def _percent_eta(percent: Optional[float], eta: Optional[float]) -> str:
    parts = []
    # Snapshots may be built by hand: show only sane numbers.
    percent = percent if isinstance(percent, (int, float)) and 0 <= percent <= 100 else None
    eta = eta if isinstance(eta, (int, float)) and 0 <= eta < 1e9 else None
    if percent is not None:
        text = f"{percent:.2f}".rstrip("0")
        parts.append(f"{text}0% done" if text.endswith(".") else f"{text}% done")
    if eta is not None:
        parts.append(f"ETA {format_duration(eta)}")
    return (", " + ", ".join(parts)) if parts else ""


def _peer_label(resource: DrbdResource, conn: DrbdConnection) -> str:
    if len(resource.connections) == 1 and conn.peer == "peer":
        return ""
    return f"peer {conn.peer} "


def assess_resource(resource: DrbdResource) -> List[Problem]:
    """Everything wrong with one resource (empty list: healthy)."""
    if resource.unconfigured:
        return [(Status.CRITICAL, "unconfigured (not up)")]
    problems: List[Problem] = [
        (Status.UNKNOWN, f"contradictory state: {text}") for text in contradictions(resource)
    ]
    if resource.role not in ("Primary", "Secondary"):
        problems.append((Status.CRITICAL, f"local role {resource.role or 'not shown'}"))
    if resource.suspended:
        problems.append((Status.CRITICAL, f"I/O suspended ({resource.suspended})"))

    replications = {pv.replication for c in resource.connections for pv in c.volumes}
    many_volumes = len(resource.volumes) > 1
    if not resource.volumes:
        problems.append((Status.CRITICAL, "no volume shown"))
    for vol in resource.volumes:
        where = f"volume {vol.volume} " if many_volumes and vol.volume is not None else ""
        if vol.quorum is False:
            problems.append((Status.CRITICAL, f"{where}quorum lost"))
        disk = vol.disk
        if disk == "UpToDate":
            continue
        if disk == "Inconsistent" and replications & _RESYNC_TARGET_SIDE:
            continue  # the resync message says it
        if disk == "Outdated" and "Behind" in replications:
            continue
        what = {
            "Inconsistent": "local disk Inconsistent (never synced, or resync not running)",
            None: "local disk state not shown",
        }.get(disk, f"local disk {disk}")
        problems.append((Status.CRITICAL, f"{where}{what}"))

    if not resource.connections:
        problems.append((Status.CRITICAL, "no peer connection configured"))
    for conn in resource.connections:
        problems.extend(_assess_connection(resource, conn))

    connected_roles = [c.peer_role for c in resource.connections if c.cstate == "Connected"]
    if resource.role == "Primary" and "Primary" in connected_roles:
        problems.append((Status.CRITICAL, "Primary/Primary: both nodes are Primary"))
    all_connected = all(c.cstate == "Connected" for c in resource.connections)
    if (
        resource.role == "Secondary"
        and connected_roles
        and all_connected
        and all(r == "Secondary" for r in connected_roles)
    ):
        problems.append((Status.CRITICAL, "Secondary/Secondary: no node is Primary, nothing serves"))
    return problems


def _assess_connection(resource: DrbdResource, conn: DrbdConnection) -> List[Problem]:
    label = _peer_label(resource, conn)
    if conn.cstate == "StandAlone":
        return [(Status.CRITICAL, f"{label}{_SPLIT_BRAIN}".strip())]
    if conn.cstate != "Connected":
        return [(Status.CRITICAL, f"{label}not connected ({conn.cstate or 'state not shown'})")]
    if not conn.volumes:
        return [(Status.CRITICAL, f"{label}connected, but no peer disk state shown")]
    problems: List[Problem] = []
    many = len(conn.volumes) > 1
    for pv in conn.volumes:
        where = f"{label}volume {pv.volume} " if many and pv.volume is not None else label
        rep, peer_disk = pv.replication, pv.peer_disk
        if rep in _RESYNC:
            paused = rep.startswith("PausedSync") or (
                pv.resync_suspended not in (None, "no")
            )
            direction = "to" if rep in _RESYNC_SOURCE_SIDE else "from"
            peer = "peer" if not label else conn.peer
            text = f"{where}resync {direction} {peer} ({rep}"
            if pv.resync_suspended not in (None, "no"):
                text += f", suspended: {pv.resync_suspended}"
            text += ")" + (" paused" if paused else "") + _percent_eta(
                pv.sync_percent, pv.eta_seconds
            )
            problems.append((Status.WARNING, text))
            if peer_disk in ("Diskless", "Failed", "Detaching", "DUnknown"):
                problems.append((Status.CRITICAL, f"{where}peer disk {peer_disk}"))
        elif rep in ("Ahead", "Behind"):
            side = "peer" if rep == "Ahead" else "this node"
            problems.append(
                (Status.WARNING, f"{where}replication {rep}: {side} lagging (congestion)")
            )
        elif rep in _VERIFY or rep == "Established":
            if peer_disk == "UpToDate" or (peer_disk == "Diskless" and pv.peer_client):
                continue
            problems.append((Status.CRITICAL, f"{where}peer disk {peer_disk or 'not shown'}"))
        else:
            problems.append((Status.CRITICAL, f"{where}replication {rep or 'not shown'}"))
    return problems


def describe_resource(resource: DrbdResource) -> Dict[str, Any]:
    """JSON-ready view of one resource (flat fields: first volume / first connection)."""
    conn = resource.connection
    vol = resource.volumes[0] if resource.volumes else None
    pvol = conn.volumes[0] if conn and conn.volumes else None
    return {
        "name": resource.name,
        "minors": list(resource.minors),
        "unconfigured": resource.unconfigured,
        "role": resource.role,
        "peer": conn.peer if conn else None,
        "peer_role": conn.peer_role if conn else None,
        "cstate": conn.cstate if conn else None,
        "replication": pvol.replication if pvol else None,
        "disk": vol.disk if vol else None,
        "peer_disk": pvol.peer_disk if pvol else None,
        "sync_percent": pvol.sync_percent if pvol else None,
        "eta_seconds": pvol.eta_seconds if pvol else None,
        "quorum": vol.quorum if vol else None,
        "suspended": resource.suspended,
        "volumes": [
            {"volume": v.volume, "minor": v.minor, "disk": v.disk, "quorum": v.quorum}
            for v in resource.volumes
        ],
        "connections": [
            {
                "peer": c.peer,
                "cstate": c.cstate,
                "peer_role": c.peer_role,
                "volumes": [
                    {
                        "volume": p.volume,
                        "replication": p.replication,
                        "peer_disk": p.peer_disk,
                        "sync_percent": p.sync_percent,
                        "eta_seconds": p.eta_seconds,
                        "resync_suspended": p.resync_suspended,
                    }
                    for p in c.volumes
                ],
            }
            for c in resource.connections
        ],
    }


def _one_line(resource: DrbdResource) -> str:
    """`Connected Primary/Secondary UpToDate/UpToDate`, as the DRBD 8.4 tools show it."""
    conn = resource.connection
    vol = resource.volumes[0] if resource.volumes else None
    pvol = conn.volumes[0] if conn and conn.volumes else None
    return (
        f"{conn.cstate if conn else 'no peer'} "
        f"{resource.role}/{conn.peer_role if conn else 'Unknown'} "
        f"{vol.disk if vol else '?'}/{pvol.peer_disk if pvol else 'DUnknown'}"
    )


# ---------------------------------------------------------------- the check


def check_drbd(snapshot: DrbdSnapshot) -> CheckResult:
    """Verdict over the selected resources; details carry the role and every resource."""
    role, role_reason = role_and_reason(snapshot)
    details: Dict[str, Any] = {
        "role": role.value,
        "role_reason": role_reason,
        "format": snapshot.format,
        "source": snapshot.source,
        "version": snapshot.version,
        "fallback": snapshot.fallback,
        "missing": list(snapshot.missing),
        "error": snapshot.error,
        "bad_line": snapshot.bad_line,
        "resources": [],
    }

    def result(status: Status, summary: str) -> CheckResult:
        return CheckResult(DRBD, status, summary, details)

    if snapshot.error:
        return result(Status.UNKNOWN, f"DRBD state unknown: {snapshot.error}")
    if snapshot.bad_line is not None:
        what = (
            "unrecognised output"
            if snapshot.format not in ("proc", "drbd-overview", "drbdadm-status", "drbdsetup-json")
            else f"cannot read {snapshot.format} output"
        )
        for res in snapshot.resources:
            details["resources"].append(describe_resource(res))
        line = snapshot.bad_line
        quoted = line if line.startswith("(") and line.endswith(")") else f"line {line!r}"
        return result(Status.UNKNOWN, f"{what} from {snapshot.source}: {quoted}")

    problems: List[Problem] = []
    oks: List[str] = []
    if snapshot.missing:
        hint = ""
        if snapshot.format == "proc":
            hint = " (/proc/drbd names devices by minor: drbd0, drbd1, ...)"
        problems.append(
            (Status.CRITICAL, "resource not found: " + ", ".join(snapshot.missing) + hint)
        )
    if not snapshot.resources and not snapshot.missing:
        major = (snapshot.version or "").split(".", 1)[0]
        if snapshot.not_loaded:
            return result(Status.CRITICAL, f"DRBD not loaded ({snapshot.source})")
        if snapshot.format == "proc" and major.isdigit() and int(major) >= 9:
            return result(
                Status.UNKNOWN,
                f"DRBD {snapshot.version} lists no devices in {snapshot.source}: "
                "read `drbdadm status` instead (format \"auto\" without a command, "
                "or \"drbdadm-status\")",
            )
        return result(Status.CRITICAL, f"DRBD unconfigured: no resources in {snapshot.source}")

    statuses = [p[0] for p in problems]
    for res in snapshot.resources:
        found = assess_resource(res)
        entry = describe_resource(res)
        entry["status"] = worst(s for s, _ in found).label
        entry["problems"] = [text for _, text in found]
        details["resources"].append(entry)
        if found:
            statuses.extend(s for s, _ in found)
            problems.append(
                (worst(s for s, _ in found), f"{res.name}: " + "; ".join(t for _, t in found))
            )
        else:
            oks.append(f"{res.name}: {_one_line(res)}")

    if role is Role.UNKNOWN and role_reason.startswith("mixed roles"):
        statuses.append(Status.CRITICAL)
        problems.append((Status.CRITICAL, f"this node's role is unknown: {role_reason}"))

    status = worst(statuses)
    if not problems:
        return result(Status.OK, "; ".join(oks))
    problems.sort(key=lambda p: -p[0].rank)
    summary = "; ".join(text for _, text in problems)
    if oks:
        summary += f"; {len(oks)} more OK"
    return result(status, summary)


__all__ = ["assess_resource", "check_drbd", "contradictions", "describe_resource", "detect_role", "role_and_reason"]


# ---------------------------------------------------------------- metrics

# Every DRBD format's parser reports a live link as cstate "Connected" (8.4's `cs:` word and
# DRBD 9's connection-state alike); "Established" is a replication state, never a cstate.
_CONNECTED = "Connected"
_UPTODATE = "UpToDate"
# drbd_resource_info label -> key of a details["resources"] entry (describe_resource)
_DRBD_INFO = {"connection": "cstate", "role": "role", "peer_role": "peer_role", "disk": "disk",
              "peer_disk": "peer_disk"}


def metric_families(result: Optional[CheckResult]) -> List[Family]:
    """The `ha_watchdog_drbd_*` families from this cycle's result (README "Metrics")."""
    entries = result.details.get("resources") if result is not None else None
    info: List[Sample] = []
    connected: List[Sample] = []
    uptodate: List[Sample] = []
    synced: List[Sample] = []
    seen = set()
    for entry in entries if isinstance(entries, (list, tuple)) else ():
        fields = _drbd_fields(entry)
        if fields is None or fields["name"] in seen:
            continue
        name = fields["name"]
        seen.add(name)
        info.append(((name, *(fields[label] for label in _DRBD_INFO)), 1))
        connected.append(((name,), fields["connection"] == _CONNECTED))
        both = fields["disk"] == _UPTODATE and fields["peer_disk"] == _UPTODATE
        uptodate.append(((name,), both))
        percent = number(entry.get("sync_percent"))
        if percent is not None and 0 <= percent <= 100:
            synced.append(((name,), percent))
        elif both:
            synced.append(((name,), 100))
    return [
        gauge("drbd_resource_info", "DRBD resource state as words (value 1).",
              ("resource", *_DRBD_INFO), info),
        gauge("drbd_connected", "1 when the DRBD resource is connected to its peer.",
              ("resource",), connected),
        gauge("drbd_uptodate", "1 when both disks of the DRBD resource are UpToDate.",
              ("resource",), uptodate),
        gauge("drbd_sync_percent", "DRBD resync progress (100: in sync).", ("resource",), synced),
    ]


def _drbd_fields(entry: Any) -> Optional[Dict[str, str]]:
    """The label values of one details["resources"] entry; None when it is malformed."""
    if not isinstance(entry, dict):
        return None
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        return None
    fields = {"name": name}
    for label, key in _DRBD_INFO.items():
        value = entry.get(key)
        if value is not None and not isinstance(value, str):
            return None
        fields[label] = value or ""
    return fields


def perfdata(check: CheckResult) -> List[str]:
    """`--once --nagios` performance data (watchdog.nagios): each resource's synced percent."""
    out = []
    for entry in check.details.get("resources") or ():
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
            continue
        percent = num(entry.get("sync_percent"))
        if percent is None and entry.get("disk") == "UpToDate" == entry.get("peer_disk"):
            percent = 100.0
        name = entry["name"]
        label = name if name.startswith("drbd") else f"drbd_{name}"  # /proc/drbd says drbd0
        out.append(perf(f"{label}_synced", percent, "%", "", "", 0, 100))
    return out
