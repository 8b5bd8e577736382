"""The persistent outbox: enqueue = persist, dedup by id, atomic writes, expiry."""

from __future__ import annotations

import json
import logging
import os
import signal
import stat
import subprocess
import sys
import time

from conftest import ROOT

from watchdog.alerts.outbox import Outbox, write_atomic


def outbox_in(tmp_path, clock=time.time) -> Outbox:
    box = Outbox(str(tmp_path / "outbox.json"), clock=clock)
    box.load()
    return box


def test_added_items_are_on_disk_before_anything_is_sent(tmp_path, make_notification):
    box = outbox_in(tmp_path)
    first, second = make_notification("drbd"), make_notification("replay_lag", "warning")
    assert box.add("slack", first) is True
    assert box.add("slack", second) is True
    assert box.add("pager", first) is True

    again = outbox_in(tmp_path)  # what a restarted daemon reads
    assert again.pending("slack") == [first, second]
    assert again.pending("pager") == [first]
    assert sorted(again.targets()) == ["pager", "slack"]
    assert again.count() == 3


def test_the_same_id_is_queued_once_per_target_even_after_delivery_and_restart(
    tmp_path, make_notification
):
    box = outbox_in(tmp_path)
    n = make_notification()
    assert box.add("slack", n) is True
    assert box.add("slack", n) is False
    assert box.pending("slack") == [n]

    assert box.remove("slack", [n.id]) == 1
    assert box.pending("slack") == []
    assert box.add("slack", n) is False  # delivered already: not again

    again = outbox_in(tmp_path)
    assert again.was_delivered("slack", n.id)
    assert again.add("slack", n) is False
    assert again.add("email", n) is True  # dedup is per target


def test_file_is_json_mode_0600_and_no_temp_files_are_left(tmp_path, make_notification):
    box = outbox_in(tmp_path)
    box.add_many([("slack", make_notification()), ("email", make_notification("services"))])
    path = tmp_path / "outbox.json"
    data = json.loads(path.read_text())
    assert data["version"] == 1
    assert len(data["targets"]["slack"]["pending"]) == 1
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert sorted(os.listdir(tmp_path)) == ["outbox.json"]


def test_corrupt_outbox_is_moved_aside_with_a_log_line_not_a_crash(
    tmp_path, make_notification, caplog
):
    box = outbox_in(tmp_path)
    box.add("slack", make_notification())
    path = tmp_path / "outbox.json"
    partial = path.read_bytes()[:25]  # as if the disk lost the tail of the file
    path.write_bytes(partial)

    caplog.set_level(logging.ERROR, logger="watchdog.alerts.outbox")
    again = outbox_in(tmp_path)
    assert again.count() == 0
    aside = [p for p in os.listdir(tmp_path) if p.startswith("outbox.json.corrupt-")]
    assert len(aside) == 1
    assert (tmp_path / aside[0]).read_bytes() == partial
    lines = [r for r in caplog.records if "moved it to" in r.getMessage()]
    assert len(lines) == 1

    n = make_notification("services")
    assert again.add("slack", n) is True  # and it works from there on
    assert outbox_in(tmp_path).pending("slack") == [n]


def test_unreadable_entries_are_skipped_and_the_rest_kept(tmp_path, make_notification, caplog):
    good = make_notification()
    doc = {
        "version": 1,
        "targets": {
            "slack": {
                "pending": [
                    {"queued": 1.0, "notification": good.to_json()},
                    {"queued": 1.0, "notification": {"id": "x"}},
                    {"notification": good.to_json()},
                ],
                "delivered": {},
            }
        },
    }
    (tmp_path / "outbox.json").write_text(json.dumps(doc))
    caplog.set_level(logging.WARNING, logger="watchdog.alerts.outbox")
    box = outbox_in(tmp_path)
    assert box.pending("slack") == [good]
    assert caplog.text.count("set aside a damaged entry for target 'slack'") == 2
    (aside,) = [p for p in os.listdir(tmp_path) if p.startswith("outbox.json.rejected-")]
    assert len(json.loads((tmp_path / aside).read_text())) == 2
    assert "2 damaged entries set aside" in box.take_damage()[0]


def test_expire_returns_old_items_and_forgets_old_delivered_ids(tmp_path, make_notification):
    now = [1_700_000_000.0]
    box = outbox_in(tmp_path, clock=lambda: now[0])
    old = make_notification()
    box.add("slack", old)
    now[0] += 7200 - 60  # the age counts from when it entered the outbox
    young = make_notification("services", created=0.0)
    sent = make_notification("standbys")
    box.add_many([("slack", young), ("slack", sent)])
    box.remove("slack", [sent.id])
    now[0] += 60

    expired = box.expire(now[0], max_age=3600)
    assert expired == [("slack", old)]
    assert box.pending("slack") == [young]
    assert outbox_in(tmp_path).pending("slack") == [young]
    assert box.expire(now[0], max_age=3600) == []

    # The dedup memory of `sent` lasts as long as the expiry window, then it is forgotten.
    assert box.add("slack", sent) is False
    box.expire(now[0] + 7200, max_age=3600)
    assert not box.was_delivered("slack", sent.id)


def test_a_disk_that_refuses_writes_keeps_items_in_memory(tmp_path, make_notification, caplog):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the state directory should be")
    box = Outbox(str(blocker / "outbox.json"))
    box.load()
    caplog.set_level(logging.ERROR, logger="watchdog.alerts.outbox")
    n = make_notification()
    assert box.add("slack", n) is True
    assert box.pending("slack") == [n]
    assert box.last_error is not None and "cannot write outbox" in box.last_error
    assert "kept in memory only" in caplog.text


def test_write_atomic_replaces_content_whole(tmp_path):
    path = tmp_path / "sub" / "file.json"
    write_atomic(str(path), b"first")
    write_atomic(str(path), b"second")
    assert path.read_bytes() == b"second"
    assert os.listdir(tmp_path / "sub") == ["file.json"]


_WRITER = """
import sys, time
from watchdog.alerts.outbox import Outbox
from watchdog.alerts import notification as nt
box = Outbox(sys.argv[1])
box.load()
pad = "x" * 20000
print("ready", flush=True)
for i in range(100000):
    n = nt.Notification(id="n%d-%s" % (i, sys.argv[2]), kind=nt.PROBLEM, severity=nt.SEV_CRITICAL,
                        notify_type=nt.TYPE_FAILURE, title="[mail1] drbd", body=pad,
                        node="mail1", created=time.time())
    box.add("slack", n)
    if i % 3 == 2:
        box.remove("slack", [n.id])
"""


def test_sigkill_during_writes_never_leaves_a_torn_outbox(tmp_path, caplog):
    """Kill a process that rewrites the outbox in a loop: what is left always loads whole."""
    path = tmp_path / "outbox.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    counts = []
    for round_ in range(4):
        proc = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(path), str(round_)],
            stdout=subprocess.PIPE,
            env=env,
        )
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(0.1 + 0.05 * round_)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        box = Outbox(str(path))
        box.load()
        assert box.last_error is None
        counts.append(box.count("slack"))
        assert all(len(n.body) == 20000 for n in box.pending("slack"))
    assert not [p for p in os.listdir(tmp_path) if p != "outbox.json"]  # no aside, no temp
    assert "corrupt" not in caplog.text
    assert counts[-1] > 0 and counts == sorted(counts)  # each run added to what was there


def test_importing_outbox_and_notification_does_not_import_apprise():
    code = (
        "import sys\n"
        "import watchdog.alerts.notification, watchdog.alerts.outbox\n"
        "import watchdog.alerts.delivery, watchdog.alerts.heartbeat\n"
        "assert 'apprise' not in sys.modules, 'apprise imported'\n"
        "print('clean')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "clean"


# ---------------------------------------------------------------- damaged outbox (issue 11)


def test_a_truncated_outbox_keeps_every_whole_entry_and_says_what_was_lost(
    tmp_path, make_notification, caplog
):
    box = outbox_in(tmp_path)
    first, second, third = (make_notification(c) for c in ("drbd", "services", "standbys"))
    box.add_many([("slack", first), ("slack", second), ("pager", third)])
    box.remove("pager", [third.id])  # delivered: remembered for dedup
    path = tmp_path / "outbox.json"
    whole = path.read_bytes()
    cut = whole.index(second.id.encode())  # the disk lost the tail, mid second entry
    path.write_bytes(whole[:cut])

    caplog.set_level(logging.ERROR, logger="watchdog.alerts.outbox")
    again = outbox_in(tmp_path)
    assert again.pending("slack") == [first]  # recovered, not thrown away
    assert again.was_delivered("pager", third.id)
    (damage,) = again.take_damage()
    assert "recovered 1 pending alert(s)" in damage and "could not be read are lost" in damage
    assert again.take_damage() == []  # said once
    assert outbox_in(tmp_path).pending("slack") == [first]  # and written back whole
    assert "recovered 1 pending alert(s)" in caplog.text


def test_a_wrong_shaped_or_fifo_outbox_is_moved_aside_and_reported(tmp_path):
    path = tmp_path / "outbox.json"
    path.write_text("[1, 2, 3]")
    box = outbox_in(tmp_path)
    assert box.count() == 0 and "nothing could be recovered" in box.take_damage()[0]
    os.mkfifo(path)
    box = outbox_in(tmp_path)  # must not block on the FIFO
    assert "is a FIFO" in box.take_damage()[0]
    assert not path.exists()  # moved aside: the next write makes a regular file again


def test_an_id_that_is_a_list_is_set_aside_not_a_crash(tmp_path, make_notification):
    good = make_notification()
    bad = dict(good.to_json(), id=["a", "b"])
    doc = {"version": 1, "targets": {"hook": {"delivered": {}, "pending": [
        {"queued": 1.0, "notification": bad}, {"queued": 1.0, "notification": good.to_json()}]}}}
    (tmp_path / "outbox.json").write_text(json.dumps(doc))
    box = outbox_in(tmp_path)
    assert box.pending("hook") == [good]
    assert "1 damaged entry set aside" in box.take_damage()[0]


def test_a_target_with_nothing_pending_is_no_damage_after_a_restart(tmp_path, make_notification):
    """Bug: `"pending": []` (everything delivered) was read as `()`, "pending is not a list",
    so every restart or reload after a delivery set it aside and sent a NOTICE that the
    outbox was damaged (seen in the demo's reloads)."""
    box = outbox_in(tmp_path)
    n = make_notification()
    box.add("slack", n)
    box.remove("slack", [n.id])
    assert json.loads((tmp_path / "outbox.json").read_text())["targets"]["slack"]["pending"] == []

    again = outbox_in(tmp_path)
    assert again.take_damage() == []
    assert again.was_delivered("slack", n.id)
    assert not list(tmp_path.glob("outbox.json.rejected-*"))
