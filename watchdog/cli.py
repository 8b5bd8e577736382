"""Command line: `ha-watchdog [--config PATH] [--once [--json|--nagios] | --check-config
[--connect] | --test-alert]` and the commands `status`, `maintenance`, `demo`.

Exit codes of `--once` follow the Nagios plugin convention (0 OK, 1 WARNING, 2 CRITICAL,
3 UNKNOWN); usage and configuration errors exit 3 with a message on stderr, never a
traceback. `--once` must not import apprise (slow to load): alert code is imported only in
the modes that send. Options may come before or after a command
(`ha-watchdog maintenance on --for 1h --reason x --config F`).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any, Dict, List, Optional, Tuple

from watchdog import __version__
from watchdog.config import DEFAULT_PATH, Config, ConfigError, load_config

log = logging.getLogger("watchdog.cli")

EXIT_UNKNOWN = 3
COMMANDS = ("demo", "maintenance", "status")

EPILOG = """\
commands:
  ha-watchdog status [--json] [--last N]
                      what the running daemon thinks: role, each check's confirmed state and
                      since when, open incidents, maintenance, the outbox (what each waiting
                      alert says), the last alerts sent and its last cycle. Read-only; works
                      for root and for any user who can read [daemon] state_dir. Exit 0, 1
                      when the daemon is not cycling, 3 when the state cannot be read.
  ha-watchdog maintenance on --for DURATION --reason TEXT | off | status [--json]
                      silence paging on this node for a bounded time (see
                      `ha-watchdog maintenance --help`).
  ha-watchdog demo [--quick]
                      a whole two-node cluster on loopback, watched (about a minute). Runs
                      from a checkout (its lab is not installed with the package): exit 3
                      when that or a prerequisite is missing.

modes (without one, the daemon runs):
  --once              run this node's checks once; a table, --json, or --nagios (one line
                      with performance data, for NRPE/Icinga). Exit 0 OK, 1 WARNING,
                      2 CRITICAL, 3 UNKNOWN. Sends nothing; without a config file it uses
                      built-in defaults (and says so).
  --check-config      every error with file:line [key] and what to change: TOML and values,
                      a DSN libpq cannot parse, target URLs apprise does not know, missing
                      url_file, empty severities, no target receiving critical, a daemon
                      that would tell nobody. --connect also tries each probe once (DRBD
                      source, services command, PostgreSQL and the role's privileges) and
                      parses each target URL. Exit 0 when nothing is wrong, 3 otherwise.
  --test-alert        one test message to every target; exit 0 when all were delivered.

the daemon refuses to start (exit 3) when nobody would hear from it: no config file, or no
[[alerts.targets]], no [metrics] and no [heartbeat]. --allow-silent (or [alerts]
allow_silent = true) starts it anyway.

environment: NO_COLOR (set and not empty) turns colour off; colour is used only on a
terminal.
files: {config} (the config), [daemon] state_dir (default /var/lib/ha-watchdog:
engine.json, outbox.json, sent.json, status.json, maintenance.json).
"""


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on a usage error; Nagios wants 3 (UNKNOWN)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(EXIT_UNKNOWN)


def colour_wanted(stream: Any = None) -> bool:
    """Colour only on a terminal, and never with NO_COLOR set (https://no-color.org)."""
    stream = sys.stdout if stream is None else stream
    if os.environ.get("NO_COLOR", "") != "":
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _config_option(parser: argparse.ArgumentParser, suppress: bool = False) -> None:
    parser.add_argument(
        "--config",
        metavar="PATH",
        default=argparse.SUPPRESS if suppress else None,
        help=f"configuration file (default {DEFAULT_PATH})",
    )


def _verbose_option(parser: argparse.ArgumentParser, suppress: bool = False) -> None:
    parser.add_argument("-v", "--verbose", action="store_true",
                        default=argparse.SUPPRESS if suppress else False,
                        help="debug lines on stderr (the daemon: debug logging)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ha-watchdog",
        usage="ha-watchdog [--config PATH] [--once [--json | --nagios] | --check-config "
        "[--connect] | --test-alert] [--allow-silent] [-v]\n"
        "       ha-watchdog {status,maintenance,demo} ... (options before or after)",
        description=(
            "Watch a two-node DRBD + PostgreSQL streaming-replication cluster (GreenArrow's "
            "HA Cluster and the like). Without a mode it runs as a daemon: every [daemon] "
            "interval it works out this node's role from DRBD, runs that role's checks, "
            "debounces, and sends an alert through apprise when a confirmed state changes."
        ),
        epilog=EPILOG.format(config=DEFAULT_PATH),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "command",
        nargs="?",
        choices=list(COMMANDS),
        help="status, maintenance or demo (see below; each has its own --help)",
    )
    _config_option(parser)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="run the checks once and exit (Nagios codes)")
    mode.add_argument("--check-config", action="store_true",
                      help="validate the config and what it points at, then exit")
    mode.add_argument("--test-alert", action="store_true", help="send a test alert to every target")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="with --once: print one JSON object")
    output.add_argument("--nagios", action="store_true",
                        help="with --once: one Nagios plugin line with performance data")
    parser.add_argument("--connect", action="store_true",
                        help="with --check-config: also try each probe and target URL once")
    parser.add_argument("--allow-silent", action="store_true",
                        help="start the daemon even when it would tell nobody (no target, "
                        "metrics or heartbeat); same as [alerts] allow_silent = true")
    parser.add_argument("--version", action="version", version=f"ha-watchdog {__version__}")
    _verbose_option(parser)
    parser.add_argument("--quick", action="store_true", help=argparse.SUPPRESS)  # demo: short form
    parser.add_argument(
        "--pg-version", metavar="MAJOR",
        help="demo: run the cluster on this PostgreSQL major version (9.5, 10 ... 18; "
             "builds installed by .ci/pg-builds; default: the system's server)")
    return parser


def build_maintenance_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ha-watchdog maintenance",
        description=(
            "Silence paging on this node for a bounded time (planned work). Checks keep "
            "running and problems are tracked; when it ends one message lists what happened "
            "and problems still open page as usual. Acts on the running daemon through its "
            "state directory."
        ),
        epilog=(
            "exit codes: 0 the running daemon applied it; 1 recorded but not confirmed (no "
            "daemon running, or it is stale); 3 refused (no --for, over [maintenance] "
            "max_duration, no --reason, state directory not writable).\n"
            "example: ha-watchdog maintenance on --for 2h --reason \"failover test\""
        ),
    )
    _config_option(parser)
    sub = parser.add_subparsers(dest="action", metavar="{on,off,status}")
    sub.required = True
    on = sub.add_parser("on", help="start (or extend) maintenance: --for and --reason required",
                        description="Start maintenance, or extend the one running (never "
                        "past [maintenance] max_duration from its start).")
    on.add_argument("--for", dest="duration", metavar="DURATION", required=True,
                    help='how long, e.g. "30m", "2h" (at most [maintenance] max_duration)')
    on.add_argument("--reason", required=True, help="why (goes into the notification)")
    off = sub.add_parser("off", help="end maintenance now", description="End maintenance now.")
    status = sub.add_parser("status", help="show the maintenance and what the daemon made of it",
                            description="Show the maintenance and what the daemon made of it.")
    status.add_argument("--json", action="store_true", help="print one JSON object")
    for command in (on, off):
        command.add_argument("--wait", type=float, default=20.0, metavar="SECONDS",
                             help="how long to wait for the running daemon to confirm "
                             "(default 20; 0: do not wait)")
    for command in (on, off, status):
        _config_option(command, suppress=True)
    return parser


def build_status_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ha-watchdog status",
        description=(
            "What the running daemon thinks, read from its state directory: this node's "
            "role, each check's confirmed state and since when, open incidents, maintenance, "
            "the outbox with what each waiting alert says, the last alerts sent and the "
            "daemon's last cycle. Read-only (takes no lock); works as root and as any user "
            "who can read [daemon] state_dir."
        ),
        epilog="exit codes: 0 the daemon is cycling; 1 it has not completed a cycle for "
        "3 intervals (or never here); 3 the state directory cannot be read.",
    )
    _config_option(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--last", type=int, default=10, metavar="N",
                        help="how many of the last alerts sent to show (default 10; the "
                        "daemon keeps 50)")
    _verbose_option(parser)
    return parser


def _split_command(argv: List[str]) -> Tuple[List[str], Optional[str], List[str]]:
    """(options before the command, the command, what follows it); `--config PATH` values
    are skipped so a config file named like a command is not taken for one."""
    skip = False
    for index, token in enumerate(argv):
        if skip:
            skip = False
            continue
        if token == "--config":
            skip = True
            continue
        if token in ("maintenance", "status"):
            return argv[:index], token, argv[index + 1 :]
        if token == "--":
            break
    return argv, None, []


def _maintenance(argv: List[str], config: Optional[str]) -> int:
    from watchdog import maintenance

    args = build_maintenance_parser().parse_args(argv)
    try:
        cfg = load_config(args.config or config or DEFAULT_PATH)
    except ConfigError as exc:
        for problem in exc.problems:
            _say(f"config error: {problem}", 3)
        return EXIT_UNKNOWN
    if args.action == "on":
        return maintenance.command_on(cfg, args.duration, args.reason, args.wait)
    if args.action == "off":
        return maintenance.command_off(cfg, args.wait)
    return maintenance.command_status(cfg, as_json=args.json)


def _status(argv: List[str], config: Optional[str], verbose: bool) -> int:
    from watchdog.status import command_status

    args = build_status_parser().parse_args(argv)
    _debug_logging(verbose or args.verbose)
    path = args.config or config
    try:
        cfg = load_config(path or DEFAULT_PATH)
    except ConfigError as exc:
        if path is None and not os.path.exists(DEFAULT_PATH):
            cfg = Config()  # the default state_dir still tells
            log.debug("no %s; reading the default state directory", DEFAULT_PATH)
        else:
            for problem in exc.problems:
                _say(f"config error: {problem}", 3)
            return EXIT_UNKNOWN
    return command_status(cfg, as_json=args.json, last=max(0, args.last),
                          colour=colour_wanted())


def _say(message: str, priority: int) -> None:
    """A line on stderr; under systemd with a syslog priority prefix (`journalctl -p`)."""
    from watchdog.systemd import journal_detected

    prefix = f"<{priority}>" if journal_detected() else ""
    print(f"{prefix}{message}", file=sys.stderr)


def _debug_logging(on: bool) -> None:
    """-v outside the daemon: debug lines on stderr (the daemon sets up its own logging)."""
    if not on:
        return
    from watchdog.systemd import setup_logging

    setup_logging("debug")


def _load(args: argparse.Namespace) -> Config:
    """The config: an explicit --config must exist; the default path may be absent."""
    if args.config is None and not os.path.exists(DEFAULT_PATH):
        if args.check_config:
            return load_config(DEFAULT_PATH)  # reports "not found"
        if not args.once and not args.test_alert:
            return Config(source=NO_CONFIG)  # the daemon decides (see _refuse_silent)
        print(f"note: {DEFAULT_PATH} not found; using built-in defaults", file=sys.stderr)
        return Config()
    return load_config(args.config or DEFAULT_PATH)


NO_CONFIG = "<no config file>"


def _refuse_silent(cfg: Config, allow: bool) -> Optional[str]:
    """Why the daemon must not start with `cfg` (it would tell nobody), or None."""
    from watchdog.preflight import silent_reason

    if allow or cfg.alerts.allow_silent:
        return None
    if cfg.source == NO_CONFIG:
        return (f"{DEFAULT_PATH} not found: the daemon would run on built-in defaults and "
                "tell nobody anything. Create it from config.example.toml (with at least one "
                "[[alerts.targets]]) or pass --config PATH; --allow-silent starts it anyway")
    reason = silent_reason(cfg)
    if reason is None:
        return None
    return (f"{cfg.source}: {reason}. Add an [[alerts.targets]] (or [metrics], or "
            "[heartbeat] url) and check it with --check-config; to run like this on purpose "
            "set [alerts] allow_silent = true or pass --allow-silent")


DEMO_NEEDS_CHECKOUT = (
    "ha-watchdog demo runs from a checkout of the ha-watchdog repository: its cluster harness "
    "(the lab/ package: PostgreSQL pair, daemontools tree, DRBD state files, alert receiver) "
    "is not part of the installed package. From a checkout, as root: "
    "`.ci/setup && .venv/bin/ha-watchdog demo`."
)


def _demo(args: argparse.Namespace) -> int:
    """`ha-watchdog demo`: delegates to the repository's lab/ package, which the wheel does
    not ship (test and lab code stay out of what operators install); without it, exit 3
    (a prerequisite is missing, as the demo itself says for PostgreSQL or daemontools)."""
    try:
        from lab.demo import run_demo
    except ImportError as exc:
        if exc.name not in ("lab", "lab.demo"):
            raise
        print(DEMO_NEEDS_CHECKOUT, file=sys.stderr)
        return EXIT_UNKNOWN
    return run_demo(quick=args.quick, verbose=args.verbose, pg_version=args.pg_version)


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("install-unit", "example-config"):
        from watchdog.install import main as install_main  # the files a wheel carries

        return install_main(argv)
    head_argv, command, rest = _split_command(argv)
    if command is not None:
        # `ha-watchdog [--config P] [-v] maintenance|status ...`: a command line of its own.
        head = build_parser().parse_args(head_argv)
        if (head.once or head.check_config or head.test_alert or head.json or head.nagios
                or head.connect or head.command):
            print(f"ha-watchdog: error: only --config and -v may come before `{command}`",
                  file=sys.stderr)
            return EXIT_UNKNOWN
        if command == "status":
            return _status(rest, head.config, head.verbose)
        return _maintenance(rest, head.config)
    args = build_parser().parse_args(argv)
    if args.json and not args.once:
        print("ha-watchdog: error: --json only goes with --once", file=sys.stderr)
        return EXIT_UNKNOWN
    if args.pg_version and args.command != "demo":
        print("ha-watchdog: error: --pg-version only goes with demo", file=sys.stderr)
        return EXIT_UNKNOWN
    if args.nagios and not args.once:
        print("ha-watchdog: error: --nagios only goes with --once", file=sys.stderr)
        return EXIT_UNKNOWN
    if args.connect and not args.check_config:
        print("ha-watchdog: error: --connect only goes with --check-config", file=sys.stderr)
        return EXIT_UNKNOWN
    if args.command == "demo":
        return _demo(args)
    daemon_mode = not (args.check_config or args.once or args.test_alert)
    if not daemon_mode:
        _debug_logging(args.verbose)
    try:
        cfg = _load(args)
    except ConfigError as exc:
        for problem in exc.problems:
            _say(f"config error: {problem}", 3)
        if args.check_config and len(exc.problems) > 1:
            _say(f"{len(exc.problems)} errors", 3)
        if args.nagios:  # a plugin's status line goes to stdout, whatever happened
            print(f"HA-WATCHDOG UNKNOWN - config error: {exc.problems[0]}".replace("|", "/"))
        return EXIT_UNKNOWN
    except Exception as exc:  # noqa: BLE001 - last resort: a message, never a traceback
        _say(f"config error: {args.config or DEFAULT_PATH}: cannot load it "
             f"({type(exc).__name__}: {str(exc)[:200]})", 3)
        return EXIT_UNKNOWN
    if args.check_config or args.once or args.test_alert:
        for warning in cfg.warnings:
            _say(f"warning: {warning}", 4)  # the daemon logs them itself
    if args.check_config:
        return _check_config(cfg, connect=args.connect)
    if args.once:
        return _once(cfg, as_json=args.json, nagios=args.nagios)
    if args.test_alert:
        return _test_alert(cfg)
    refusal = _refuse_silent(cfg, args.allow_silent)
    if refusal:
        _say(f"ha-watchdog: refusing to start: {refusal}", 3)
        return EXIT_UNKNOWN
    if cfg.source == NO_CONFIG:
        _say(f"warning: {DEFAULT_PATH} not found; running on built-in defaults "
             "(--allow-silent)", 4)
    from watchdog.daemon import run_daemon

    return run_daemon(cfg, config_path=args.config or (None if cfg.source == NO_CONFIG
                                                      else DEFAULT_PATH),
                      verbose=args.verbose, allow_silent=args.allow_silent)


def _check_config(cfg: Config, connect: bool) -> int:
    """Every finding: errors and warnings on stderr, what works and the verdict on stdout."""
    from watchdog.preflight import ERROR, OK, run_check_config

    def line(text: str, level: str) -> None:
        if level == OK:
            print(text)
        else:
            _say(text, 3 if level == ERROR else 4)

    return run_check_config(cfg, connect=connect, print_line=line)


def _once(cfg: Config, as_json: bool, nagios: bool = False) -> int:
    from watchdog.render import render_json, render_table
    from watchdog.runner import once_cycle

    log.debug("config %s: node %s, drbd %s, services %s", cfg.source, cfg.node_name,
              " ".join(cfg.drbd.command) if cfg.drbd.command else cfg.drbd.path,
              " ".join(cfg.services.command))
    try:
        cycle = once_cycle(cfg)
    except Exception as exc:  # noqa: BLE001 - last resort: UNKNOWN, never a traceback
        print(f"UNKNOWN: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        if nagios:
            print(f"HA-WATCHDOG UNKNOWN - internal error: {type(exc).__name__}")
        return EXIT_UNKNOWN
    report = cycle.report
    log.debug("cycle took %.0f ms; role %s; %s", cycle.duration * 1000, report.role.value,
              report.summary_line())
    for check in report.checks:
        log.debug("%s: %s: %s", check.name, check.status.label, check.summary)
    state = once_maintenance(cfg)
    if as_json:
        public = {k: v for k, v in state.items() if k != "line"}
        print(render_json(report, {"maintenance": public}))
    elif nagios:
        from watchdog.nagios import render_nagios

        notes = ["maintenance ON"] if state.get("active") else []
        print(render_nagios(report, notes=notes))
    else:
        notes = [state["line"]] if state.get("line") else []
        print(render_table(report, colour=colour_wanted(), notes=notes))
    return int(report.status)


def once_maintenance(cfg: Config) -> Dict[str, Any]:
    """What `--once` says about maintenance: {"active": bool, ...the request} (+ "line")."""
    import time

    from watchdog.alerts.message import format_time
    from watchdog.maintenance import read_request
    from watchdog.units import format_duration

    now = time.time()
    request, error = read_request(cfg.daemon.state_dir, cfg.maintenance.max_duration, now)
    if error:
        return {"active": False, "error": error, "line": f"maintenance: unknown ({error})"}
    if request is None or not request.active(now):
        return {"active": False}
    line = (
        f"maintenance: ON until {format_time(request.until)} "
        f"({format_duration(request.until - now)} left), asked by {request.by}: "
        f"{request.reason} (the daemon pages nobody)"
    )
    return {"active": True, "reason": request.reason, "by": request.by,
            "started": request.started, "until": request.until, "line": line}


def _test_alert(cfg: Config) -> int:
    from watchdog.alerts.delivery import send_test

    if not cfg.alerts.targets:
        print("no [[alerts.targets]] configured", file=sys.stderr)
        return EXIT_UNKNOWN
    results = send_test(cfg, cfg.node_name)
    failed = 0
    for name, ok, message in results:
        print(f"{name}: {'ok' if ok else 'FAILED'}{(' - ' + message) if message else ''}")
        failed += 0 if ok else 1
    return 0 if failed == 0 else 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
