"""Issue 14, part 2: never watch silently; --check-config [--connect] finds what would only
show in production. Real subprocesses of the CLI, a real PostgreSQL (the lab), real recorded
DRBD outputs, apprise in its own child process."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from watchdog.config import DEFAULT_PATH, parse_config
from watchdog.preflight import (
    ERROR,
    OK,
    Privileges,
    dsn_problem,
    privilege_findings,
    silent_reason,
    static_findings,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures"
DRBD_PRIMARY = FIXTURES / "drbd" / "proc-drbd-8.4-connected-primary-secondary.txt"
NO_DAC = "-dac_override,-dac_read_search"
SERVICES_OK = (
    '["sh", "-c", "echo \'/service/hvmail-httpd: up (pid 100) 1000 seconds\'"]'
)
HOOK = '[[alerts.targets]]\nname = "hook"\nurl = "json://127.0.0.1:9/"\n'


def run(*args: str, timeout: float = 90, drop_dac: bool = False,
        env: dict = None) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "watchdog", *args]
    if drop_dac:
        argv = ["setpriv", f"--bounding-set={NO_DAC}", f"--inh-caps={NO_DAC}", "--", *argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    path.chmod(0o600)
    return path


def base(tmp_path: Path) -> str:
    return f'[daemon]\ninterval = "1s"\nstate_dir = "{tmp_path / "state"}"\n'


# ---------------------------------------------------------------- never watch silently


@pytest.mark.skipif(os.path.exists(DEFAULT_PATH), reason=f"{DEFAULT_PATH} exists here")
def test_daemon_without_config_file_refuses_to_start():
    """Before: the daemon ran on built-in defaults, cycling and paging nobody."""
    result = run(timeout=30)
    assert result.returncode == 3, result.stderr
    assert "refusing to start" in result.stderr
    assert f"{DEFAULT_PATH} not found" in result.stderr and "--allow-silent" in result.stderr
    assert "cycle 1" not in result.stderr


@pytest.mark.skipif(os.path.exists(DEFAULT_PATH), reason=f"{DEFAULT_PATH} exists here")
def test_once_without_config_file_keeps_the_builtin_defaults():
    result = run("--once", "--json", timeout=60)
    assert result.returncode in (0, 1, 2, 3)
    assert "using built-in defaults" in result.stderr
    assert '"checks"' in result.stdout


def test_daemon_without_any_output_refuses_with_the_reason(tmp_path):
    path = write(tmp_path, base(tmp_path) + '[drbd]\npath = "/nonexistent"\n')
    result = run("--config", str(path), timeout=30)
    assert result.returncode == 3
    assert f"{path}: no [[alerts.targets]], no [metrics] and no [heartbeat]" in result.stderr
    assert "allow_silent = true" in result.stderr and "--allow-silent" in result.stderr
    assert not (tmp_path / "state").exists()  # it never started


def test_targets_that_receive_nothing_count_as_silent(tmp_path):
    text = base(tmp_path) + HOOK + "severities = []\n"
    result = run("--config", str(write(tmp_path, text)), timeout=30)
    # Refused as a value that cannot work, before the daemon could start silent.
    assert result.returncode == 3
    assert "[alerts.targets[0].severities] must name at least one severity" in result.stderr


def _starts(argv, tmp_path: Path) -> str:
    """Start the daemon, wait for its first cycle, stop it; its stderr."""
    proc = subprocess.Popen([sys.executable, "-m", "watchdog", *argv], stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True)
    lines = []
    deadline = time.monotonic() + 60
    try:
        assert proc.stderr is not None
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line)
            if "cycle 1:" in line:
                break
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    return "".join(lines)


@pytest.mark.parametrize("how", ["flag", "config"])
def test_told_explicitly_the_daemon_runs_silent(tmp_path, how):
    text = base(tmp_path) + f'[drbd]\npath = "{DRBD_PRIMARY}"\nformat = "proc"\n'
    text += '[postgres]\ndsn = "host=127.0.0.1 port=1"\nconnect_timeout = "1s"\n'
    text += '[services]\ncommand = ["true"]\n'
    argv = ["--config", str(write(tmp_path, text + ("" if how == "flag" else
                                                       "[alerts]\nallow_silent = true\n")))]
    if how == "flag":
        argv.append("--allow-silent")
    log = _starts(argv, tmp_path)
    assert "cycle 1:" in log, log
    assert (tmp_path / "state" / "status.json").exists()


def test_silent_reason_counts_metrics_and_heartbeat():
    assert silent_reason(parse_config("")) is not None
    assert silent_reason(parse_config('[heartbeat]\nurl = "https://hc.example/x"\n')) is None
    assert silent_reason(parse_config(HOOK)) is None
    # The config refuses `severities = []`; a Config built in code is still judged.
    cfg = parse_config(HOOK)
    mute = dataclasses.replace(cfg.alerts.targets[0], severities=())
    cfg = dataclasses.replace(cfg, alerts=dataclasses.replace(cfg.alerts, targets=(mute,)))
    assert "empty severities" in silent_reason(cfg)


# ---------------------------------------------------------------- --check-config, static


def test_check_config_finds_what_only_showed_in_production(tmp_path):
    """Each was accepted before (exit 0) and failed only in the running daemon."""
    unreadable = tmp_path / "slack.url"
    unreadable.write_text("slack://a/b/c\n")
    unreadable.chmod(0)
    text = base(tmp_path) + (
        '[postgres]\n'
        'dsn = "user greenarrow dbname=greenarrow"\n'                # line 5
        '[[alerts.targets]]\n'
        'name = "typo"\n'
        'url = "slak://TokenA/TokenB/TokenC"\n'                      # line 8
        'severities = ["warning"]\n'
        '[[alerts.targets]]\n'
        'name = "missing"\n'
        f'url_file = "{tmp_path / "nope.url"}"\n'                    # line 12
        'severities = ["warning"]\n'
        '[[alerts.targets]]\n'
        'name = "locked"\n'
        f'url_file = "{unreadable}"\n'                               # line 16
        'severities = ["warning"]\n'
    )
    path = write(tmp_path, text)
    result = run("--config", str(path), "--check-config", drop_dac=os.geteuid() == 0)
    err = result.stderr
    assert result.returncode == 3, err
    assert f'{path}:5: [postgres.dsn] error: libpq cannot parse the DSN: missing "=" after "user"' in err
    assert f"{path}:8: [alerts.targets[0].url] error: target 'typo': apprise" in err
    assert "has no plugin for slak://" in err
    assert f"{path}:12: [alerts.targets[1].url_file] error: target 'missing': url_file" in err
    assert "does not exist" in err
    if os.geteuid() != 0 or shutil.which("setpriv"):
        assert f"{path}:16: [alerts.targets[2].url_file]" in err and "permission denied" in err
    assert 'no target receives "critical"' in err
    assert "TokenA" not in err + result.stdout  # the URL is a secret even when wrong
    for line in err.splitlines():
        if " error: " in line:
            assert " -> " in line, line  # each finding says what to change


def test_check_config_clean_config_passes_and_touches_nothing(tmp_path):
    url = tmp_path / "hook.url"
    url.write_text("json://127.0.0.1:9/hook\n")
    url.chmod(0o600)
    text = base(tmp_path) + '[postgres]\ndsn = "host=/tmp port=5432 user=greenarrow"\n'
    text += f'[[alerts.targets]]\nname = "hook"\nurl_file = "{url}"\n'
    result = run("--config", str(write(tmp_path, text)), "--check-config")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(": OK")
    assert not (tmp_path / "state").exists()


def test_dsn_problems_never_show_a_password():
    assert dsn_problem("") is None
    assert dsn_problem("host=/tmp port=5432") is None
    assert "port" in dsn_problem("host=x port=54x2")
    text = dsn_problem("password=hunter2secret host='x")
    assert text and "hunter2secret" not in text
    assert "invalid connection option" in dsn_problem("hots=localhost")


def test_static_findings_are_located(tmp_path):
    text = HOOK + 'severities = ["warning"]\n'
    cfg = parse_config(text, "x.toml")
    (finding,) = [f for f in static_findings(cfg, text) if f.level == ERROR]
    assert finding.key == "alerts.targets" and finding.line == 1
    assert "critical" in finding.render("x.toml") and finding.fix


# ---------------------------------------------------------------- --check-config --connect


def test_privilege_findings_per_version():
    def priv(version, superuser=False, monitor=False, senders=0, visible=0):
        return Privileges("watch", version, superuser, monitor, False, senders, visible)

    (old,) = privilege_findings(priv(90524))
    assert old.level == ERROR and "9.5" in old.message and "SUPERUSER" in old.fix
    (new,) = privilege_findings(priv(150004))
    assert new.level == ERROR and new.fix == "as a superuser: GRANT pg_monitor TO watch;"
    assert privilege_findings(priv(150004, monitor=True))[0].level == OK
    assert privilege_findings(priv(90600, superuser=True))[0].level == OK
    (hidden,) = privilege_findings(priv(150004, monitor=True, senders=2, visible=0))
    assert hidden.level == ERROR and "2 walsender(s)" in hidden.message


def _connect_config(tmp_path: Path, dsn: str, drbd: str = str(DRBD_PRIMARY),
                    services: str = SERVICES_OK, url: str = "json://127.0.0.1:9/") -> Path:
    text = base(tmp_path) + f'[drbd]\npath = "{drbd}"\nformat = "proc"\n'
    text += f'[postgres]\ndsn = "{dsn}"\nconnect_timeout = "2s"\n'
    text += f"[services]\ncommand = {services}\n"
    text += f'[[alerts.targets]]\nname = "hook"\nurl = "{url}"\n'
    return write(tmp_path, text)


def test_connect_tries_every_probe_with_a_privileged_role(tmp_path, pg):
    path = _connect_config(tmp_path, pg.primary_dsn)
    result = run("--config", str(path), "--check-config", "--connect")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "[drbd.path] ok: DRBD: read" in out and "role primary" in out
    assert "[services.command] ok: services:" in out
    assert "[postgres.dsn] ok: PostgreSQL 15" in out and "superuser" in out
    assert "[postgres.dsn] ok: PostgreSQL: the watchdog's probe answered in" in out
    assert "[alerts.targets[0].url] ok: target 'hook': json:// URL parses" in out


def test_connect_names_the_grant_a_plain_role_needs(tmp_path, pg):
    """Before: --check-config said OK; the first cycles then said UNKNOWN (columns hidden)."""
    role = f"watch_{uuid.uuid4().hex[:8]}"
    pg.query("primary", f"CREATE ROLE {role} LOGIN")
    try:
        pg.wait_replayed()
        path = _connect_config(tmp_path, pg.dsn("primary", user=role))
        result = run("--config", str(path), "--check-config", "--connect")
        assert result.returncode == 3, result.stdout + result.stderr
        assert "cannot see pg_stat_replication.state" in result.stderr
        assert f"-> as a superuser: GRANT pg_monitor TO {role};" in result.stderr
        pg.query("primary", f"GRANT pg_monitor TO {role}")
        pg.wait_replayed()
        result = run("--config", str(path), "--check-config", "--connect")
        assert result.returncode == 0, result.stderr
        assert "member of pg_monitor" in result.stdout
    finally:
        pg.query("primary", f"DROP ROLE IF EXISTS {role}")


def test_connect_reports_each_broken_probe_with_a_fix(tmp_path):
    path = _connect_config(
        tmp_path, "host=127.0.0.1 port=1 password=s3cretpw",
        drbd=str(tmp_path / "no_drbd"), services='["true"]', url="mailto://",
    )
    result = run("--config", str(path), "--check-config", "--connect")
    err = result.stderr
    assert result.returncode == 3
    assert "[drbd.path] error: DRBD: cannot read" in err and "-> point [drbd] path" in err
    assert "[services.command] error: services: `true` gave nothing the check can read" in err
    assert "[postgres.dsn] error: PostgreSQL: cannot connect and query" in err
    assert "Connection refused" in err
    assert "[alerts.targets[0].url] error: target 'hook': apprise" in err
    assert "refuses this mailto:// URL" in err
    assert "s3cretpw" not in err + result.stdout


def test_connect_without_check_config_is_a_usage_error():
    result = run("--connect")
    assert result.returncode == 3 and "--connect only goes with --check-config" in result.stderr


def test_reload_to_a_silent_config_is_rejected(tmp_path, http_receiver):
    """A reload may not do what the start refuses: the running config stays."""
    from lab.node import NodeDaemon, node_sections

    sections = node_sections("r1", str(tmp_path / "state"), str(DRBD_PRIMARY),
                             "host=127.0.0.1 port=1",
                             targets=[{"name": "hook", "url": http_receiver.url}])
    node = NodeDaemon("r1", str(tmp_path), sections)
    with node:
        assert node.wait_log(r"cycle 2:", 30)
        silent = {k: v for k, v in sections.items() if k != "alerts.targets"}
        node.write_config(silent)
        node.reload()
        line = node.wait_log(r"reload rejected, keeping the running config", 20)
        assert line and "tell nobody" in line
        start = node.cycles()
        assert node.wait_log(rf"cycle {start + 1}:", 20)  # still watching, old config
        node.write_config({**silent, "alerts": {**silent["alerts"], "allow_silent": True}})
        node.reload()
        assert node.wait_log(r"configuration reloaded", 20)


def test_no_critical_target_is_only_a_warning_when_metrics_may_page(tmp_path):
    pytest.importorskip("prometheus_client")
    text = HOOK + 'severities = ["warning"]\n[metrics]\nlisten = ":9642"\n'
    findings = static_findings(parse_config(text, "m.toml"), text)
    (finding,) = [f for f in findings if "critical" in f.message]
    assert finding.level == "warning" and "Alertmanager" in finding.message


def test_a_pagerduty_url_that_would_never_resolve_is_a_warning(tmp_path):
    url_file = tmp_path / "pd.url"
    url_file.write_text("pagerduty://integrationkey1@apikey12345\n")  # no action=map
    url_file.chmod(0o600)
    text = base(tmp_path) + f'[[alerts.targets]]\nname = "pd"\nurl_file = "{url_file}"\n'
    result = run("--config", str(write(tmp_path, text)), "--check-config")
    assert result.returncode == 0, result.stderr  # a warning, not an error
    # One warning, the same on every apprise (1.9.x resolves through pagerduty_compat).
    assert result.stderr.count("PagerDuty") == 1, result.stderr
    assert "[alerts.targets[0].url_file] target 'pd' is PagerDuty without ?action=map" in (
        result.stderr)
    assert "add ?action=map to its URL" in result.stderr
    assert "apikey12345" not in result.stderr + result.stdout
    url_file.write_text("pagerduty://integrationkey1@apikey12345?action=map\n")
    result = run("--config", str(write(tmp_path, text)), "--check-config")
    assert result.returncode == 0 and "PagerDuty" not in result.stderr

