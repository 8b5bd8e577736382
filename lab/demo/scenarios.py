"""The demo's scenarios: what it breaks, in what order, and what it expects to hear."""

from __future__ import annotations

import os
import threading
import time
from typing import Callable, List

from lab.demo.base import DemoBase
from lab.demo.reading import backup_window_around
from lab.demo.settings import (
    BACKUP_PAUSE_SECONDS,
    CRASH_SERVICE,
    DISK_MIB,
    DISK_MIB_PER_S,
    DISK_STORAGE,
    MAINTENANCE_FOR,
    MAINTENANCE_REASON,
    METRICS_SHOWN,
    SPIKE_SECONDS,
)
from lab.demo.util import _OPENING, _failed, _indent, _keep_writing, _lag, _still_open


class Demo(DemoBase):
    """The scenarios, in the order run() plays them."""

    # ------------------------------------------------------------ scenarios

    def start_ok(self, number: int) -> None:
        self.heading(number, "A healthy cluster", """
            mail1 is DRBD Primary and runs the PostgreSQL primary and the services;
            mail2 is DRBD Secondary and runs the streaming standby. Both should say ok
            and send nothing.""")
        since = self.mark()
        one = self.wait_view("mail1", lambda v: v.all_ok("primary"), 30)
        two = self.wait_view("mail2", lambda v: v.all_ok("secondary"), 30)
        self.expect("mail1 says primary ok", one is not None)
        self.expect("mail2 says secondary ok", two is not None)
        self.wait_cycles("mail1", 2)
        sent = self.alerts_since(since)
        self.expect("no alert", not sent, ", ".join(a.headline for a in sent))

    def lag_spike(self, number: int) -> None:
        self.heading(number, "A lag spike, absorbed", f"""
            Replay on the standby is paused for {SPIKE_SECONDS:g}s while the primary keeps
            writing, then resumed. mail2 sees it at once (replay_lag=warning in its cycle
            line), but replay_lag's `for` is {_lag('for')}: a shorter spike pages nobody.""")
        self.pg.write(1)
        self.pg.wait_replayed()
        since, started = self.mark(), self.console.elapsed()
        self.step("pg_wal_replay_pause() on mail2, writing on mail1")
        self.pg.pause_replay()
        _keep_writing(self.pg, SPIKE_SECONDS)
        self.step("pg_wal_replay_resume() on mail2")
        self.pg.resume_replay()
        self.pg.wait_replayed()
        back = self.wait_view("mail2", lambda v: v.checks.get("replay_lag") == "ok", 15)
        self.wait_cycles("mail2", 6)
        seen = [v for v in self.views_since(started, "mail2")
                if v.checks.get("replay_lag") not in (None, "ok")]
        self.expect("mail2 saw the spike (replay_lag not ok in its cycle line)", bool(seen),
                    seen[0].text if seen else "never seen")
        self.expect("mail2's replay_lag is ok again", back is not None)
        sent = [a for a in self.alerts_since(since) if a.check == "replay_lag"]
        self.expect("no replay_lag alert (absorbed by `for`)", not sent,
                    ", ".join(a.headline for a in sent))

    def standby_stops(self, number: int) -> None:
        self.heading(number, "The standby stops", """
            mail2's PostgreSQL is stopped. mail1 (primary) sees no streaming standby:
            standbys CRITICAL. mail2 cannot reach its own PostgreSQL: postgres_role
            CRITICAL. Then it is started again: RECOVERY from both.""")
        since, started = self.mark(), self.console.elapsed()
        self.step("pg_ctl stop on mail2's PostgreSQL")
        self.pg.stop_standby()
        self.expect_alert(since, "mail1", "standbys", "PROBLEM", 20, started,
                          what="mail1 sends PROBLEM CRITICAL for standbys")
        self.expect_alert(since, "mail2", "postgres_role", "PROBLEM", 20, started,
                          what="mail2 sends PROBLEM CRITICAL for postgres_role")
        started = self.console.elapsed()
        self.step("pg_ctl start on mail2's PostgreSQL")
        self.pg.start_standby()
        self.expect_alert(since, "mail1", "standbys", "RECOVERY", 20, started)
        self.expect_alert(since, "mail2", "postgres_role", "RECOVERY", 20, started)
        problem = self.find_alert(since, "mail1", "standbys", "PROBLEM")
        if problem is not None:
            self.expect("the standbys PROBLEM is CRITICAL (notify type failure)",
                        problem.type == "failure" and "PROBLEM CRITICAL" in problem.headline,
                        problem.type)
        self.wait_view("mail1", lambda v: v.all_ok("primary"), 15)
        self.wait_view("mail2", lambda v: v.all_ok("secondary"), 15)

    def crash_loop(self, number: int) -> None:
        self.heading(number, "A service crash-loops", f"""
            {CRASH_SERVICE}'s run script now exits at once; supervise restarts it every
            second, so svstat shows it "up" with a new pid each time. mail1's services
            check must name it (CRITICAL), and send RECOVERY once it runs again.""")
        since, started = self.mark(), self.console.elapsed()
        self.step(f"{CRASH_SERVICE}: run script replaced by one that exits 1")
        self.tree.make_crashloop(CRASH_SERVICE)
        self.expect_alert(since, "mail1", "services", "PROBLEM", 25, started,
                          contains=CRASH_SERVICE,
                          what=f"mail1 sends PROBLEM CRITICAL for services naming {CRASH_SERVICE}")
        started = self.console.elapsed()
        self.step(f"{CRASH_SERVICE}: healthy run script again")
        self.tree.make_healthy(CRASH_SERVICE)
        self.expect_alert(since, "mail1", "services", "RECOVERY", 25, started)
        self.wait_view("mail1", lambda v: v.all_ok("primary"), 15)

    def filling_disk(self, number: int) -> None:
        self.heading(number, "A filling disk, forecast", f"""
            mail1 gets a {DISK_MIB} MiB filesystem (a tmpfs) in its [storage] paths, and
            something writes {DISK_MIB_PER_S:g} MiB/s to it. No free-space limit is near,
            but storage's forecast (a least-squares line through the samples of the last
            minute here; 2 hours by default) says "full in ~30s": CRITICAL while most of
            the disk is still free. The file is deleted, the disk stops filling: RECOVERY.""")
        path, why = self.mount_tmpfs("mail1-disk", DISK_MIB)
        if path is None:
            self.console.write(f"   skipped: {why} (run the demo as root to see it)")
            return
        mail1 = self.daemons["mail1"]
        watched = dict(self.base_sections["mail1"])
        watched["storage"] = dict(DISK_STORAGE, paths=[path])
        if not self._reload(mail1, watched, f"with [storage] paths = [{path!r}]"):
            return
        self.wait_view("mail1", lambda v: v.checks.get("storage") == "ok", 10)
        since, started = self.mark(), self.console.elapsed()
        blob = os.path.join(path, "queue.blob")
        stop = threading.Event()

        def writer() -> None:
            chunk = b"\xa5" * (256 * 1024)
            with open(blob, "ab") as out:
                while not stop.wait(256 / 1024 / DISK_MIB_PER_S):
                    try:
                        out.write(chunk)
                        out.flush()
                    except OSError:
                        return  # full: the demo failed to stop it in time; the check says so

        self.step(f"writing {DISK_MIB_PER_S:g} MiB/s to {blob}")
        thread = threading.Thread(target=writer, daemon=True)
        thread.start()
        try:
            alert = self.expect_alert(since, "mail1", "storage", "PROBLEM", 25, started,
                                      contains="full in ~",
                                      what="mail1 sends PROBLEM CRITICAL for storage: full in ~")
            vfs = os.statvfs(path)
            free = 100.0 * vfs.f_bavail / vfs.f_blocks if vfs.f_blocks else 0.0
        finally:
            stop.set()
            thread.join(5)
        if alert is not None:
            self.expect("it paged while the disk was still more than half free",
                        free > 50, f"{free:.0f}% free when it arrived")
            self.expect("the alert says what to look at first (du ... | sort -h)",
                        "du -xh --max-depth=2" in alert.body, "")
        restarted = self.console.elapsed()
        self.step(f"rm {blob}: the disk stops filling")
        os.unlink(blob)
        self.expect_alert(since, "mail1", "storage", "RECOVERY", 25, restarted)
        self._reload(mail1, self.base_sections["mail1"], "without the filesystem")
        self.unmount_all()
        self.wait_view("mail1", lambda v: v.all_ok("primary"), 15)

    def backup_window(self, number: int) -> None:
        start, end = backup_window_around(time.time())
        self.heading(number, "Replay paused during a backup window", f"""
            mail2's config gets a [[backup_windows]] {start}-{end} UTC (covering now), and
            mail2 reloads it on SIGHUP. Replay is paused for {BACKUP_PAUSE_SECONDS:g}s while mail1
            writes: past the normal limits (critical {_lag('critical')}, for {_lag('for')}), but
            inside the window replay_lag uses its backup limits, so nothing is sent.""")
        mail2 = self.daemons["mail2"]
        relaxed = dict(self.base_sections["mail2"])
        relaxed["backup_windows"] = [{"start": start, "end": end, "timezone": "UTC"}]
        relaxed["backup"] = {"max_duration": "1h"}
        if not self._reload(mail2, relaxed, "with the backup window"):
            return
        self.pg.write(1)
        self.pg.wait_replayed()
        since, started = self.mark(), self.console.elapsed()
        self.step("pg_wal_replay_pause() on mail2, writing on mail1")
        self.pg.pause_replay()
        _keep_writing(self.pg, BACKUP_PAUSE_SECONDS - 2)
        once = self._once_summary("mail2", "replay_lag")
        self.console.event(f"mail2 --once: replay_lag {once}")
        _keep_writing(self.pg, 2)
        lag = self.pg.scalar(
            "standby", "SELECT EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())")
        self.step(f"pg_wal_replay_resume() on mail2 (it was {float(lag or 0):.1f}s behind)")
        self.pg.resume_replay()
        self.pg.wait_replayed()
        self.wait_cycles("mail2", 3)
        seen = [v for v in self.views_since(started, "mail2")
                if v.checks.get("replay_lag") not in (None, "ok")]
        self.expect("the backup limits were applied", "[backup limits applied]" in once, once)
        self.expect("mail2's replay_lag stayed ok in the window", not seen,
                    seen[0].text if seen else "")
        sent = [a for a in self.alerts_since(since) if a.check == "replay_lag"]
        self.expect("no replay_lag alert", not sent, ", ".join(a.headline for a in sent))
        self._reload(mail2, self.base_sections["mail2"], "without the window")

    def maintenance(self, number: int) -> None:
        self.heading(number, "Planned work: maintenance mode", f"""
            mail2's PostgreSQL gets a planned restart. First, on mail1, the operator runs
            `ha-watchdog maintenance on --for {MAINTENANCE_FOR} --reason "{MAINTENANCE_REASON}"`.
            mail1 says so once (info), then keeps checking and tracking but pages nothing:
            its cycle line shows standbys=critical, the PROBLEM and the RECOVERY are held
            back, and `maintenance status` lists them. Maintenance is per node: mail2 was
            not put in it, so it pages its postgres_role as before (on a real cluster, run
            the command on both). The maintenance ends on its own; then mail1 sends one
            message: what it held back, and what is still open (nothing).""")
        since, started = self.mark(), self.console.elapsed()
        result = self._cli("mail1", "maintenance", "on", "--for", MAINTENANCE_FOR,
                           "--reason", MAINTENANCE_REASON)
        self.expect("`maintenance on` exits 0: mail1's daemon applied it",
                    result.ok and "applied it" in result.stdout, _failed(result))
        on = self.wait_alert(since, "mail1", "maintenance", "MAINTENANCE ON", 10)
        self.expect("mail1 sends MAINTENANCE ON (type info)",
                    on is not None and on.type == "info",
                    f"after {on.at - started:.1f}s" if on else "nothing within 10s")
        quiet = self.wait_view("mail1", lambda v: bool(v.maintenance), 10)
        self.expect("mail1's cycle line says it is in maintenance", quiet is not None)
        record = self._maintenance_record("mail1")
        until = float(record["until"]) if record else time.time()

        stopped = self.console.elapsed()
        self.step("pg_ctl stop on mail2's PostgreSQL")
        self.pg.stop_standby()
        seen = self.wait_view("mail1", lambda v: v.checks.get("standbys") == "critical", 20)
        self.expect("mail1 sees it: standbys=critical in its cycle line", seen is not None)
        held = self._wait_held("mail1", "standbys", "problem", 20)
        self.expect("mail1 holds back its standbys PROBLEM (recorded, not sent)",
                    held is not None, "nothing recorded within 20s" if held is None else "")
        self.expect_alert(since, "mail2", "postgres_role", "PROBLEM", 20, stopped,
                          what="mail2 (not in maintenance) sends PROBLEM for postgres_role")
        status = self._cli("mail1", "maintenance", "status")
        self.expect("`maintenance status` lists the held-back PROBLEM",
                    status.ok and "PROBLEM CRITICAL: standbys" in status.stdout
                    and "[held back]" in status.stdout, _failed(status))

        restarted = self.console.elapsed()
        self.step("pg_ctl start on mail2's PostgreSQL")
        self.pg.start_standby()
        held = self._wait_held("mail1", "standbys", "recovery", 20)
        self.expect("mail1 holds back its standbys RECOVERY too", held is not None)
        self.expect_alert(since, "mail2", "postgres_role", "RECOVERY", 20, restarted)
        if self.metrics_url is not None:
            samples = self._show_metrics(("ha_watchdog_maintenance_active",))
            self.expect("its metrics say so too: ha_watchdog_maintenance_active 1",
                        [value for _, _, value, _ in samples] == [1.0])

        left = max(0.0, until - time.time())
        self.step(f"waiting for the maintenance to end on its own (in {left:.0f}s)")
        over = self.expect_alert(since, "mail1", "maintenance", "MAINTENANCE OVER", left + 15,
                                 self.console.elapsed(),
                                 what="mail1 sends MAINTENANCE OVER when the time is up")
        if over is not None:
            body = over.body
            listed = ("PROBLEM CRITICAL: standbys on mail1" in body
                      and "RECOVERY: standbys on mail1" in body
                      and body.count("[held back]") >= 2)
            self.expect("it lists the standbys PROBLEM and RECOVERY as held back", listed,
                        "" if listed else _indent(body))
            clear = "Still open: nothing" in body
            self.expect("it says: Still open: nothing", clear, "" if clear else _indent(body))
        paged = [a for a in self.alerts_since(since)
                 if a.node == "mail1" and a.check == "standbys"]
        self.expect("mail1 paged nothing for standbys", not paged,
                    ", ".join(a.headline for a in paged))
        self.wait_view("mail1", lambda v: v.all_ok("primary") and not v.maintenance, 15)
        self.wait_view("mail2", lambda v: v.all_ok("secondary"), 15)

    def failover(self, number: int) -> None:
        self.heading(number, "Failover: the roles swap", """
            Like GreenArrow's hvmail_make_secondary on mail1 then hvmail_make_primary on
            mail2: mail1's PostgreSQL stops and its DRBD becomes Secondary, mail2's DRBD
            becomes Primary and its PostgreSQL is promoted, then mail1's PostgreSQL is rebuilt
            as a standby of mail2. Both daemons keep watching their own server and must send
            ROLE CHANGE; checks that no longer apply to a role close (NO LONGER APPLIES if
            they had an open problem). While mail1 is rebuilt, mail2 has no standby and mail1
            no database for a second or two: if that outlasts a check's `for`, the node says
            so, and RECOVERY follows. Then everything settles ok.""")
        since, started = self.mark(), self.console.elapsed()
        self.step("mail1: pg_ctl stop (hvmail_make_secondary stops the services' database)")
        self.pg.stop_primary()
        self.step("mail1: DRBD Secondary; mail2: DRBD Primary")
        self.drbd["mail1"].secondary()
        self.drbd["mail2"].primary()
        self.step("mail2: pg_ctl promote")
        self.pg.promote_standby()
        self.step("mail1: rebuilt as a standby of mail2 (pg_basebackup), started")
        self.pg.reattach_old_primary()
        for name, new in (("mail1", "secondary"), ("mail2", "primary")):
            alert = self.wait_alert(since, name, "role", "ROLE CHANGE", 20)
            ok = alert is not None and alert.type == "info" and f"is now {new}" in alert.headline
            self.expect(f"{name} sends ROLE CHANGE to {new} (type info)", ok,
                        f"after {alert.at - started:.1f}s" if alert else "nothing within 20s")
        one = self.wait_view("mail1", lambda v: v.all_ok("secondary"), 30)
        two = self.wait_view("mail2", lambda v: v.all_ok("primary"), 30)
        self.expect("mail1 settles: secondary ok", one is not None)
        self.expect("mail2 settles: primary ok (services and standbys now checked here)",
                    two is not None)
        closed = self._wait(lambda: not _still_open(self.alerts[since:]), 20)
        opened = [a for a in self.alerts_since(since) if a.kind in _OPENING]
        if opened:
            text = "what the failover broke for a moment was closed again"
        else:
            text = "no PROBLEM during the planned failover"
        self.expect(text, bool(closed),
                    ", ".join(f"{a.node} {a.check}" for a in _still_open(self.alerts_since(since))))

    def metrics(self, number: int) -> None:
        self.heading(number, "Metrics: what Prometheus scrapes", f"""
            mail1 runs with [metrics] listen, so Prometheus can scrape {self.metrics_url}
            (README, "Metrics"): its role and each check's status (0 ok, 1 warning,
            2 critical, 3 unknown), among others. After the failover it says:""")
        samples = self._show_metrics(METRICS_SHOWN)
        roles = {labels.get("role"): value for name, labels, value, _ in samples
                 if name == "ha_watchdog_role"}
        self.expect("ha_watchdog_role says mail1 is secondary now",
                    roles.get("secondary") == 1.0 and sum(roles.values()) == 1.0, str(roles))

    # ------------------------------------------------------------ run, summary, cleanup

    def run(self) -> int:
        scenarios: List[Callable[[int], None]] = [self.start_ok]
        if not self.quick:
            scenarios.append(self.lag_spike)
        scenarios += [self.standby_stops, self.crash_loop, self.filling_disk]
        if not self.quick:
            scenarios.append(self.backup_window)
        scenarios += [self.maintenance, self.failover]
        self.setup()
        if self.metrics_url is not None:
            scenarios.append(self.metrics)
        for number, scenario in enumerate(scenarios, 1):
            scenario(number)
            if not self.quick:
                time.sleep(1.0)  # a moment to read
        return self.summary()
