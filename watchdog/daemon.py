"""The daemon loop: cycles on a monotonic timetable, decisions, alerts, systemd.

Signal handlers only set flags. Each cycle re-detects the role, runs that role's checks
(each probe bounded by its own deadline), feeds the pure decision core, persists its state
atomically, hands notifications to the delivery threads (never blocking on a channel), and
logs one summary line. The systemd watchdog ping comes from this loop, only while it makes
progress: a hung cycle or a stopped process stops the pings and systemd restarts us.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import Any, Callable, Dict, List, Optional

from watchdog.alerts.compose import compose_all
from watchdog.config import Config, ConfigError, load_config
from watchdog.core.maintenance import Maintenance
from watchdog.enginefile import ENGINE_STATE, EngineFile
from watchdog.maintenance import RequestWatcher, read_request, request_path
from watchdog.model import Report
from watchdog.runner import Cycle, Probes, check_cycle, probe_cycle

log = logging.getLogger("watchdog.daemon")

# A check may say when a liveness deadline falls due (CheckResult.recheck_in, seconds from
# now): standbys (a reply about to pass max_reply_age), replay_lag (the primary's silence
# about to pass max_receive_age). The loop runs an extra cycle just after it, so a hung
# standby is caught when it goes stale rather than up to a whole interval later; the
# timetable of regular cycles does not move.
RECHECK_MARGIN = 0.5
RECHECK_MIN_SPACING = 1.0
# How often the loop looks at the maintenance request file while it waits (one stat), so
# `ha-watchdog maintenance on/off` takes effect within about a second.
REQUEST_POLL = 1.0


class Daemon:
    """One watchdog process. Everything it touches outside is injectable for tests."""

    def __init__(
        self,
        cfg: Config,
        config_path: Optional[str] = None,
        probes: Optional[Probes] = None,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        notifier: Any = None,
        deliverer_factory: Optional[Callable[[Config], Any]] = None,
        heartbeat_factory: Optional[Callable[[Config], Any]] = None,
        exporter_factory: Optional[Callable[[Config], Any]] = None,
        allow_silent: bool = False,
    ):
        from watchdog.core.engine import Engine, EngineState
        from watchdog.systemd import Notifier

        self.cfg = cfg
        self.config_path = config_path
        self.allow_silent = allow_silent  # --allow-silent (see watchdog.preflight.silent_reason)
        self.probes = probes or Probes()
        self.monotonic = monotonic
        self.wall = wall
        self.notifier = notifier if notifier is not None else Notifier()
        self._deliverer_factory = deliverer_factory or _default_deliverer
        self._heartbeat_factory = heartbeat_factory or _default_heartbeat
        self._exporter_factory = exporter_factory or _default_exporter
        self.state_path = os.path.join(cfg.daemon.state_dir, ENGINE_STATE)
        # engine.json, with what went wrong loading or writing it (watchdog.enginefile).
        self.state_file = EngineFile(self.state_path, wall)
        self.watcher = RequestWatcher(request_path(cfg.daemon.state_dir))
        self._request_error: Optional[str] = None
        self.maintenance: Optional[Maintenance] = None  # active at the last cycle
        self.last_cycle_end = 0.0  # wall clock
        self.engine = Engine(cfg, self.state_file.load(EngineState))
        self.previous: Optional[Cycle] = None
        self._advised: set = set()  # (check, advice) already logged
        self.cycles = 0
        self.ready_sent = False
        self.stop_requested = False
        self.reload_requested = False
        self.wakeup = threading.Event()
        self.deliverer: Any = None
        self.heartbeat: Any = None
        self.exporter: Any = None

    # ---- signals: flags only

    def _on_stop(self, signum: int, frame: Any) -> None:
        self.stop_requested = True
        self.wakeup.set()

    def _on_reload(self, signum: int, frame: Any) -> None:
        self.reload_requested = True
        self.wakeup.set()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_reload)

    # ---- one cycle

    def cycle(self) -> str:
        """Run one cycle; return its one-line summary."""
        wall_now = self.wall()
        request = self._read_request(wall_now)
        # Probe, then decide the backup relaxation once (it needs the backups the probe saw),
        # then run the checks with it: the same relaxations reach the checks and the engine.
        probed = probe_cycle(self.cfg, self.probes, previous=self.previous)
        relaxations = self.engine.relaxations(wall_now, probed.names, probed.backups_seen())
        cycle = check_cycle(probed, self.cfg, relaxations)
        report = cycle.report
        self._log_advice(report)
        notes = compose_all(
            self.engine.observe(wall_now, report.role, report.checks, relaxations, request)
        )
        active = request is not None and request.active(wall_now)
        self.maintenance = request if active else None
        due = self.engine.daily_due(wall_now)
        if due is not None:
            notes.append(self._daily_report(wall_now, due, report))
        notes.extend(self._take_notices(wall_now))
        # Queue first, persist second: what the engine decided reaches the outbox even when
        # the state write fails. A crash between the two replays this cycle after the
        # restart with the same notification ids, which the outbox drops as duplicates.
        self._submit(notes)
        more = self.state_file.save(self.engine.state.to_json(), wall_now, self.cfg.node_name,
                                    self.cfg.daemon.state_dir)
        self._submit(more)
        notes.extend(more)
        self.previous = cycle
        self.cycles += 1
        self.last_cycle_end = self.wall()
        self._publish_metrics(report, cycle.duration)
        self._write_status(report, cycle.duration)
        line = self._summary(report, cycle.duration, len(notes))
        return line

    def _submit(self, notes: List[Any]) -> None:
        if notes and self.deliverer is not None:
            self.deliverer.submit(notes)
        for note in notes:
            level = logging.WARNING if note.severity in ("warning", "critical") else logging.INFO
            log.log(level, "alert %s: %s", note.kind.upper(), note.title)

    def _take_notices(self, now: float) -> List[Any]:
        """Notices about the watchdog itself: the state damage found at start, the outbox
        damage the deliverer found."""
        from watchdog.alerts import message

        take = getattr(self.deliverer, "take_damage", None)
        if take is not None:
            for problem in take():
                self.state_file.notices.append((
                    "its outbox of pending alerts was damaged",
                    [f"{problem}.", "Alerts that could not be recovered from it are lost; "
                     "the log of this node lists them where it could read them."],
                ))
        notices, self.state_file.notices = self.state_file.notices, []
        return [message.self_notice(self.cfg.node_name, subject, lines, now, now)
                for subject, lines in notices]

    def _log_advice(self, report: Report) -> None:
        """A check that cannot reach a verdict with what this server offers says what to
        enable (details["advice"], e.g. the canary on 9.5): logged the first time seen."""
        for check in report.checks:
            advice = check.details.get("advice") if isinstance(check.details, dict) else None
            if isinstance(advice, str) and (check.name, advice) not in self._advised:
                self._advised.add((check.name, advice))
                log.warning("%s cannot reach a verdict: %s", check.name, check.summary)

    def _read_request(self, now: float) -> Optional[Maintenance]:
        """The maintenance request; an unusable file is logged (once) and silences nothing."""
        request, error = read_request(
            self.cfg.daemon.state_dir, self.cfg.maintenance.max_duration, now
        )
        if error != self._request_error:
            if error:
                log.error("maintenance: %s", error)
            elif self._request_error:
                log.info("maintenance: the request file is readable again")
            self._request_error = error
        return request

    def _daily_report(self, now: float, due: float, report: Report) -> Any:
        from watchdog.alerts import summaries

        closed, role_changes = self.engine.recent(now)
        undelivered = self.deliverer.undelivered(now) if self.deliverer is not None else []
        return summaries.daily(
            self.cfg.node_name, now, due, report.role.value, report.checks,
            self.engine.open_incidents(), closed, role_changes, undelivered, self.maintenance,
        )

    def _publish_metrics(self, report: Report, duration: float) -> None:
        if self.exporter is None:
            return
        from watchdog import __version__
        from watchdog.metrics import MetricsView

        now = self.last_cycle_end
        deliveries: Dict[Any, int] = {}
        length, oldest = 0, None
        if self.deliverer is not None:
            deliveries = self.deliverer.deliveries()
            length, oldest = self.deliverer.outbox.count(), self.deliverer.outbox.oldest_queued()
        states = self.engine.state.checks
        confirmed = {  # as labels: the metrics view is the edge
            c.name: states[c.name].debounce.confirmed.label
            for c in report.checks
            if c.name in states and states[c.name].debounce.confirmed is not None
        }
        view = MetricsView(
            node=self.cfg.node_name,
            version=__version__,
            role=report.role.value,
            checks=report.checks,
            confirmed=confirmed,
            open_incidents=len(self.engine.open_problems()),
            outbox_length=length,
            outbox_oldest_age=max(0.0, now - oldest) if oldest is not None else 0.0,
            deliveries=deliveries,
            cycle_duration=duration,
            last_cycle=now,
            cycles=self.cycles,
            maintenance_active=self.maintenance is not None,
            maintenance_until=self.maintenance.until if self.maintenance else None,
            state_write_failures=self.state_file.failures,
        )
        try:
            self.exporter.update(view)
        except Exception:  # noqa: BLE001 - metrics must never stop the watching
            log.exception("metrics: update failed")

    def _write_status(self, report: Report, duration: float) -> None:
        """status.json for `ha-watchdog status` (watchdog.status); a failure is logged once."""
        from watchdog import status

        try:
            targets = self.deliverer.status() if self.deliverer is not None else {}
            outbox = self.deliverer.outbox.to_json() if self.deliverer is not None else None
            status.write_cycle(self.cfg.daemon.state_dir, status.cycle_view(
                self.cfg.node_name, report, self.cycles, self.last_cycle_end, duration,
                self.cfg.daemon.interval, targets, self.engine.state, outbox))
            self._status_error = None
        except Exception as exc:  # noqa: BLE001 - the status view must never stop the watching
            error = f"{type(exc).__name__}: {exc}"
            if error != getattr(self, "_status_error", None):
                log.error("status: cannot write %s: %s", status.STATUS_FILE, error)
            self._status_error = error

    def _wall_deadlines(self) -> List[float]:
        """Wall-clock times at which a cycle must run even between regular ones: the end of
        the maintenance in effect, the daily report, and a problem held by a grace (a
        standby missing past reconnect_grace is paged then, not an interval later)."""
        out = []
        if self.maintenance is not None:
            out.append(self.maintenance.until)
        if self.engine.state.digest_next is not None:
            out.append(self.engine.state.digest_next)
        out.extend(self.engine.deadlines())
        return out

    def recheck_in(self) -> Optional[float]:
        """The soonest liveness deadline the last cycle's checks reported, if any."""
        if self.previous is None:
            return None
        hints = []
        for check in self.previous.report.checks:
            value = check.recheck_in
            if value is not None and value >= 0:
                hints.append(value)
        return min(hints) if hints else None

    def _summary(self, report: Report, duration: float, alerts: int) -> str:
        open_problems = len(self.engine.open_problems())
        quiet = ""
        if self.maintenance is not None:
            from watchdog.alerts.message import format_time

            quiet = f", MAINTENANCE until {format_time(self.maintenance.until)}"
        return (
            f"cycle {self.cycles}: {report.summary_line()} "
            f"({duration * 1000:.0f} ms, {alerts} alert(s), {open_problems} open{quiet})"
        )

    # ---- reload

    def reload(self) -> None:
        from watchdog.core.engine import Engine

        self.notifier.reloading()
        try:
            new = load_config(self.config_path) if self.config_path else self.cfg
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("reload rejected, keeping the running config: %s", problem)
            self.notifier.ready()
            self.notifier.status("reload rejected: config error (see log); running on old config")
            return
        except Exception as exc:  # noqa: BLE001 - a reload must never kill the daemon
            log.error("reload rejected, keeping the running config: %s: cannot load it (%s: %s)",
                      self.config_path, type(exc).__name__, str(exc)[:200])
            self.notifier.ready()
            self.notifier.status("reload rejected: config error (see log); running on old config")
            return
        silent = _silent(new, self.allow_silent)
        if silent:
            log.error("reload rejected, keeping the running config: %s: %s", new.source, silent)
            self.notifier.ready()
            self.notifier.status("reload rejected: the new config would tell nobody; "
                                 "running on old config")
            return
        for warning in new.warnings:
            log.warning("%s", warning)
        old, self.cfg = self.cfg, new
        self.engine = Engine(new, self.engine.state)
        if self.deliverer is not None:
            self.deliverer.stop(timeout=5.0)
        self.deliverer = self._deliverer_factory(new)
        self.deliverer.start()
        self.heartbeat = self._heartbeat_factory(new)
        self.watcher = RequestWatcher(request_path(new.daemon.state_dir))
        if (old.metrics, old.node_name) != (new.metrics, new.node_name):
            # Only a changed [metrics] restarts the listener (a scrape would miss it).
            if self.exporter is not None:
                self.exporter.close()
            self.exporter = self._exporter_factory(new)
            if self.exporter is not None and self.previous is not None:
                self._publish_metrics(self.previous.report, self.previous.duration)
        log.info("configuration reloaded from %s", self.config_path)
        self.notifier.ready()

    # ---- the loop

    def run(self) -> int:
        for warning in self.cfg.warnings:
            log.warning("%s", warning)
        try:
            os.makedirs(self.cfg.daemon.state_dir, mode=0o700, exist_ok=True)
        except OSError as exc:  # the cycles go on; each failed state write is reported
            log.error("cannot create state_dir %s: %s", self.cfg.daemon.state_dir,
                      exc.strerror or exc)
        self.deliverer = self._deliverer_factory(self.cfg)
        self.deliverer.start()
        self.heartbeat = self._heartbeat_factory(self.cfg)
        self.exporter = self._exporter_factory(self.cfg)
        ping_every = self.notifier.watchdog_interval()
        log.info(
            "ha-watchdog started on %s: interval %gs, state in %s%s",
            self.cfg.node_name,
            self.cfg.daemon.interval,
            self.cfg.daemon.state_dir,
            f", watchdog ping every {ping_every:g}s" if ping_every else "",
        )
        next_due = self.monotonic()
        extra_due: Optional[float] = None
        last_ping = self.monotonic()
        while not self.stop_requested:
            if self.reload_requested:
                self.reload_requested = False
                self.reload()
                ping_every = self.notifier.watchdog_interval()
            if self.watcher.changed():
                extra_due = self.monotonic()  # maintenance on/off: act on it now
            now = self.monotonic()
            regular = now >= next_due
            if regular or (extra_due is not None and now >= extra_due):
                extra_due = None
                ok = True
                try:
                    line = self.cycle()
                    log.info("%s", line)
                    self.notifier.status(line)
                except Exception as exc:  # noqa: BLE001 - the loop must survive a bad cycle
                    ok = False
                    log.exception("cycle failed: %s", exc)
                    self.notifier.status(f"cycle failed: {type(exc).__name__}")
                if self.heartbeat is not None:
                    self.heartbeat.ping(ok, "")
                if not self.ready_sent:
                    self.notifier.ready()
                    self.ready_sent = True
                # A completed cycle is progress: ping now.
                self.notifier.watchdog_ping()
                last_ping = self.monotonic()
                interval = self.cfg.daemon.interval
                now = self.monotonic()
                if regular:
                    # Monotonic timetable: skip slots a slow cycle overran, never drift.
                    next_due += interval
                    if next_due <= now:
                        missed = int((now - next_due) // interval) + 1
                        next_due += missed * interval
                recheck = self.recheck_in()
                if recheck is not None:
                    due = now + max(recheck + RECHECK_MARGIN, RECHECK_MIN_SPACING)
                    if due < next_due - RECHECK_MIN_SPACING:
                        extra_due = due
                        log.debug("extra cycle in %.1fs: a liveness deadline falls due", due - now)
                wall = self.wall()
                for when in self._wall_deadlines():
                    due = now + max(when - wall + RECHECK_MARGIN / 10, RECHECK_MIN_SPACING / 10)
                    if due < next_due and (extra_due is None or due < extra_due):
                        extra_due = due
                continue
            wait = (next_due if extra_due is None else min(next_due, extra_due)) - now
            wait = min(wait, REQUEST_POLL)
            if ping_every:
                since = self.monotonic() - last_ping
                if since >= ping_every:
                    self.notifier.watchdog_ping()
                    last_ping = self.monotonic()
                    since = 0.0
                wait = min(wait, ping_every - since)
            self.wakeup.wait(max(0.0, wait))
            self.wakeup.clear()
        return self.shutdown()

    def shutdown(self) -> int:
        self.notifier.stopping()
        log.info("stopping: flushing pending alerts")
        self.state_file.save_at_exit(self.engine.state.to_json())
        if self.deliverer is not None:
            self.deliverer.stop(timeout=min(5.0, self.cfg.alerts.send_timeout))
        if self.exporter is not None:
            self.exporter.close()
        log.info("stopped")
        return 0


def _silent(cfg: Config, allowed: bool) -> Optional[str]:
    """Why `cfg` would leave this daemon telling nobody, unless that is allowed."""
    from watchdog.preflight import silent_reason

    return None if allowed or cfg.alerts.allow_silent else silent_reason(cfg)


def _default_deliverer(cfg: Config) -> Any:
    from watchdog.alerts.delivery import Deliverer

    return Deliverer(cfg, cfg.daemon.state_dir)


def _default_heartbeat(cfg: Config) -> Any:
    if not cfg.heartbeat.url:
        return None
    from watchdog.alerts.heartbeat import Heartbeat

    return Heartbeat(cfg.heartbeat)


def _default_exporter(cfg: Config) -> Any:
    if cfg.metrics.listen is None and not cfg.metrics.textfile:
        return None
    from watchdog.exporter import MetricsExporter

    return MetricsExporter(cfg.metrics, cfg.node_name)


def run_daemon(cfg: Config, config_path: Optional[str] = None, verbose: bool = False,
               allow_silent: bool = False) -> int:
    """Entry point of `ha-watchdog` without --once."""
    from watchdog.systemd import enable_crash_dumps, setup_logging

    level = "debug" if verbose else cfg.daemon.log_level
    setup_logging(level)
    enable_crash_dumps()
    daemon = Daemon(cfg, config_path=config_path, allow_silent=allow_silent)
    daemon.install_signal_handlers()
    return daemon.run()

