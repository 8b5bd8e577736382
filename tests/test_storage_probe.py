"""The `storage` probe on real filesystems: tmpfs mounts made small on purpose (size=,
nr_inodes=), filled by the test, read by the real statvfs; the forecast driven by a fake
clock over those real readings; the history file in a real state directory (restart,
damage, a full disk under it); DRBD mount points found in a real /proc/mounts.

Mounting needs root (as here and in CI); without it these tests skip and say why.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from watchdog.checks.storage import StorageConfig, check_storage
from watchdog.config import parse_config
from watchdog.model import STORAGE, Role, Status
from watchdog.probes import storage as probe
from watchdog.probes.storage import (
    SRC_CONFIG,
    SRC_DRBD,
    SRC_PGDATA,
    SRC_PGWAL,
    History,
    drbd_mounts,
    parse_mounts,
    probe_storage,
)
from watchdog.runner import Probes, run_cycle

MiB = 1024 * 1024
T0 = 1_800_000_000.0
ROOT = Path(__file__).resolve().parent.parent
DRBD_PRIMARY = (Path(__file__).parent
                / "fixtures/drbd/proc-drbd-8.4-connected-primary-secondary.txt")


def _cannot_mount() -> str:
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root (run the storage tests as root, as CI does)"
    if not shutil.which("mount") or not shutil.which("umount"):
        return "mount/umount not installed"
    return ""


@pytest.fixture
def small_fs(tmp_path):
    """`small_fs("4m", inodes=64)`: a fresh tmpfs of that size, unmounted afterwards."""
    mounted = []

    def make(size: str = "4m", inodes: int = 0, name: str = "fs") -> Path:
        why = _cannot_mount()
        if why:
            pytest.skip(why)
        mnt = tmp_path / f"{name}{len(mounted)}"
        mnt.mkdir()
        opts = f"size={size}" + (f",nr_inodes={inodes}" if inodes else "")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "ha-watchdog-test", str(mnt)],
                              capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(mnt)
        return mnt

    yield make
    for mnt in reversed(mounted):
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=30)


def fill(path: Path, size: int, name: str = "blob") -> None:
    """Write `size` real bytes (tmpfs allocates them: no sparse files)."""
    with open(path / name, "ab") as f:
        f.write(b"\xa5" * size)


def section(*paths, **kw) -> StorageConfig:
    kw.setdefault("drbd_mounts", False)
    kw.setdefault("postgres_data", "")
    return StorageConfig(paths=tuple(str(p) for p in paths), **kw)


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# ---------------------------------------------------------------- bytes and inodes


def test_a_filled_tmpfs_is_critical_with_real_numbers(small_fs, tmp_path):
    mnt = small_fs("4m")
    cfg = section(mnt)
    snap = probe_storage(cfg, None)
    (reading,) = snap.filesystems
    assert reading.error is None and reading.sources == (SRC_CONFIG,)
    assert reading.size_bytes == 4 * MiB and reading.free_bytes == 4 * MiB
    assert check_storage(snap, cfg).status == Status.OK

    fill(mnt, int(3.7 * MiB))
    snap = probe_storage(cfg, None)
    result = check_storage(snap, cfg)
    assert result.status == Status.WARNING, result.summary  # 7.5% free
    fill(mnt, int(0.15 * MiB))
    result = check_storage(probe_storage(cfg, None), cfg)
    assert result.status == Status.CRITICAL
    assert result.summary.startswith(f"{mnt}: ") and "at or below 5%" in result.summary
    entry = result.details["filesystems"][0]
    assert entry["free_bytes"] == os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize


def test_inodes_run_out_on_a_tmpfs_with_bytes_to_spare(small_fs):
    mnt = small_fs("4m", inodes=64)
    cfg = section(mnt)
    for n in range(60):  # like qmail's queue: many small files
        (mnt / f"msg{n}").write_bytes(b"x")
    result = check_storage(probe_storage(cfg, None), cfg)
    entry = result.details["filesystems"][0]
    assert entry["inodes"] == 64 and entry["free_inodes"] <= 3
    assert entry["free_percent"] > 90  # bytes to spare
    assert result.status == Status.CRITICAL
    assert "inodes free" in result.summary and "at or below 5%" in result.summary
    with pytest.raises(OSError):  # the premise: nothing more can be created there
        for n in range(60, 70):
            (mnt / f"msg{n}").write_bytes(b"x")


def test_the_forecast_over_real_readings_pages_before_the_limit(small_fs, tmp_path):
    """A fake clock moves 10 minutes per cycle while the test writes 256 KiB per cycle on a
    16 MiB tmpfs: 1.5 MiB an hour. The forecast follows the real statvfs readings."""
    mnt = small_fs("8m")
    cfg = section(mnt, forecast_min=1200.0, warning_full_in=12 * 3600.0,
                  critical_full_in=4 * 3600.0)
    clock = Clock()
    history = History(str(tmp_path / "state" / "storage-history.json"), clock)
    results = []
    for cycle in range(16):
        if cycle:
            clock.now += 600
            fill(mnt, 256 * 1024)
        results.append(check_storage(probe_storage(cfg, None, clock=clock, history=history), cfg))
    entries = [r.details["filesystems"][0] for r in results]
    assert entries[0]["forecast"].startswith("not enough history yet")
    assert entries[1]["full_in_seconds"] is None  # 10 minutes: not yet
    # From 20 minutes on: free / (1.5 MiB/h), exactly, since the fill is linear.
    for entry in entries[2:]:
        assert entry["rate_per_second"] == pytest.approx(-256 * 1024 / 600, rel=1e-3)
        assert entry["full_in_seconds"] == pytest.approx(entry["free_bytes"] / (256 * 1024 / 600),
                                                         rel=1e-3)
    statuses = [r.status for r in results]
    # 8 MiB: under 12h to full from the first forecast on (WARNING), under 4h (CRITICAL)
    # once less than 6 MiB is free, with more than half the filesystem still free.
    assert statuses[:2] == [Status.OK, Status.OK]
    assert statuses[2] == Status.WARNING and statuses[-1] == Status.CRITICAL
    first_critical = statuses.index(Status.CRITICAL)
    assert entries[first_critical]["free_bytes"] <= 6 * MiB
    assert entries[first_critical - 1]["free_bytes"] > 6 * MiB
    assert entries[-1]["free_percent"] > 50
    assert "at the rate of the last" in results[-1].summary


def test_a_hung_path_is_reported_and_the_others_are_read(small_fs):
    mnt = small_fs("4m")
    release = threading.Event()

    def read(path):
        if path == "/hung":
            release.wait(10)
        return probe.read_fs(path)

    cfg = section(mnt, "/hung", timeout=0.3)
    try:
        snap = probe_storage(cfg, None, read=read)
    finally:
        release.set()
    result = check_storage(snap, cfg)
    assert result.status == Status.UNKNOWN
    by_path = {e["path"]: e for e in result.details["filesystems"]}
    assert by_path["/hung"]["error"] == "cannot read /hung: no answer within 0.3s (a hung mount?)"
    assert by_path[str(mnt)]["status"] == "ok"


def test_a_missing_path_is_unknown_with_the_reason(tmp_path):
    cfg = section(tmp_path / "nope")
    result = check_storage(probe_storage(cfg, None), cfg)
    assert result.status == Status.UNKNOWN
    assert result.summary == (f"{tmp_path / 'nope'}: cannot read {tmp_path / 'nope'}: "
                              "No such file or directory")


def test_two_paths_on_one_filesystem_are_read_once(small_fs):
    mnt = small_fs("4m")
    (mnt / "queue").mkdir()
    snap = probe_storage(section(mnt, mnt / "queue"), None)
    (reading,) = snap.filesystems
    assert reading.path == str(mnt) and reading.sources == (SRC_CONFIG,)


# ---------------------------------------------------------------- what is watched


def test_postgres_data_and_a_wal_directory_on_another_filesystem(small_fs, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    wal = small_fs("4m", name="wal")
    (data / "pg_wal").symlink_to(wal)  # as initdb --waldir makes it
    snap = probe_storage(section(postgres_data=str(data)), None)
    assert [(r.path, r.sources) for r in snap.filesystems] == [
        (str(data), (SRC_PGDATA,)), (str(data / "pg_wal"), (SRC_PGWAL,))]
    assert snap.filesystems[1].size_bytes == 4 * MiB


def test_a_wal_directory_on_the_same_filesystem_is_not_listed_twice(tmp_path):
    data = tmp_path / "data"
    (data / "pg_xlog").mkdir(parents=True)  # 9.x
    snap = probe_storage(section(postgres_data=str(data)), None)
    assert [(r.path, r.sources) for r in snap.filesystems] == [(str(data), (SRC_PGDATA,))]


def test_no_data_directory_here_is_a_note_not_a_problem(tmp_path):
    snap = probe_storage(section(postgres_data=str(tmp_path / "absent")), None)
    assert snap.filesystems == ()
    assert snap.notes == (f"no PostgreSQL data directory at {tmp_path / 'absent'} "
                          "(postgres_data) on this node",)


def test_mounts_lines_with_escapes_and_drbd_devices():
    text = textwrap.dedent("""\
        /dev/sda1 / ext4 rw 0 0
        /dev/drbd1 /media/drbd1 xfs rw,relatime 0 0
        /dev/drbd/by-res/r0/0 /media/with\\040space ext4 rw 0 0
        /dev/drbd10a /not/drbd ext4 rw 0 0
        broken-line
        """)
    assert parse_mounts(text)[2] == ("/dev/drbd/by-res/r0/0", "/media/with space", "ext4")
    assert drbd_mounts(text) == [("/dev/drbd1", "/media/drbd1"),
                                 ("/dev/drbd/by-res/r0/0", "/media/with space")]


def test_no_drbd_mount_is_a_note_and_an_unreadable_mounts_file_a_problem(tmp_path):
    mounts = tmp_path / "mounts"
    mounts.write_text("/dev/sda1 / ext4 rw 0 0\n")
    cfg = section(drbd_mounts=True)
    snap = probe_storage(cfg, None, mounts_file=str(mounts))
    assert snap.filesystems == ()
    assert snap.notes == ("no DRBD device mounted here (normal on the secondary)",)
    assert check_storage(snap, cfg).status == Status.OK

    snap = probe_storage(cfg, None, mounts_file=str(tmp_path / "missing"))
    result = check_storage(snap, cfg)
    assert result.status == Status.UNKNOWN
    assert "the DRBD mount points are unknown" in result.summary


def test_a_mounted_drbd_device_is_found_in_the_real_proc_mounts(tmp_path):
    """In a private mount namespace (unshare): a tmpfs whose source is /dev/drbd7, as the
    kernel lists a mounted DRBD device, found through the real /proc/mounts."""
    why = _cannot_mount()
    if why or not shutil.which("unshare"):
        pytest.skip(why or "unshare (util-linux) not installed")
    mnt = tmp_path / "drbd7"
    mnt.mkdir()
    program = textwrap.dedent(f"""
        import json, subprocess
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "/dev/drbd7", {str(mnt)!r}],
                       check=True)
        from watchdog.checks.storage import StorageConfig, check_storage
        from watchdog.probes.storage import probe_storage
        cfg = StorageConfig(postgres_data="")
        print(json.dumps(check_storage(probe_storage(cfg, None), cfg).to_json()))
    """)
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable,
                           "-c", program], capture_output=True, text=True, timeout=60, cwd=ROOT)
    if done.returncode != 0 and "unshare failed" in done.stderr:
        pytest.skip(f"no private mount namespace here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    (entry,) = [e for e in result["details"]["filesystems"] if e.get("device") == "/dev/drbd7"]
    assert entry["path"] == str(mnt) and entry["sources"] == [SRC_DRBD]
    assert entry["size_bytes"] == 2 * MiB
    assert "/dev/drbd7" not in Path("/proc/mounts").read_text()  # it stayed private


# ---------------------------------------------------------------- the history file


def test_samples_survive_a_restart(small_fs, tmp_path):
    mnt = small_fs("8m")
    state = tmp_path / "state"
    state.mkdir()
    cfg = section(mnt)
    clock = Clock()
    for _ in range(3):
        probe_storage(cfg, str(state), clock=clock, history=History(
            str(state / probe.HISTORY_FILE), clock))  # a new process each time
        clock.now += 600
        fill(mnt, 512 * 1024)
    snap = probe_storage(cfg, str(state), clock=clock,
                         history=History(str(state / probe.HISTORY_FILE), clock))
    assert [s[0] for s in snap.filesystems[0].history] == [T0, T0 + 600, T0 + 1200, T0 + 1800]
    assert check_storage(snap, cfg).details["filesystems"][0]["full_in_seconds"] > 0
    saved = json.loads((state / probe.HISTORY_FILE).read_text())
    assert saved["version"] == 1 and len(saved["filesystems"][str(mnt)]["samples"]) == 4
    assert oct((state / probe.HISTORY_FILE).stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize("content,words", [
    (b"{not json", "corrupt"),
    (b'{"version": 1, "filesystems": {"/x": {"size": 1, "samples": [[1, "a", 2]]}}}',
     "has damaged samples for '/x'"),
    (b'{"version": 99}', "unknown format"),
])
def test_a_damaged_history_starts_over_and_says_so(tmp_path, content, words):
    state = tmp_path / "state"
    state.mkdir()
    (state / probe.HISTORY_FILE).write_bytes(content)
    cfg = section(tmp_path)
    snap = probe_storage(cfg, str(state), clock=Clock(),
                         history=History(str(state / probe.HISTORY_FILE), Clock()))
    result = check_storage(snap, cfg)
    assert result.status == Status.OK  # the filesystem is fine; the history started over
    assert words in result.details["history"]
    assert "samples start over" in result.details["history"]
    assert len(snap.filesystems[0].history) == 1
    saved = json.loads((state / probe.HISTORY_FILE).read_text())  # rewritten, usable again
    assert saved["version"] == 1
    (aside,) = state.glob(probe.HISTORY_FILE + ".corrupt-*")  # the damaged one, kept to look at
    assert aside.read_bytes() == content
    assert str(aside) in result.details["history"]


def test_a_full_state_disk_keeps_the_samples_in_memory_and_says_so(small_fs):
    state = small_fs("64k", name="state")
    with pytest.raises(OSError) as full, open(state / "hog", "wb") as hog:
        for _ in range(1000):  # until the disk is full: no room for the history file
            hog.write(b"\xa5" * 4096)
            hog.flush()
    assert "No space left on device" in str(full.value)
    watched = small_fs("4m")
    cfg = section(watched)
    clock = Clock()
    history = History(str(state / probe.HISTORY_FILE), clock)
    snaps = []
    for _ in range(3):
        snaps.append(probe_storage(cfg, str(state), clock=clock, history=history))
        clock.now += 600
    assert "No space left on device" in snaps[-1].history_problem
    assert "kept in memory" in snaps[-1].history_problem
    assert len(snaps[-1].filesystems[0].history) == 3  # nothing lost
    assert not [n for n in os.listdir(state) if n.startswith(".storage-history")]  # no temp left


def test_history_is_bounded(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    clock = Clock()
    history = History(None, clock)  # in memory while it fills (a write per update is slow)
    window = 3600.0
    big = (10**15, 10**15, 10**12)  # the longest numbers: the largest file
    for _ in range(probe.MAX_SAMPLES * 3):
        clock.now += window / probe.MAX_SAMPLES
        history.update([("/fs0", *big)], clock.now, window)
    paths = [f"/fs{n}" for n in range(probe.MAX_FILESYSTEMS + 10)]
    for _ in range(3):
        clock.now += window / probe.MAX_SAMPLES
        history.update([(p, *big) for p in paths], clock.now, window)
    history.path = str(state / probe.HISTORY_FILE)  # then the file it writes
    kept, problem = history.update([(p, *big) for p in paths[:probe.MAX_FILESYSTEMS]],
                                   clock.now + 7.5, window)
    assert problem is None and len(kept) == probe.MAX_FILESYSTEMS
    assert len(kept["/fs0"]) == probe.MAX_SAMPLES
    saved = json.loads((state / probe.HISTORY_FILE).read_text())
    assert len(saved["filesystems"]) == probe.MAX_FILESYSTEMS
    # Readings closer together than window / MAX_SAMPLES replace the newest sample.
    now = clock.now + 7.5
    kept, _ = history.update([("/fs0", 10**15, 40, 5)], now + 1, window)
    assert kept["/fs0"][-1] == (now, 40, 5) and len(kept["/fs0"]) == probe.MAX_SAMPLES
    # The worst case stays far below what the reader accepts.
    samples = [[1.8e9 + 0.5, 10**15, 10**12]] * probe.MAX_SAMPLES
    worst = {"version": 1, "filesystems": {
        "/" + "p" * 200 + str(n): {"size": 10**15, "samples": samples, "seen": 1.8e9}
        for n in range(probe.MAX_FILESYSTEMS)}}
    assert len(json.dumps(worst, separators=(",", ":"))) < probe.HISTORY_LIMIT


def test_a_resized_filesystem_starts_its_samples_over(tmp_path):
    history = History(None)
    history.update([("/a", 100, 50, 5)], T0, 3600)
    kept, _ = history.update([("/a", 200, 150, 5)], T0 + 60, 3600)
    assert kept["/a"] == ((T0 + 60, 150, 5),)


# ---------------------------------------------------------------- through the cycle


def test_a_cycle_runs_storage_for_every_role_with_its_config(small_fs, tmp_path):
    mnt = small_fs("4m")
    fill(mnt, int(3.9 * MiB))
    state = tmp_path / "state"
    cfg = parse_config(
        f'[daemon]\nstate_dir = "{state}"\n'
        f'[drbd]\nformat = "proc"\npath = "{DRBD_PRIMARY}"\n'
        f'[storage]\npaths = ["{mnt}"]\npostgres_data = ""\ndrbd_mounts = false\n')

    def unreachable(cfg):
        raise ConnectionError("no server in this test")

    cycle = run_cycle(cfg, Probes(postgres=unreachable, services=unreachable))
    assert cycle.report.role == Role.PRIMARY
    (result,) = [c for c in cycle.report.checks if c.name == STORAGE]
    assert result.status == Status.CRITICAL and str(mnt) in result.summary
    assert cycle.snapshots["storage"].filesystems[0].path == str(mnt)


def test_the_file_is_written_when_a_sample_is_added_not_every_cycle(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    clock = Clock()
    history = History(str(state / probe.HISTORY_FILE), clock)
    file = state / probe.HISTORY_FILE
    history.update([("/a", 100, 50, 5)], T0, 3600)  # spacing: 3600 / MAX_SAMPLES = 7.5 s
    first = file.stat().st_mtime_ns
    os.utime(file, ns=(first - 10**9, first - 10**9))
    kept, _ = history.update([("/a", 100, 40, 5)], T0 + 1, 3600)  # replaces the newest
    assert kept["/a"] == ((T0, 40, 5),)
    assert file.stat().st_mtime_ns == first - 10**9  # not rewritten
    history.update([("/a", 100, 30, 5)], T0 + 8, 3600)  # a new sample: written
    saved = json.loads(file.read_text())
    assert saved["filesystems"]["/a"]["samples"] == [[T0, 40, 5], [T0 + 8, 30, 5]]


@pytest.fixture
def open_dir():
    """A directory any user may traverse (pytest's tmp_path is under a root-only one)."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="ha-watchdog-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_as_another_user_a_closed_data_directory_is_said_not_skipped(open_dir):
    """The data directory is 0700 (PostgreSQL's user): a monitoring user may statvfs it
    but cannot look for pg_wal inside; that is a note, never a silent gap."""
    data = open_dir / "data"
    (data / "pg_wal").mkdir(parents=True)
    data.chmod(0o700)
    program = textwrap.dedent(f"""
        import json
        from watchdog.checks.storage import StorageConfig
        from watchdog.probes.storage import probe_storage
        snap = probe_storage(StorageConfig(drbd_mounts=False, postgres_data={str(data)!r}), None)
        print(json.dumps([[r.path, r.error] for r in snap.filesystems] + [list(snap.notes)]))
    """)
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to run the probe as another user (nobody)")
    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    tried = subprocess.run(as_nobody + ["-c", "import watchdog"], capture_output=True,
                           text=True, timeout=60, cwd=ROOT, env=env)
    if tried.returncode != 0:  # e.g. a pyenv Python under root's home
        pytest.skip(f"this Python cannot run as nobody: {tried.stderr.strip()[-200:]}")
    done = subprocess.run(as_nobody + ["-c", program], capture_output=True, text=True,
                          timeout=60, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr
    *readings, notes = json.loads(done.stdout)
    assert readings == [[str(data), None]]  # statvfs of the directory itself works
    assert notes == [f"cannot look in {data} for pg_wal/pg_xlog (Permission denied); run as "
                     "root (or PostgreSQL's user) to watch the WAL's filesystem"]


def test_check_config_connect_reads_each_watched_path_once(tmp_path):
    from watchdog.preflight import ERROR, OK, connect_findings

    text = (f'[storage]\npaths = ["{tmp_path}", "{tmp_path / "gone"}"]\npostgres_data = ""\n'
            "drbd_mounts = false\n")
    cfg = parse_config(text, "/etc/ha-watchdog/config.toml")
    findings = [f for f in connect_findings(cfg, text) if f.key.startswith("storage")]
    assert [(f.level, f.key) for f in findings] == [(ERROR, "storage.paths")]
    assert findings[0].message == (f"storage: cannot read {tmp_path / 'gone'}: No such file "
                                   "or directory")
    assert findings[0].line == 2

    cfg = parse_config(f'[storage]\npaths = ["{tmp_path}"]\npostgres_data = ""\n')
    (found,) = [f for f in connect_findings(cfg, "") if f.key.startswith("storage")]
    assert found.level == OK and found.message.startswith("storage: 1 filesystem(s) read; OK: ")


def test_a_data_directory_that_hangs_is_reported_not_waited_for(monkeypatch, tmp_path):
    release = threading.Event()
    real_lstat = os.lstat

    def lstat(path, *args, **kwargs):
        if str(path) == "/hung/data":
            release.wait(10)
        return real_lstat(path, *args, **kwargs)

    monkeypatch.setattr(probe.os, "lstat", lstat)
    cfg = section(tmp_path, postgres_data="/hung/data", timeout=0.3)
    try:
        snap = probe_storage(cfg, None)
    finally:
        release.set()
    by_path = {r.path: r for r in snap.filesystems}
    assert by_path["/hung/data"].error == ("cannot read /hung/data: no answer within 0.3s "
                                           "(a hung mount?)")
    assert by_path[str(tmp_path)].error is None


# ---------------------------------------------------------------- a real daemon


def _saved_samples(path: Path, key: str) -> list:
    try:
        return json.loads(path.read_text())["filesystems"][key]["samples"]
    except (OSError, ValueError, KeyError):
        return []


def _wait_for(predicate, timeout: float, node) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        assert node.running(), "\n".join(node.log()[-20:])
        assert time.monotonic() < deadline, "\n".join(node.log()[-20:])
        time.sleep(0.1)


def test_a_real_daemon_keeps_its_samples_across_a_restart(small_fs, tmp_path, http_receiver):
    """The daemon process writes the history in its state_dir; a restarted one goes on
    from it (the forecast does not start over), and reports the forecast's samples."""
    from lab.cluster import lab_node
    from lab.node import NodeDaemon

    mnt = small_fs("8m")
    overrides = {"daemon": {"interval": "0.2s"},
                 "storage": {"paths": [str(mnt)], "drbd_mounts": False, "postgres_data": "",
                             "forecast_window": "1m", "forecast_min": "1s"}}
    node, _ = lab_node(str(tmp_path / "p1"), "p1", "primary", "host=127.0.0.1 port=1",
                       services_command=["true"],
                       targets=[{"name": "hook", "url": http_receiver.url}],
                       overrides=overrides)
    saved = tmp_path / "p1" / "state" / probe.HISTORY_FILE
    with node:
        fill(mnt, MiB)
        _wait_for(lambda: len(_saved_samples(saved, str(mnt))) >= 3, 30, node)
    before = _saved_samples(saved, str(mnt))
    restarted = NodeDaemon(node.name, node.workdir, node.sections)
    with restarted:
        _wait_for(lambda: len(_saved_samples(saved, str(mnt))) >= len(before) + 2, 30,
                  restarted)
    after = _saved_samples(saved, str(mnt))
    assert after[:len(before)] == before  # the first run's samples, kept
    assert after[-1][1] == 7 * MiB and after[-1][0] > before[-1][0]
    assert not [line for line in node.log() + restarted.log() if "storage" in line
                and "ERROR" in line]
