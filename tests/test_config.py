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
    sections = {**c._SECTIONS, "backup_windows": c.BackupWindow, "alerts.targets": c.AlertTarget}
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


def test_deep_nesting_is_located_past_strings_comments_and_headers():
    text = ('[node]\nname = "x # [[[["\nk = \'\'\'\n[[[[\'\'\'\n'
            "[drbd]  # [[\ntimeout = \"5s\"\nresources = " + "[" * 40 + "]" * 40 + "\n")
    (problem,) = problems(text)
    assert (problem.key, problem.line, problem.column) == ("drbd.resources", 7, 45)
    assert "nested more than 32 levels" in problem.message
    shallow = problems('[drbd]\nresources = [["r0"]]\n')
    assert shallow[0].key == "drbd.resources" and "nested" not in shallow[0].message
