"""The targets each figure is judged against, and the markdown tables."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence

from bench.common import (
    METRICS_LIVE_INTERVAL,
    SCRAPE_CHUNK,
    TARGET_BEYOND_S,
    TARGET_DAEMON_CPU_MS,
    TARGET_DAEMON_GROWTH_MIB,
    TARGET_DAEMON_RSS_MIB,
    TARGET_HUNG_S,
    TARGET_ONCE_RATIO,
    TARGET_ONCE_RSS_MIB,
)
from bench.harness import duration_text

# ---------------------------------------------------------------- targets and output


def judge(results: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Each target of issue 5 with the measured value and met / missed / not measured."""
    out: List[Dict[str, Any]] = []

    def add(name: str, target: str, value: Any, met: Optional[bool], note: str = "") -> None:
        out.append({"target": name, "limit": target, "value": value, "met": met, "note": note})

    once = {row["key"]: row for row in (results.get("once") or {}).get("commands", [])}
    for key in ("once_secondary", "once_primary"):
        if key in once:
            ratio = once[key]["ratio_wall_vs_check_postgres"]
            add(f"{key}: median wall vs check_postgres", f"<= {TARGET_ONCE_RATIO} x", ratio,
                ratio <= TARGET_ONCE_RATIO)
            rss = once[key]["peak_rss_mib"]
            add(f"{key}: peak RSS", f"<= {TARGET_ONCE_RSS_MIB:g} MiB", rss,
                rss <= TARGET_ONCE_RSS_MIB)
    metrics_rows = (results.get("metrics") or {}).get("daemon", [])
    for row in list(results.get("daemon", [])) + list(metrics_rows):
        role = f"{row['role']} @ {duration_text(row['interval_s'])}"
        if row.get("metrics"):
            role += ", metrics on"
        add(f"daemon {role}: CPU per cycle", f"<= {TARGET_DAEMON_CPU_MS:g} ms",
            row["cpu_ms_per_cycle"], row["cpu_ms_per_cycle"] <= TARGET_DAEMON_CPU_MS,
            f"+{row['children_cpu_ms_per_cycle']} ms in child processes (svstat)")
        add(f"daemon {role}: RSS", f"<= {TARGET_DAEMON_RSS_MIB:g} MiB", row["rss_mib_at_end"],
            row["rss_mib_at_end"] <= TARGET_DAEMON_RSS_MIB, "before any alert")
        add(f"daemon {role}: RSS growth cycle {row['warm_cycle']} -> {row['cycles']}",
            f"< {TARGET_DAEMON_GROWTH_MIB:g} MiB", row["rss_growth_mib"],
            row["rss_growth_mib"] < TARGET_DAEMON_GROWTH_MIB)
    after_alert = [d["rss_mib_after_alert"] for d in results.get("detect", [])
                   if d.get("rss_mib_after_alert")]
    if after_alert:
        value = max(after_alert)
        add("daemon: RSS after an alert was sent", f"<= {TARGET_DAEMON_RSS_MIB:g} MiB", value,
            value <= TARGET_DAEMON_RSS_MIB, "the send ran in a child process: apprise never loads in the daemon")
    for row in results.get("detect", []):
        good = [r for r in row["runs"] if "detect_s" in r]
        overhead = row["max_overhead_s"]
        if row["key"].startswith("standby_hung"):
            # One lucky phase proves nothing: the worst case (fault just after a cycle, the
            # last reply just before the fault) must be within the target too.
            measured = max((r["detect_s"] for r in good), default=None)
            # The daemon runs an extra cycle when a standby reply is due to go stale
            # (watchdog.daemon RECHECK_*), so the worst case is the onset plus that
            # cycle's spacing, not a whole interval, whenever that comes first.
            from watchdog.daemon import RECHECK_MARGIN, RECHECK_MIN_SPACING

            recheck = row["budget_worst_s"] - row["interval_s"] + max(RECHECK_MARGIN,
                                                                      RECHECK_MIN_SPACING)
            worst = min(row["budget_worst_s"], recheck) + (overhead or 0.0)
            add(f"{row['key']}: detected within", f"<= {TARGET_HUNG_S:g} s", measured,
                None if measured is None else (measured <= TARGET_HUNG_S and not row["errors"]
                                               and worst <= TARGET_HUNG_S + TARGET_BEYOND_S),
                f"interval {row['interval_s']:g}s; worst case max_reply_age + the "
                f"re-check cycle (or the interval, if sooner) + overhead = {worst:.1f}s")
        add(f"{row['key']}: overhead beyond onset + for + interval", f"<= {TARGET_BEYOND_S:g} s",
            overhead,
            None if overhead is None else overhead <= TARGET_BEYOND_S and not row["errors"],
            "worst phase: the alerting cycle's time and delivery, plus any extra debounce "
            "cycle")
    return out


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown(results: Dict[str, Any]) -> str:
    m = results["machine"]
    out = [
        f"Machine: {m['cpu_model']}, {m['cores']} cores, {m['mem_gib']} GiB, Linux "
        f"{m['kernel']}; Python {m['python']}; {m['postgresql']}; {m['check_postgres']}; "
        f"ha-watchdog {m['ha_watchdog']}. Run {results['started']}, "
        f"{results['duration_s']:.0f} s.",
        "",
    ]
    once = results.get("once")
    if once:
        out += [
            f"**One check, {once['runs']} interleaved runs each** (wall time median "
            "[quartiles] min-max; peak RSS = largest process; ratio = median / "
            "check_postgres's)",
            "",
            "| command | wall median | [q1 - q3] | min - max | CPU median | peak RSS | "
            "wall ratio |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in once["commands"]:
            w = row["wall_s"]
            out.append(
                f"| {row['label']} | {w['median'] * 1000:.0f} ms | "
                f"[{w['q1'] * 1000:.0f} - {w['q3'] * 1000:.0f}] | "
                f"{w['min'] * 1000:.0f} - {w['max'] * 1000:.0f} ms | "
                f"{row['cpu_s']['median'] * 1000:.0f} ms | {row['peak_rss_mib']:.1f} MiB | "
                f"{row['ratio_wall_vs_check_postgres']:.2f} |"
            )
        out.append("")
    daemon = results.get("daemon")
    if daemon:
        out += [
            "**Daemon, steady state** (CPU = user + sys of the daemon; children = svstat "
            "runs)",
            "",
            "| role (checks) | interval | CPU / cycle | + children | cycle median | "
            "RSS @ first | RSS @ warm | RSS @ end | growth |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for row in daemon:
            out.append(
                f"| {row['role']} ({', '.join(row['checks'])}) | "
                f"{row['interval_s'] * 1000:.0f} ms | {row['cpu_ms_per_cycle']:.2f} ms | "
                f"{row['children_cpu_ms_per_cycle']:.2f} ms | {row['cycle_ms']['median']:.0f} ms | "
                f"{_fmt(row['rss_mib_first_cycle'], 1)} MiB | "
                f"{row['rss_mib_at_warm']:.1f} MiB (cycle {row['warm_cycle']}) | "
                f"{row['rss_mib_at_end']:.1f} MiB (cycle {row['cycles']}) | "
                f"{row['rss_growth_mib']:+.2f} MiB |"
            )
        out.append("")
        for row in daemon:
            if row.get("non_ok_cycles"):
                out.append(f"Raw non-OK cycles ({row['role']} @ "
                           f"{duration_text(row['interval_s'])}): {row['non_ok_cycles']} of "
                           f"{row['cycles']}, e.g. `{row['non_ok_examples'][0]}`")
                out.append("")
    out += markdown_metrics(results.get("metrics"), results.get("daemon") or [])
    detect = results.get("detect")
    if detect:
        out += [
            "**Time to detect** (fault injected -> PROBLEM received by the local receiver; "
            "onset = worst-case time until the check can see it; budget = onset + `for` + "
            "interval; overhead = what the worst phase adds beyond the budget: the alerting "
            "cycle's own time, delivery, any extra debounce cycle)",
            "",
            "| fault (check) | interval | `for` | onset | budget | detect median | "
            "min - max | overhead (max) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in detect:
            d = row["detect_s"]
            runs = f" ({d['n']} run{'s' if d['n'] > 1 else ''})" if d.get("n") else " (failed)"
            out.append(
                f"| {row['label']} ({row['check']}){runs} | {row['interval_s']:g} s | "
                f"{row['for_s']:g} s | {row['onset_worst_s']:g} s | "
                f"{row['budget_worst_s']:g} s | {_fmt(d.get('median'))} s | "
                f"{_fmt(d.get('min'))} - {_fmt(d.get('max'))} s | "
                f"{_fmt(row['max_overhead_s'])} s |"
            )
        out.append("")
    targets = results.get("targets")
    if targets:
        out += ["**Targets**", "", "| target | limit | measured | |", "|---|---|---|---|"]
        for t in targets:
            verdict = {True: "met", False: "**missed**", None: "not measured"}[t["met"]]
            note = f" ({t['note']})" if t["note"] else ""
            out.append(f"| {t['target']}{note} | {t['limit']} | {_fmt(t['value'])} | "
                       f"{verdict} |")
        out.append("")
    return "\n".join(out)


def _value(row: Mapping[str, Any], key: str) -> Any:
    """row["a.b"] as row["a"]["b"]."""
    value: Any = row
    for part in key.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def _off_on(row: Mapping[str, Any], off_row: Optional[Mapping[str, Any]], key: str, unit: str,
            digits: int) -> str:
    """"4.22 -> 4.80 ms (+0.58)": `key` without metrics, with, the difference."""
    on = _value(row, key)
    off = None if off_row is None else _value(off_row, key)
    if on is None:
        return "-"
    if off is None:
        return f"- -> {on:.{digits}f} {unit}"
    return f"{off:.{digits}f} -> {on:.{digits}f} {unit} ({on - off:+.{digits}f})"


def markdown_metrics(metrics: Optional[Mapping[str, Any]],
                     daemon: Sequence[Mapping[str, Any]]) -> List[str]:
    """The metrics section: on vs off per role, scrapes, the maintenance round trip."""
    if not metrics:
        return []
    rows = metrics.get("daemon") or []
    scrapes = metrics.get("scrape") or []
    maint = metrics.get("maintenance")
    offs = {(row["role"], row["interval_s"]): row for row in daemon}
    out = [
        "**Metrics (Prometheus)**: each daemon row above runs again right after itself, "
        "identical but for `[metrics] listen` (HTTP on a loopback port, not scraped) and "
        "`textfile`; the difference is what the metrics add per cycle (the view built after "
        "each cycle, the textfile rendered and written atomically with two fsyncs) and in "
        "memory (the prometheus_client import, the HTTP thread). Two runs of the same row "
        "differ too (the machine does not stand still), so the exporter's own per-cycle call "
        "is also timed alone, in a process of its own. Scrapes: a primary with metrics at the "
        f"{metrics.get('interval_s', METRICS_LIVE_INTERVAL):g} s interval (idle between "
        "cycles, as in production) is scraped over loopback, a new connection per scrape, "
        f"in chunks of {SCRAPE_CHUNK}; wall time as the client sees it; the daemon's CPU per "
        "scrape (its HTTP server, a new thread per request) from /proc/<pid>/stat around "
        "each chunk, divided by its scrapes (a chunk that a cycle ran into is scraped "
        "again). Maintenance: `ha-watchdog maintenance on|off` against that daemon, from the "
        "command's start until it returns (it waits for the daemon, which polls the request "
        "file every second, to apply it); `status` (no waiting) is the command's own floor.",
        "",
    ]
    if rows:
        out += [
            "| role (interval) | CPU / cycle: off -> on | cycle median | RSS @ first | "
            "RSS @ end | growth (on) | textfile |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in rows:
            off = offs.get((row["role"], row["interval_s"]))
            out.append(
                f"| {row['role']} ({duration_text(row['interval_s'])}) | "
                f"{_off_on(row, off, 'cpu_ms_per_cycle', 'ms', 2)} | "
                f"{_off_on(row, off, 'cycle_ms.median', 'ms', 1)} | "
                f"{_off_on(row, off, 'rss_mib_first_cycle', 'MiB', 1)} | "
                f"{_off_on(row, off, 'rss_mib_at_end', 'MiB', 1)} (cycle {row['cycles']}) | "
                f"{row['rss_growth_mib']:+.2f} MiB | "
                f"{row['metrics']['textfile_bytes']:,} B |"
            )
        out.append("")
    update = metrics.get("update")
    if update:
        u, fam, gen, write = (update[k] for k in ("update", "families", "generate_latest",
                                                   "write_atomic"))
        out += [
            f"In a process of its own, `MetricsExporter.update()` (what the daemon calls after "
            f"each cycle; textfile only), {update['calls']} calls on the {update['role']}'s "
            f"real `--once --json` view: {u['cpu_ms']:.2f} ms CPU per call "
            f"({u['wall_ms']:.2f} ms wall): families {fam['cpu_ms']:.2f} ms, rendering "
            f"(`generate_latest`) {gen['cpu_ms']:.2f} ms, the atomic textfile write "
            f"{write['cpu_ms']:.2f} ms CPU ({write['wall_ms']:.2f} ms wall: two fsyncs). "
            f"Importing the exporter and prometheus_client: +{update['import_rss_mib']:.1f} MiB "
            "RSS.",
            "",
        ]
    if scrapes:
        out += [
            f"Scrapes of /metrics, {scrapes[0]['scrapes']} per client (daemon RSS "
            f"{_fmt(metrics.get('rss_mib_before_scrapes'), 1)} MiB before, "
            f"{_fmt(metrics.get('rss_mib_after_scrapes'), 1)} MiB after):",
            "",
            "| client | wall median | [q1 - q3] | min - max | bytes sent | body | "
            "daemon CPU / scrape |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in scrapes:
            w = row["wall_ms"]
            out.append(
                f"| {row['label']} | {w['median']:.2f} ms | [{w['q1']:.2f} - {w['q3']:.2f}] | "
                f"{w['min']:.2f} - {w['max']:.2f} ms | {row['wire_bytes']:,} B | "
                f"{row['body_bytes']:,} B | {row['daemon_cpu_ms_per_scrape']:.2f} ms |"
            )
        out.append("")
    if maint:
        out += [
            f"Maintenance round trip, {maint['runs']} run{'s' if maint['runs'] > 1 else ''} "
            "each after one warm-up (daemon applied = when the daemon logged the cycle that "
            "applied it, from the command's start):",
            "",
            "| command | wall median | min - max | daemon applied (median) | CPU median | "
            "peak RSS |",
            "|---|---|---|---|---|---|",
        ]
        for row in maint["commands"]:
            w, c, a = row["wall_s"], row["cpu_s"], row["daemon_cycle_s"]
            applied = f"{a['median']:.2f} s" if a.get("n") else "-"
            shown = [a for a in row["argv"] if a not in ("--config", "config.toml")]
            out.append(
                f"| `{' '.join(shown)}` | {w['median']:.2f} s | "
                f"{w['min']:.2f} - {w['max']:.2f} s | {applied} | "
                f"{c['median'] * 1000:.0f} ms | {row['peak_rss_mib']:.1f} MiB |"
            )
        out.append("")
    return out
