"""Config loading: defaults, every key of the example, and located errors."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from watchdog.config import (
    Config,
    ConfigError,
    effective_unknown_for,
    load_config,
    locate,
    parse_config,
)

ROOT = Path(__file__).resolve().parent.parent


def problems(text: str) -> list:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "test.toml")
    return info.value.problems


def test_example_config_is_valid_and_matches_defaults():
    cfg = load_config(str(ROOT / "config.example.toml"))
    defaults = Config()
    for section in ("daemon", "drbd", "services", "postgres", "postgres_role", "standbys",
                    "replay_lag", "backup", "alerts", "heartbeat", "metrics", "maintenance",
                    "digest"):
        assert getattr(cfg, section) == getattr(defaults, section), section


def test_example_documents_every_key():
    """Every key of the schema appears in config.example.toml (set or commented)."""
    import dataclasses

    import watchdog.config as c

    text = (ROOT / "config.example.toml").read_text()
    sections = {**c.all_sections(), "backup_windows": c.BackupWindow, "alerts.targets": c.AlertTarget}
    for name, cls in sections.items():
        for f in dataclasses.fields(cls):
            key = f.metadata.get("toml") or f.name
            if key == "targets":
                continue
            assert re.search(rf"^#?\s*{re.escape(key)}(\s*=| {{2}})", text, re.M), f"{name}.{key}"


def test_empty_file_gives_defaults():
    cfg = parse_config("")
    assert cfg.daemon.interval == 30.0
    assert cfg.services.command == ("service", "greenarrow", "status")
    assert cfg.services.expected_down == ("hvmail-qmail-smtpd3", "hvmail-dnscache")
    assert cfg.drbd.path == "/proc/drbd"
    assert cfg.standbys.min_streaming == 1
    assert cfg.alerts.renotify == 4 * 3600
    assert effective_unknown_for(cfg.replay_lag) == cfg.replay_lag.for_


def test_values_are_typed():
    cfg = parse_config(
        """
[node]
name = "mail1"
[replay_lag]
warning = "500ms"
critical = "5m"
warning_bytes = "16MB"
for = "90s"
[drbd]
command = ["drbdadm", "status"]
resources = ["r0"]
[[alerts.targets]]
name = "hook"
url = "json://127.0.0.1:9/"
severities = ["critical"]
[[backup_windows]]
days = ["Sunday", "sat"]
start = "23:00"
end = "02:00"
timezone = "Europe/Berlin"
"""
    )
    assert cfg.node_name == "mail1"
    assert cfg.replay_lag.warning == 0.5
    assert cfg.replay_lag.warning_bytes == 16 * 1024 * 1024
    assert cfg.replay_lag.for_ == 90
    assert cfg.drbd.command == ("drbdadm", "status")
    assert cfg.alerts.targets[0].severities == ("critical",)
    assert cfg.backup_windows[0].days == ("sun", "sat")


def test_syntax_error_names_line_and_column():
    found = problems('[daemon]\ninterval = "30s"\nstate_dir = /var/lib\n')
    assert len(found) == 1
    assert found[0].line == 3 and found[0].column is not None
    assert "TOML syntax error" in str(found[0])
    assert str(found[0]).startswith("test.toml:3:")


def test_all_errors_reported_with_key_path_and_line():
    text = """[daemon]
interval = 30
[replay_lag]
bogus = 1
warning = "soon"
[drbd]
format = "xml"
[[alerts.targets]]
name = "a"
[nope]
x = 1
"""
    found = {p.key: p for p in problems(text)}
    assert found["daemon.interval"].line == 2
    assert "duration" in found["daemon.interval"].message
    assert found["replay_lag.bogus"].line == 4
    assert "unknown key" in found["replay_lag.bogus"].message
    assert found["replay_lag.warning"].line == 5
    assert found["drbd.format"].line == 7
    assert found["alerts.targets[0]"].line == 8
    assert found["nope"].line == 10
    assert len(found) == 6


def test_wrong_types():
    found = problems('[standbys]\nmin_streaming = "one"\n[backup]\ndetect = "yes"\n')
    assert [p.key for p in found] == ["standbys.min_streaming", "backup.detect"]
    assert "integer" in found[0].message and "true or false" in found[1].message


def test_cross_field_checks():
    found = problems('[replay_lag]\nwarning = "10m"\ncritical = "1m"\n')
    assert found[0].key == "replay_lag.critical"


def test_bad_timezone_and_day():
    found = problems('[[backup_windows]]\nstart="01:00"\nend="02:00"\ntimezone="Mars/Base"\ndays=["funday"]\n')
    keys = sorted(p.key for p in found)
    assert keys == ["backup_windows[0].days", "backup_windows[0].timezone"]


def test_locate_second_array_table():
    text = '[[alerts.targets]]\nname="a"\nurl="x"\n\n[[alerts.targets]]\nname="b"\nurl="y"\n'
    assert locate(text, "alerts.targets[1].url") == 7
    assert locate(text, "alerts.targets[0].name") == 2


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(str(tmp_path / "absent.toml"))
    assert "not found" in str(info.value) and "absent.toml" in str(info.value)
    with pytest.raises(ConfigError) as info:
        load_config(str(tmp_path))
    assert "directory" in str(info.value)
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b'[node]\nname = "m\xe9l"\n')
    with pytest.raises(ConfigError) as info:
        load_config(str(bad))
    assert "UTF-8" in str(info.value) and info.value.problems[0].line == 2


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read any file")
def test_unreadable_file(tmp_path):
    path = tmp_path / "secret.toml"
    path.write_text("")
    path.chmod(0)
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert "permission denied" in str(info.value)


def test_permission_warning(tmp_path):
    secret = tmp_path / "hook.url"
    secret.write_text("json://127.0.0.1:9/\n")
    secret.chmod(0o644)
    path = tmp_path / "config.toml"
    path.write_text(f'[[alerts.targets]]\nname = "hook"\nurl_file = "{secret}"\n')
    path.chmod(0o600)
    cfg = load_config(str(path))
    assert len(cfg.warnings) == 1 and "hook" in cfg.warnings[0] and "0644" in cfg.warnings[0]
    secret.chmod(0o600)
    assert load_config(str(path)).warnings == ()


# ---------------------------------------------------------------- metrics, maintenance, digest


@pytest.mark.parametrize(
    "text, expected",
    [
        ('"127.0.0.1:9642"', ("127.0.0.1", 9642)),
        ('":9642"', ("127.0.0.1", 9642)),  # no host written: loopback, never all addresses
        ('"9642"', ("127.0.0.1", 9642)),
        ('"0.0.0.0:9642"', ("0.0.0.0", 9642)),
        ('"[::1]:9100"', ("::1", 9100)),
        ('"localhost:9642"', ("localhost", 9642)),
    ],
)
def test_metrics_listen_forms(text, expected):
    cfg = parse_config(f"[metrics]\nlisten = {text}\n")
    assert cfg.metrics.listen == expected


@pytest.mark.parametrize("text", ['""', '"abc"', '"1.2.3.4"', '"::1:9642"', '"h:0"', '"h:70000"', "9642"])
def test_metrics_listen_errors_are_located(text):
    (problem,) = problems(f"[node]\nname = 'x'\n[metrics]\nlisten = {text}\n")
    assert problem.key == "metrics.listen" and problem.line == 4, problem
    assert "9642" in problem.message or "port" in problem.message or "address" in problem.message


def test_metrics_textfile_must_be_prom(tmp_path):
    (problem,) = problems(f'[metrics]\ntextfile = "{tmp_path}/metrics.txt"\n')
    assert problem.key == "metrics.textfile" and problem.line == 2
    assert ".prom" in problem.message


def test_metrics_without_the_extra_is_a_located_error(tmp_path):
    """With prometheus-client missing, the key itself is the error (file, key, line)."""
    import subprocess
    import sys

    path = tmp_path / "c.toml"
    path.write_text('[node]\nname = "n"\n\n[metrics]\nlisten = ":9642"\n')
    os.chmod(path, 0o600)
    # None in sys.modules hides the package, as on a machine without the extra.
    code = (
        "import sys\n"
        "sys.modules['prometheus_client'] = None\n"
        "from watchdog.cli import main\n"
        f"sys.exit(main(['--config', {str(path)!r}, '--check-config']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3, proc.stderr
    assert f"{path}:5: [metrics.listen] needs the prometheus-client package" in proc.stderr
    assert "pip install 'ha-watchdog[metrics]'" in proc.stderr


def test_maintenance_and_digest_keys():
    cfg = parse_config(
        '[maintenance]\nmax_duration = "2h"\n[digest]\nat = "08:15"\ntimezone = "Europe/Berlin"\n'
    )
    assert cfg.maintenance.max_duration == 7200
    assert (cfg.digest.at.hour, cfg.digest.at.minute, cfg.digest.timezone) == (8, 15, "Europe/Berlin")
    seconds = parse_config('[digest]\nat = "23:59:30"\n')
    assert (seconds.digest.at.minute, seconds.digest.at.second) == (59, 30)
    assert parse_config("").digest.at is None  # off by default
    assert parse_config("").maintenance.max_duration == 8 * 3600


def test_maintenance_and_digest_errors_are_located():
    found = problems('[maintenance]\nmax_duration = "0s"\n[digest]\nat = "25:00"\ntimezone = "Mars/Base"\n')
    keys = {(p.key, p.line) for p in found}
    assert keys == {("maintenance.max_duration", 2), ("digest.at", 4), ("digest.timezone", 5)}, found


def test_digest_without_an_info_target_warns():
    cfg = parse_config(
        '[digest]\nat = "08:00"\n[[alerts.targets]]\nname = "pd"\nurl = "json://h/"\n'
        'severities = ["critical"]\n'
    )
    assert any("no [[alerts.targets]] receives" in w for w in cfg.warnings), cfg.warnings


def test_thousands_of_unknown_sections_are_each_located():
    """One index per text, not one scan per problem (4,000 sections took 25 s, on reload
    too); every problem still carries its own line."""
    text = "".join(f"[s{i}]\nk = 1\n" for i in range(4000))
    found = problems(text)
    assert len(found) == 4000
    assert [p.line for p in found] == [2 * i + 1 for i in range(4000)]
    assert found[-1].key == "s3999"


def test_the_text_is_scanned_once_however_many_problems():
    """The complexity itself, without a clock: the old locator split the whole text into
    lines again for every problem (quadratic); the index does it once."""

    class Counted(str):
        scans = 0

        def splitlines(self, *args, **kwargs):
            type(self).scans += 1
            return super().splitlines(*args, **kwargs)

    text = Counted("".join(f"[s{i}]\nk = 1\n" for i in range(200)))
    with pytest.raises(ConfigError) as info:
        parse_config(text, "test.toml")
    assert len(info.value.problems) == 200
    assert Counted.scans == 1


def test_locate_prefers_the_key_line_then_the_header_then_an_inline_table():
    text = '[a]\nb = 1\nc = { d = 1 }\n[[t]]\nx = 1\n[[t]]\nx = 2\n'
    assert locate(text, "a.b") == 2
    assert locate(text, "a") == 1
    assert locate(text, "a.c.d") == 3
    assert locate(text, "t[1].x") == 7 and locate(text, "t[1]") == 6
    assert locate(text, "nowhere") is None


# ---------------------------------------------------------------- values that cannot work (#11.11)

T = '[[alerts.targets]]\nname = "ops"\nurl = "json://127.0.0.1:9/"\n'
REFUSED = [
    # config text, key path, words the message must hold
    ('[alerts]\nsend_timeout = "0s"\n', "alerts.send_timeout", "at least 1s (every send"),
    ('[alerts]\nexpire = "0s"\n', "alerts.expire", "at least 1m"),
    ('[alerts]\nexpire = "36500d"\n', "alerts.expire", "at most 30d"),
    ('[alerts]\nretries = 100000\n', "alerts.retries", "at most 20"),
    ('[alerts]\nretry_max_wait = "2h"\n', "alerts.retry_max_wait", "at most 10m"),
    ('[drbd]\nfor = "36500d"\n', "drbd.for", "at most 7d"),
    ('[drbd]\nunknown_for = "36500d"\n', "drbd.unknown_for", "at most 7d"),
    ('[services]\nrecover_for = "99999999999h"\n', "services.recover_for", "at most 7d"),
    ('[drbd]\ntimeout = "0s"\n', "drbd.timeout", "at least 100ms"),
    ('[postgres]\nquery_timeout = "100000d"\n', "postgres.query_timeout", "at most 5m"),
    ('[postgres]\nconnect_timeout = "1ms"\n', "postgres.connect_timeout", "at least 100ms"),
    ('[heartbeat]\ntimeout = "9999d"\n', "heartbeat.timeout", "at most 5m"),
    ('[daemon]\ninterval = "0s"\n', "daemon.interval", "at least 10ms"),
    ('[daemon]\ninterval = "3d"\n', "daemon.interval", "at most 1h"),
    ('[daemon]\nflap_window = "0s"\n', "daemon.flap_window", "more than 0s"),
    ('[daemon]\nflap_changes = 10000000000\n', "daemon.flap_changes", "at most 1000"),
    ('[services]\nmin_uptime = "1d"\n', "services.min_uptime", "at most 1h"),
    ('[standbys]\nmax_reply_age = "0s"\n', "standbys.max_reply_age", "at least 1s"),
    ('[standbys]\nmin_streaming = 5000\n', "standbys.min_streaming", "at most 100"),
    ('[standbys]\nwarning_bytes = "0"\n', "standbys.warning_bytes", "at least 1 B"),
    ('[replay_lag]\nwarning = "0s"\n', "replay_lag.warning", "more than 0s"),
    ('[replay_lag]\ncritical_bytes = "9000TB"\n', "replay_lag.critical_bytes", "at most 1024.0 TiB"),
    ('[replay_lag]\nwarning_bytes = "' + "9" * 400 + '"\n', "replay_lag.warning_bytes",
     "far too large"),
    ('[replay_lag]\nmax_receive_age = "0s"\n', "replay_lag.max_receive_age", "at least 1s"),
    ('[backup]\nmax_duration = "1000d"\n', "backup.max_duration", "at most 7d"),
    ('[backup]\napplication_names = ["pg_dump", ""]\n', "backup.application_names",
     "empty string"),
    ('[maintenance]\nmax_duration = "0s"\n', "maintenance.max_duration", "more than 0s"),
    ('[maintenance]\nmax_duration = "3650d"\n', "maintenance.max_duration", "at most 30d"),
    (T + "severities = []\n", "alerts.targets[0].severities", "at least one severity"),
    ('[[alerts.targets]]\nname = ""\nurl = "json://127.0.0.1:9/"\n', "alerts.targets[0].name",
     "must not be empty"),
    ('[[alerts.targets]]\nname = "a\\nb"\nurl = "json://127.0.0.1:9/"\n',
     "alerts.targets[0].name", "control characters"),
    ('[node]\nname = ""\n', "node.name", "leave the key out"),
    ('[node]\nname = "mail1\\u001b[2J"\n', "node.name", "control characters (found '\\x1b')"),
    ('[node]\nname = "mail1\\u2028[mail2] drbd OK"\n', "node.name", "control characters"),
    ('[node]\nname = "mail1\\u202e2liam"\n', "node.name", "control characters"),
    ('[node]\nname = "' + "m" * 65 + '"\n', "node.name", "at most 64 characters"),
    ('[[backup_windows]]\ndays = ["monkey"]\nstart = "01:00"\nend = "02:00"\n',
     "backup_windows[0].days", "unknown day(s) ['monkey']"),
    ('[[backup_windows]]\ndays = ["sunburn"]\nstart = "01:00"\nend = "02:00"\n',
     "backup_windows[0].days", "unknown day(s)"),
    ('[[backup_windows]]\ndays = []\nstart = "01:00"\nend = "02:00"\n',
     "backup_windows[0].days", "at least one day"),
    ('[daemon]\ninterval = "\uff13\uff10s"\n', "daemon.interval", "only ASCII digits"),
    ('[standbys]\nwarning_bytes = "\u0661MB"\n', "standbys.warning_bytes", "only ASCII digits"),
    ('[digest]\nat = "\uff10\uff11:30"\n', "digest.at", "only ASCII digits"),
    ('[metrics]\nlisten = "\uff19\uff16\uff14\uff12"\n', "metrics.listen", "only ASCII digits"),
    ('[services]\ncommand = ["svstat\\u0000", "/service/x"]\n', "services.command", "NUL"),
    ('[services]\ncommand = [""]\n', "services.command", "non-empty"),
    ('[drbd]\npath = "/proc/drbd\\u0000"\n', "drbd.path", "NUL"),
    ('[drbd]\nresources = []\n', "drbd.resources", "leave the key out to watch all"),
]  # fmt: skip


@pytest.mark.parametrize("text,key,words", REFUSED, ids=[r[1] + f"-{i}" for i, r in
                                                         enumerate(REFUSED)])
def test_values_that_cannot_work_are_refused_with_the_reason(text, key, words):
    found = problems(text)
    assert len(found) == 1, found
    problem = found[0]
    assert problem.key == key
    assert words in problem.message, problem.message
    assert problem.line is not None and problem.line >= 1
    assert str(problem).startswith(f"test.toml:{problem.line}: [{key}] ")
    assert "\x1b" not in str(problem) and "\u2028" not in str(problem)


def test_bounds_keep_the_values_that_work():
    cfg = parse_config(
        '[daemon]\ninterval = "10ms"\n[drbd]\nfor = "0s"\nrecover_for = "7d"\n'
        '[alerts]\nrenotify = "0s"\nexpire = "1m"\nsend_timeout = "1s"\nretries = 0\n'
        '[node]\nname = "mail1 (Frankfurt) \u00e9"\n'
        '[[backup_windows]]\ndays = ["Monday", "sat", "SUN"]\nstart = "01:00"\nend = "02:00"\n'
        + T + 'severities = ["critical"]\n',
        "test.toml",
    )
    assert cfg.daemon.interval == 0.01 and cfg.drbd.for_ == 0 and cfg.alerts.renotify == 0
    assert cfg.backup_windows[0].days == ("mon", "sat", "sun")
    assert cfg.node.name == "mail1 (Frankfurt) \u00e9"


def test_check_config_refuses_them_from_the_command_line(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "config.toml"
    path.write_text('[alerts]\nsend_timeout = "0s"\n\n[node]\nname = "x\\u001b[31m"\n')
    path.chmod(0o600)
    result = subprocess.run(
        [sys.executable, "-m", "watchdog", "--config", str(path), "--check-config"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 3
    assert f"{path}:2: [alerts.send_timeout] must be at least 1s" in result.stderr
    assert f"{path}:5: [node.name] must not contain control characters" in result.stderr
    assert "\x1b" not in result.stderr


def test_cycles_slower_than_the_units_watchdog_slot_warn():
    assert parse_config("", "test.toml").warnings == ()
    slow = [w for w in parse_config('[daemon]\ninterval = "5m"\n', "test.toml").warnings
            if "WatchdogSec" in w]  # (the canary's max_receive_age warning comes too)
    assert len(slow) == 1
    assert "WatchdogSec=120" in slow[0] and "at least 660" in slow[0]
    long_probe = parse_config('[services]\ntimeout = "2m"\n', "test.toml").warnings
    assert any("raise WatchdogSec" in w for w in long_probe)


def test_canary_defaults_and_limits():
    cfg = parse_config("")
    assert cfg.canary.enabled is True and cfg.canary.timeout == 2.0
    assert not any("max_receive_age" in w for w in cfg.warnings)
    off = parse_config('[canary]\nenabled = false\ntimeout = "1s"\n')
    assert off.canary.enabled is False and off.canary.timeout == 1.0
    found = problems('[canary]\ntimeout = "10s"\n[postgres]\nquery_timeout = "5s"\n')
    assert [(p.key, p.line) for p in found] == [("canary.timeout", 2)]
    assert "must not be longer than [postgres] query_timeout" in found[0].message
    assert problems('[canary]\ntimeout = "0s"\n')[0].key == "canary.timeout"
    assert problems('[canary]\nenabled = "yes"\n')[0].key == "canary.enabled"


def test_canary_with_max_receive_age_not_above_the_interval_warns():
    cfg = parse_config('[daemon]\ninterval = "60s"\n')
    # located like an error; the key is not in the file, so no line
    assert any(w.startswith("<string>: [replay_lag.max_receive_age] 45s is not longer than "
                            "[daemon] interval (60s)") for w in cfg.warnings), cfg.warnings
    quiet = parse_config('[daemon]\ninterval = "60s"\n[canary]\nenabled = false\n')
    assert not any("max_receive_age" in w for w in quiet.warnings)


def test_deep_nesting_is_located_past_strings_comments_and_headers():
    text = ('[node]\nname = "x # [[[["\nk = \'\'\'\n[[[[\'\'\'\n'
            "[drbd]  # [[\ntimeout = \"5s\"\nresources = " + "[" * 40 + "]" * 40 + "\n")
    (problem,) = problems(text)
    assert (problem.key, problem.line, problem.column) == ("drbd.resources", 7, 45)
    assert "nested more than 32 levels" in problem.message
    shallow = problems('[drbd]\nresources = [["r0"]]\n')
    assert shallow[0].key == "drbd.resources" and "nested" not in shallow[0].message


def test_warnings_name_the_file_the_key_and_the_line():
    text = '[node]\nname = "a"\n\n[daemon]\ninterval = "5m"\n\n[digest]\nat = "08:00"\n'
    warnings = parse_config(text, "/etc/x.toml").warnings
    assert any(w.startswith("/etc/x.toml:8: [digest.at] is set but no [[alerts.targets]]")
               for w in warnings), warnings
    assert any(w.startswith("/etc/x.toml:5: [daemon.interval] 5m00s plus the probes'")
               for w in warnings), warnings
