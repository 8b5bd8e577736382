"""Smoke test of bench/run.py: with tiny counts it sets up its lab, measures, and writes its
JSON and markdown with every key the README and the lead's tooling read.

Nothing here is timed: the figures are only checked to exist and to be plausible (a median
above zero, a check that said OK), never compared with a target.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from watchdog.probes.command import run_command

pytestmark = [pytest.mark.postgres, pytest.mark.daemontools, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench" / "run.py"


def _skip_reason() -> str:
    for tool in ("check_postgres", "psql", "svscan", "svstat"):
        if shutil.which(tool) is None:
            return f"{tool} not installed"
    try:
        from lab.pgcluster import PgClusterError, find_bindir

        find_bindir()
    except PgClusterError as exc:
        return str(exc)
    return ""


def test_bench_smoke_writes_every_figure(tmp_path):
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    pytest.importorskip("psycopg")
    out_json = tmp_path / "results.json"
    out_md = tmp_path / "results.md"
    result = run_command(
        [sys.executable, str(BENCH), "--runs", "2", "--warmup", "1", "--cycles", "20",
         "--cold-cycles", "2", "--cold-interval", "0.2", "--scrapes", "2",
         "--maintenance-runs", "1", "--skip-detect",
         "--json", str(out_json), "--markdown", str(out_md)],
        timeout=240,
        env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
    )
    assert result.ok, f"{result.error or result.returncode}\n{result.stderr[-3000:]}"

    data = json.loads(out_json.read_text())
    assert {"schema", "started", "machine", "settings", "once", "daemon", "metrics", "detect",
            "targets", "duration_s", "skipped"} <= set(data)
    assert data["skipped"] == ["detect"] and data["detect"] == []
    assert {"cpu_model", "cores", "python", "postgresql", "check_postgres"} <= set(
        data["machine"])

    once = {row["key"]: row for row in data["once"]["commands"]}
    assert set(once) == {"once_secondary", "once_primary", "check_postgres",
                         "psql_select_1", "import_psycopg"}
    for row in once.values():
        assert row["wall_s"]["n"] == 2 and row["wall_s"]["median"] > 0
        assert row["peak_rss_mib"] > 0 and row["ratio_wall_vs_check_postgres"] > 0
    # Each command really ran its OK path (a benchmark of an error path is worthless).
    assert "HOT_STANDBY_DELAY OK" in once["check_postgres"]["output"]
    assert "status=OK" in once["once_primary"]["output"]
    assert "standbys" in once["once_primary"]["output"]
    assert "replay_lag" in once["once_secondary"]["output"]
    assert once["check_postgres"]["ratio_wall_vs_check_postgres"] == 1.0

    daemon = {(row["role"], row["interval_s"]): row for row in data["daemon"]}
    assert set(daemon) == {("primary", 0.05), ("secondary", 0.05), ("primary", 0.2)}
    assert daemon["primary", 0.05]["checks"] == ["drbd", "postgres_role", "services",
                                                 "standbys", "wal"]
    assert daemon["secondary", 0.05]["checks"] == ["drbd", "postgres_role", "replay_lag"]
    assert daemon["primary", 0.2]["cycles"] == 12 and daemon["primary", 0.2]["warm_cycle"] == 10
    for row in daemon.values():
        assert row["cpu_ms_per_cycle"] >= 0 and row["rss_mib_at_end"] > 10
        assert "ok" in row["statuses"] and row["non_ok_cycles"] <= 1 and row["alerts"] == 0
    assert daemon["primary", 0.05]["cycles"] == 20
    assert daemon["primary", 0.05]["warm_cycle"] == 10

    # Every daemon row again with [metrics] listen + textfile on, next to its metrics-off row.
    metrics = data["metrics"]
    on = {(row["role"], row["interval_s"]): row for row in metrics["daemon"]}
    assert set(on) == set(daemon)
    for key, row in on.items():
        assert row["cycles"] == daemon[key]["cycles"] and row["checks"] == daemon[key]["checks"]
        assert row["cpu_ms_per_cycle"] >= 0 and row["rss_mib_at_end"] > 10
        assert row["alerts"] == 0 and "ok" in row["statuses"]
        exposed = row["metrics"]
        assert exposed["textfile"] == "ha_watchdog.prom" and exposed["textfile_bytes"] > 0
        assert exposed["listen"].startswith("127.0.0.1:") and exposed["series"] > 0
        assert {"cpu_ms_per_cycle", "rss_mib_at_end", "rss_growth_mib",
                "cycle_ms_median"} <= set(row["vs_off"])

    # The exporter's per-cycle call alone, on the primary's real view.
    update = metrics["update"]
    assert update["calls"] == 20 and update["textfile_bytes"] > 0
    for part in ("update", "families", "generate_latest", "write_atomic"):
        assert update[part]["cpu_ms"] >= 0 and update[part]["wall_ms"] > 0

    # Scrapes of a live primary with metrics, as Prometheus asks and as curl does.
    assert metrics["role"] == "primary" and metrics["interval_s"] == 30.0
    assert metrics["outputs"]["series"] > 0
    assert metrics["rss_mib_before_scrapes"] > 10 and metrics["rss_mib_after_scrapes"] > 10
    scrapes = {row["key"]: row for row in metrics["scrape"]}
    assert set(scrapes) == {"prometheus", "plain"}
    for row in scrapes.values():
        assert row["scrapes"] == 2 and row["wall_ms"]["n"] == 2
        assert row["wall_ms"]["median"] > 0 and row["daemon_cpu_ms_per_scrape"] >= 0
    assert scrapes["prometheus"]["content_type"].startswith("application/openmetrics-text")
    assert scrapes["prometheus"]["wire_bytes"] < scrapes["prometheus"]["body_bytes"]  # gzip
    assert scrapes["plain"]["content_type"].startswith("text/plain")
    assert scrapes["plain"]["wire_bytes"] == scrapes["plain"]["body_bytes"]

    # The maintenance round trip: confirmed by the running daemon, then off again.
    maintenance = metrics["maintenance"]
    assert maintenance["runs"] == 1
    commands = {row["key"]: row for row in maintenance["commands"]}
    assert set(commands) == {"on", "off", "status"}
    assert commands["on"]["argv"][-4:] == ["--for", "1h", "--reason", "bench"]
    for key, row in commands.items():
        assert row["wall_s"]["n"] == 1 and row["wall_s"]["median"] > 0
        assert row["peak_rss_mib"] > 0
        assert row["daemon_cycle_s"]["n"] == (0 if key == "status" else 1)
    assert not any(os.path.isabs(a) for row in commands.values() for a in row["argv"])

    names = [t["target"] for t in data["targets"]]
    assert any("check_postgres" in n for n in names)
    assert any(n.startswith("daemon primary @ 50ms: CPU") for n in names)
    assert any(n.startswith("daemon primary @ 50ms, metrics on: CPU") for n in names)
    assert all(t["met"] in (True, False) for t in data["targets"])

    table = out_md.read_text()
    assert "| command | wall median" in table and "check_postgres" in table
    assert "**Daemon, steady state**" in table and "**Targets**" in table
    assert "**Metrics (Prometheus)**" in table
    assert "| role (interval) | CPU / cycle: off -> on |" in table
    assert "| primary (50ms) | " in table and "| secondary (50ms) | " in table
    assert "`MetricsExporter.update()`" in table and "20 calls" in table
    assert "Scrapes of /metrics, 2 per client" in table
    assert "| as Prometheus asks (OpenMetrics, gzip) |" in table
    assert "Maintenance round trip, 1 run each" in table
    assert "| `ha-watchdog maintenance on --for 1h --reason bench` |" in table


def test_bench_flags_and_help():
    """The flags of the metrics part parse, and --help lists them (no lab needed)."""
    result = run_command([sys.executable, str(BENCH), "--help"], timeout=60)
    assert result.ok, result.stderr
    for flag in ("--skip-metrics", "--scrapes", "--maintenance-runs", "--skip-daemon"):
        assert flag in result.stdout
    bad = run_command([sys.executable, str(BENCH), "--scrapes", "0"], timeout=60)
    assert bad.returncode == 2 and "--scrapes" in bad.stderr


def test_python_dash_m_bench_is_the_same_command():
    result = subprocess.run([sys.executable, "-m", "bench", "--help"], capture_output=True,
                            text=True, timeout=60, cwd=str(ROOT))
    assert result.returncode == 0, result.stderr
    assert "usage: bench/run.py" in result.stdout and "--skip-detect" in result.stdout


def test_exporter_update_child_times_each_part_of_the_exporters_cycle(tmp_path):
    """bench.exporter_update (once a program in a string, now a linted module): one JSON
    line with the cost per call of each part, from a `--once --json`-shaped report."""
    pytest.importorskip("prometheus_client")
    report = tmp_path / "once.json"
    report.write_text(json.dumps({
        "node": "n1", "role": "primary",
        "checks": [{"name": "drbd", "status": "ok", "summary": "UpToDate", "details": {}},
                   {"name": "standbys", "status": "critical", "summary": "none", "details": {}}],
    }))
    textfile = tmp_path / "ha_watchdog.prom"
    result = subprocess.run([sys.executable, "-m", "bench.exporter_update", str(report),
                             str(textfile), "20"], capture_output=True, text=True, timeout=120,
                            cwd=str(tmp_path), env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert data["calls"] == 20 and data["textfile_bytes"] > 0
    for part in ("update", "families", "generate_latest", "write_atomic"):
        assert set(data[part]) == {"cpu_ms", "wall_ms"} and data[part]["cpu_ms"] >= 0, data
    assert 'ha_watchdog_check_status{' in textfile.read_text()
    usage = subprocess.run([sys.executable, "-m", "bench.exporter_update"],
                           capture_output=True, text=True, timeout=60, cwd=str(ROOT))
    assert usage.returncode == 2 and "usage:" in usage.stderr
