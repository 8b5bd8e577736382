"""backup_log with real files: the probe's bounded tail read, a real cycle and `--once`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from watchdog.checks.backup_log import FAILURE_LINE, SUCCESS_LINE, BackupLogConfig, check_backup_log
from watchdog.config import parse_config
from watchdog.metrics import MetricsView, families
from watchdog.model import Role, Status
from watchdog.probes.backup_log import DEFAULT_PATH, TAIL_BYTES, probe_backup_log
from watchdog.runner import Probes, run_cycle

HOUR = 3600.0
DRBD = Path(__file__).parent / "fixtures/drbd"
PRIMARY = DRBD / "proc-drbd-8.4-connected-primary-secondary.txt"
SECONDARY = DRBD / "proc-drbd-8.4-ug-connected-secondary-primary.txt"
BANNER = "!" * 30 + " WARNING " + "!" * 30
FAILED_RUN = (
    "Backing up /var/hvmail/control\n"
    "pg_dump: error: could not write to output file: No space left on device\n"
    f"{BANNER}\n"
    "There was an error running backups. Please review the above output for\n"
    "details and contact GreenArrow technical support if you have any questions.\n"
    f"{BANNER}\n"
    f"{FAILURE_LINE}\n"
)
GOOD_RUN = f"Backing up /var/hvmail/control\nDumping database greenarrow\n{SUCCESS_LINE}\n"


def write(path: Path, text: str, age: float = 0.0) -> Path:
    path.write_text(text)
    if age:
        when = time.time() - age
        os.utime(path, (when, when))
    return path


def judge(path: Path, configured: bool = True):
    return check_backup_log(probe_backup_log(str(path), configured), BackupLogConfig())


def test_success_failure_and_stale_logs(tmp_path):
    good = judge(write(tmp_path / "good.log", GOOD_RUN, age=2 * HOUR))
    assert good.status == Status.OK and good.details["outcome"] == "success"
    assert 2 * HOUR - 5 < good.details["age_seconds"] < 2 * HOUR + 60
    assert good.details["size_bytes"] == len(GOOD_RUN)

    stale = judge(write(tmp_path / "stale.log", GOOD_RUN, age=27 * HOUR))
    assert stale.status == Status.WARNING and "no backup since" in stale.summary

    failed = judge(write(tmp_path / "failed.log", GOOD_RUN + FAILED_RUN, age=HOUR))
    assert failed.status == Status.CRITICAL
    assert "No space left on device" in failed.summary
    assert failed.details["errors_reported"] == 1


def test_a_run_in_progress_and_one_that_died(tmp_path):
    log = write(tmp_path / "b.log", GOOD_RUN + "Backing up /var/hvmail/control\n")
    assert judge(log).details["outcome"] == "running"
    write(log, log.read_text(), age=9 * HOUR)
    dead = judge(log)
    assert dead.status == Status.CRITICAL and dead.details["outcome"] == "unfinished"


def test_a_log_cut_mid_line_is_not_a_success(tmp_path):
    log = write(tmp_path / "b.log", GOOD_RUN[: -len(" were detected.\n")], age=9 * HOUR)
    result = judge(log)
    assert result.status == Status.CRITICAL
    assert result.details["last_line"] == "The backup is finished. No errors"


def test_missing_default_and_missing_configured(tmp_path):
    absent = tmp_path / "nothing" / "greenarrow-backup.log"
    default = judge(absent, configured=False)
    assert default.status == Status.OK and "not configured here" in default.summary
    configured = judge(absent, configured=True)
    assert configured.status == Status.WARNING
    # A path through a regular file (ENOTDIR) does not exist either.
    (tmp_path / "file").write_text("x")
    assert judge(tmp_path / "file" / "b.log").status == Status.WARNING


def test_a_huge_sparse_log_reads_only_its_tail(tmp_path):
    log = tmp_path / "huge.log"
    with open(log, "wb") as f:
        f.truncate(50 * 1024**3)  # 50 GiB of holes: reading it all would take minutes
        f.seek(0, os.SEEK_END)
        f.write(("x" * 300 + "\n").encode() * 1000 + GOOD_RUN.encode())
    snap = probe_backup_log(str(log), True)
    assert snap.size == 50 * 1024**3 + 301 * 1000 + len(GOOD_RUN)
    assert snap.cut and len(snap.tail.encode()) == TAIL_BYTES and not snap.nul_bytes
    assert check_backup_log(snap, BackupLogConfig()).status == Status.OK


def test_a_log_ending_in_zeros_after_a_crash(tmp_path):
    log = tmp_path / "b.log"
    log.write_bytes(GOOD_RUN.encode() + b"Backing up\n" + b"\x00" * 8192)
    os.utime(log, (time.time() - 10 * HOUR,) * 2)
    result = judge(log)
    assert result.status == Status.CRITICAL and "NUL bytes" in result.summary


def test_binary_and_invalid_utf8_never_crash(tmp_path):
    log = tmp_path / "b.log"
    log.write_bytes(bytes(range(256)) * 64 + b"\xff\xfe caf\xe9\n" + SUCCESS_LINE.encode() + b"\n")
    result = judge(log)
    assert result.status == Status.OK
    log.write_bytes(os.urandom(200_000))
    assert judge(log).status in (Status.OK, Status.CRITICAL)  # running or unfinished


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "b.log"
    os.mkfifo(fifo)
    box = {}
    reader = threading.Thread(target=lambda: box.update(r=judge(fifo)), daemon=True)
    reader.start()
    reader.join(5)
    assert not reader.is_alive(), "the probe blocked on a FIFO"
    assert box["r"].status == Status.UNKNOWN and "is a FIFO" in box["r"].summary


def test_a_directory_is_unknown_with_the_reason(tmp_path):
    result = judge(tmp_path)
    assert result.status == Status.UNKNOWN and "is a directory" in result.summary


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(before=st.binary(max_size=3000), tail_bytes=st.integers(1, 4096),
       ending=st.sampled_from([SUCCESS_LINE, FAILURE_LINE, ""]))
def test_reader_never_reads_more_than_its_bound_and_finds_the_last_line(before, tail_bytes,
                                                                        ending):
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "b.log"
        data = before + b"\n" + ending.encode() + b"\n"
        log.write_bytes(data)
        snap = probe_backup_log(str(log), True, tail_bytes=tail_bytes)
        assert snap.error is None and snap.size == len(data)
        assert len(snap.tail.encode("utf-8", "surrogateescape")) <= 3 * tail_bytes
        assert snap.cut == (len(data) > tail_bytes)
        result = check_backup_log(snap, BackupLogConfig())
        if ending and tail_bytes > len(ending) + 2:
            # The ending is whole in the tail: it decides.
            want = {SUCCESS_LINE: Status.OK, FAILURE_LINE: Status.CRITICAL}[ending]
            assert result.status == want, (snap.tail[-200:], result.summary)


# ---------------------------------------------------------------- through the runner


def _unreachable(cfg):
    raise ConnectionError("no server in this test")


def _config(drbd: Path, extra: str = ""):
    return parse_config(f'[drbd]\nformat = "proc"\npath = "{drbd}"\n' + extra)


def test_a_real_cycle_runs_it_on_both_roles_with_metrics(tmp_path):
    log = write(tmp_path / "b.log", GOOD_RUN + FAILED_RUN, age=HOUR)
    probes = Probes(postgres=_unreachable, services=_unreachable)
    for drbd, role in ((PRIMARY, Role.PRIMARY), (SECONDARY, Role.SECONDARY)):
        cfg = _config(drbd, f'[backup_log]\npath = "{log}"\n')
        report = run_cycle(cfg, probes).report
        assert report.role == role
        (result,) = [c for c in report.checks if c.name == "backup_log"]
        assert result.status == Status.CRITICAL and "No space left" in result.summary
    view = MetricsView(node="n", version="v", role="secondary", checks=report.checks)
    samples = {f.name: f.samples for f in families(view)}
    assert samples["ha_watchdog_backup_log_outcome"] == (  # the node label comes first
        (("n", "success"), 0), (("n", "failure"), 1), (("n", "running"), 0),
        (("n", "unfinished"), 0))
    ((labels, age),) = samples["ha_watchdog_backup_log_age_seconds"]
    assert labels == ("n",) and HOUR - 5 < age < HOUR + 60


def test_a_hung_probe_is_unknown_within_its_deadline(monkeypatch):
    import watchdog.runner as runner

    gate = threading.Event()

    def hung(cfg):
        gate.wait(30)

    monkeypatch.setattr(runner, "_backup_log_job", lambda cfg, probes, role: (
        lambda: hung(cfg), 0.3))
    monkeypatch.setitem(runner.SNAPSHOTS, "backup_log", ("backup log probe", runner._backup_log_job))
    try:
        report = run_cycle(_config(PRIMARY), Probes(postgres=_unreachable,
                                                    services=_unreachable)).report
    finally:
        gate.set()
    (result,) = [c for c in report.checks if c.name == "backup_log"]
    assert result.status == Status.UNKNOWN
    assert result.summary == "backup log probe failed: TimeoutError: no answer within 0.3s"


def _once_config(tmp_path: Path, log: Path) -> Path:
    config = tmp_path / "config.toml"
    config.write_text(f'[node]\nname = "test1"\n[drbd]\nformat = "proc"\npath = "{SECONDARY}"\n'
                      f'[postgres]\ndsn = "host=/nonexistent connect_timeout=1"\n'
                      f'[backup_log]\npath = "{log}"\n')
    config.chmod(0o600)
    return config


def test_a_log_it_may_not_read_is_unknown_with_the_reason(tmp_path):
    if os.geteuid() == 0 and not shutil.which("setpriv"):
        pytest.skip("root reads any file and setpriv is missing to drop privileges")
    log = write(tmp_path / "b.log", GOOD_RUN)
    log.chmod(0)
    argv = [sys.executable, "-m", "watchdog", "--config", str(_once_config(tmp_path, log)),
            "--once", "--json"]
    if os.geteuid() == 0:  # root without the capabilities that let it read any file
        no_dac = "-dac_override,-dac_read_search"
        argv = ["setpriv", f"--bounding-set={no_dac}", f"--inh-caps={no_dac}", "--", *argv]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    entry = {c["name"]: c for c in json.loads(done.stdout)["checks"]}["backup_log"]
    assert entry["status"] == "unknown", entry
    assert entry["summary"] == f"cannot read the backup log {log}: Permission denied"


def test_once_shows_it_in_the_table_and_json_with_the_exit_code(tmp_path):
    log = write(tmp_path / "b.log", FAILED_RUN, age=HOUR)
    config = _once_config(tmp_path, log)
    argv = [sys.executable, "-m", "watchdog", "--config", str(config), "--once"]
    table = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    rows = [line for line in table.stdout.splitlines() if line.startswith("backup_log ")]
    assert len(rows) == 1 and "CRITICAL" in rows[0], table.stdout + table.stderr
    done = subprocess.run(argv + ["--json"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    checks = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    entry = checks["backup_log"]
    assert entry["status"] == "critical" and entry["details"]["outcome"] == "failure"
    assert entry["details"]["path"] == str(log)


def test_the_configs_secrets_never_leave_through_quoted_log_lines(tmp_path):
    password, token = "Sup3rS3cretPw", "T0kenAbcdef123456"
    log = write(tmp_path / "b.log", (
        f"pg_dump: error: connection to 'host=/tmp password={password}' failed\n"
        f"curl: (22) https://hooks.example.net/services/{token} returned 500\n"
        f"{FAILURE_LINE}\n"), age=HOUR)
    cfg = _config(PRIMARY, f'[postgres]\ndsn = "host=/tmp password={password}"\n'
                           f'[backup_log]\npath = "{log}"\n'
                           '[[alerts.targets]]\nname = "chat"\n'
                           f'url = "json://hooks.example.net/services/{token}"\n')
    report = run_cycle(cfg, Probes(postgres=_unreachable, services=_unreachable)).report
    (result,) = [c for c in report.checks if c.name == "backup_log"]
    text = json.dumps(result.to_json())
    assert result.status == Status.CRITICAL and "pg_dump: error" in text
    assert password not in text and token not in text and "***" in text


def test_check_config_connect_reads_the_log_once(tmp_path):
    from watchdog.preflight import ERROR, OK, WARNING, _backup_log, _Out

    def findings(extra: str):
        out = _Out("")
        _backup_log(_config(PRIMARY, extra), out, None)
        return [(f.level, f.key, f.message) for f in out.findings]

    if not os.path.exists(DEFAULT_PATH):  # a GreenArrow host running the suite has one
        (absent,) = findings('[backup_log]\nenabled = true\n')
        assert absent[0] == OK and "not configured here" in absent[2]
    (missing,) = findings(f'[backup_log]\npath = "{tmp_path}/none.log"\n')
    assert missing[:2] == (ERROR, "backup_log.path") and "does not exist" in missing[2]
    failed = write(tmp_path / "b.log", FAILED_RUN, age=HOUR)
    (seen,) = findings(f'[backup_log]\npath = "{failed}"\n')
    assert seen[0] == WARNING and "CRITICAL: the newest backup failed" in seen[2]
    assert findings('[backup_log]\nenabled = false\n') == []
