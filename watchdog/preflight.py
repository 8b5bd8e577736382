"""`--check-config [--connect]`: what would only show in production, found before it.

Why: a config can be valid TOML with every value in range and still page nobody (no
target, a target that receives nothing, a `url_file` that is not there, a URL apprise does
not know) or fail at its first cycle (a DSN libpq cannot parse, a role that cannot see
pg_stat_replication). Each finding names the key path (and the file and line when it
comes from the file) and says what to change.

`--connect` also tries each probe once, with its configured deadline: the database and
the privileges each check needs, the DRBD source, the services command, and each target's
URL as apprise parses it. apprise never loads in this process: URLs are checked by a child
(watchdog.alerts.urlcheck), as the daemon sends through one.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Tuple

from watchdog.alerts.sender import last_json_line
from watchdog.config import Config, locate

log = logging.getLogger("watchdog.preflight")

ERROR = "error"
WARNING = "warning"
OK = "ok"

# How long the URL-checking child may take (it imports apprise: ~0.5 s).
URLCHECK_TIMEOUT = 60.0


@dataclass(frozen=True)
class Finding:
    """One thing --check-config has to say. `key` is a TOML key path ("postgres.dsn")."""

    level: str  # ERROR, WARNING or OK (--connect reports what worked too)
    key: str
    message: str
    fix: str = ""
    line: Optional[int] = None

    def render(self, path: str) -> str:
        where = path + (f":{self.line}" if self.line is not None else "")
        key = f" [{self.key}]" if self.key else ""
        fix = f" -> {self.fix}" if self.fix else ""
        label = {ERROR: "error", WARNING: "warning", OK: "ok"}[self.level]
        return f"{where}:{key} {label}: {self.message}{fix}"


class _Out:
    def __init__(self, text: str):
        self.text = text
        self.findings: List[Finding] = []

    def add(self, level: str, key: str, message: str, fix: str = "") -> None:
        line = locate(self.text, key) if self.text and key else None
        if line is None and self.text and key and not key.endswith("]"):
            line = locate(self.text, key + "[0]")  # an array of tables: its first header
        self.findings.append(Finding(level, key, message, fix, line))


def _read_text(path: str) -> str:
    try:
        with open(path, "rb") as handle:
            return handle.read(4 * 1024 * 1024).decode("utf-8", errors="replace")
    except OSError:
        return ""


# ---------------------------------------------------------------- outputs (daemon start too)


def live_targets(cfg: Config) -> List[Any]:
    """Targets that receive something (an empty `severities` receives nothing)."""
    return [t for t in cfg.alerts.targets if t.severities]


def silent_reason(cfg: Config) -> Optional[str]:
    """Why a daemon with this config would tell nobody anything, or None.

    Silent means: no target that receives anything, no metrics, no heartbeat. Such a
    daemon cycles and logs and pages nobody, which looks like "all is well".
    """
    if live_targets(cfg) or cfg.metrics.listen is not None or cfg.metrics.textfile:
        return None
    if cfg.heartbeat.url:
        return None
    if cfg.alerts.targets:
        return ("every [[alerts.targets]] has an empty severities list, and there is no "
                "[metrics] and no [heartbeat]: nobody would ever hear of a problem")
    return ("no [[alerts.targets]], no [metrics] and no [heartbeat]: "
            "the daemon would watch and tell nobody")


# ---------------------------------------------------------------- static findings


def _scrub_dsn(text: str, dsn: str) -> str:
    """libpq quotes keywords, not values; scrub any password anyway (no secret in text)."""
    secrets = re.findall(r"password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", dsn)
    secrets += re.findall(r"://[^:/@]*:([^@/]+)@", dsn)
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, "***")
    return text


def dsn_problem(dsn: str) -> Optional[str]:
    """Why libpq cannot use `dsn` (its own parser, through psycopg), or None."""
    if not dsn.strip():
        return None  # libpq's defaults: a local socket, the OS user's name
    try:
        from psycopg.conninfo import conninfo_to_dict
    except ImportError as exc:  # pragma: no cover - psycopg is a dependency
        return f"psycopg is not installed ({exc})"
    try:
        parts = conninfo_to_dict(dsn)
    except Exception as exc:  # noqa: BLE001 - psycopg.ProgrammingError and friends
        return _scrub_dsn(str(exc).strip(), dsn)
    port = str(parts.get("port") or "")
    if port and not all(p.strip().isdigit() for p in port.split(",")):
        return f"port {port!r} is not a number"
    return None


def static_findings(cfg: Config, text: Optional[str] = None) -> List[Finding]:
    """Everything that can be found without touching the outside (and URLs, in a child)."""
    out = _Out(_read_text(cfg.source) if text is None else text)
    problem = dsn_problem(cfg.postgres.dsn)
    if problem:
        out.add(ERROR, "postgres.dsn", f"libpq cannot parse the DSN: {problem}",
                'write it as key=value pairs, e.g. "host=/tmp port=5432 user=greenarrow '
                'dbname=greenarrow", or as a postgresql:// URI')
    silent = silent_reason(cfg)
    if silent and not cfg.alerts.allow_silent:
        out.add(ERROR, "alerts.targets" if cfg.alerts.targets else "",
                f"the daemon refuses to start: {silent}",
                "add an [[alerts.targets]] (see config.example.toml), [metrics] or "
                "[heartbeat] url; or set [alerts] allow_silent = true if that is really "
                "what you want")
    for index, target in enumerate(cfg.alerts.targets):
        key = f"alerts.targets[{index}]"
        if not target.severities:
            out.add(ERROR, f"{key}.severities",
                    f"target {target.name!r} has an empty severities list: it receives nothing",
                    'list what it should get, e.g. ["critical"] or '
                    '["warning", "critical", "recovery", "info"]')
        if target.url_file:
            why = _url_file_problem(target.url_file)
            if why:
                out.add(ERROR, f"{key}.url_file", f"target {target.name!r}: {why}",
                        "create the file holding the apprise URL (one line, mode 0600, "
                        "readable by the user the daemon runs as) or fix the path")
    if cfg.alerts.targets and not any("critical" in t.severities for t in cfg.alerts.targets):
        # With [metrics], Alertmanager may be what pages: then only a warning.
        metrics = cfg.metrics.listen is not None or bool(cfg.metrics.textfile)
        out.add(WARNING if metrics else ERROR, "alerts.targets",
                "no target receives \"critical\": a CRITICAL problem would page nobody"
                + (" here (only through [metrics], if Alertmanager pages)" if metrics else ""),
                'add "critical" to the severities of the target that should page')
    return out.findings


def _url_file_problem(path: str) -> Optional[str]:
    try:
        with open(path, "rb") as handle:
            data = handle.read(64 * 1024)
    except FileNotFoundError:
        return f"url_file {path} does not exist"
    except PermissionError:
        return f"url_file {path} is not readable (permission denied)"
    except IsADirectoryError:
        return f"url_file {path} is a directory"
    except OSError as exc:
        return f"url_file {path} cannot be read: {exc.strerror or exc}"
    try:
        text = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        return f"url_file {path} is not UTF-8 text"
    if not text:
        return f"url_file {path} is empty"
    return None


# ---------------------------------------------------------------- target URLs (child)


def url_findings(cfg: Config, text: str = "", check_syntax: bool = True,
                 python: Optional[str] = None) -> List[Finding]:
    """Each target's URL as apprise sees it: an unknown scheme always, the whole URL's
    syntax with `check_syntax`. Runs apprise in a child (never imported here)."""
    from watchdog.alerts.delivery import resolve_url
    from watchdog.probes.command import package_env, run_command

    out = _Out(text)
    keyed: List[Tuple[str, Any, str]] = []
    for index, target in enumerate(cfg.alerts.targets):
        url, _error = resolve_url(target)  # an unreadable url_file is a static finding
        if url is not None:
            keyed.append((f"alerts.targets[{index}]", target, url))
    if not keyed:
        return []
    request = json.dumps({"urls": [url for _, _, url in keyed]}).encode("utf-8")
    result = run_command([python or sys.executable, "-m", "watchdog.alerts.urlcheck"],
                         timeout=URLCHECK_TIMEOUT, env=package_env(), input=request)
    log.debug("URL check child: %d URL(s), exit %s, %s", len(keyed), result.returncode,
              result.error or "answered")
    answer = last_json_line(result.stdout)
    results = answer.get("results") if answer else None
    if result.error is not None or not isinstance(results, list) or len(results) != len(keyed):
        from watchdog.alerts.delivery import redact

        why = result.error or (answer or {}).get("error") or f"exit {result.returncode}"
        out.add(WARNING, "alerts.targets",
                f"could not check the target URLs with apprise: {redact(str(why))}",
                "make sure apprise is installed in this environment")
        return out.findings
    version = answer.get("apprise", "?")
    for (key, target, _url), item in zip(keyed, results):
        urlkey = f"{key}.url" if target.url else f"{key}.url_file"
        scheme = item.get("scheme") or ""
        if not item.get("known"):
            shown = f"{scheme}://" if scheme else "(no scheme://)"
            out.add(ERROR, urlkey,
                    f"target {target.name!r}: apprise {version} has no plugin for {shown}",
                    "use a scheme apprise knows (slack://, mailto://, mailtos://, "
                    "pagerduty://, json://, ...; `apprise --details` lists them)")
        elif check_syntax and not item.get("valid"):
            out.add(ERROR, urlkey,
                    f"target {target.name!r}: apprise {version} refuses this {scheme}:// URL: "
                    f"{item.get('error') or 'no reason given'}",
                    f"fix the URL's parts as apprise's page for {scheme}:// describes")
        elif check_syntax:
            out.add(OK, urlkey, f"target {target.name!r}: {scheme}:// URL parses (apprise {version})")
        # PagerDuty without ?action=map: a config warning (config.pagerduty_warnings), the
        # same on every apprise (1.9.x through alerts.pagerduty_compat).
    return out.findings


# ---------------------------------------------------------------- --connect: the probes


PRIVILEGE_SQL = """
SELECT current_user::text,
       current_setting('server_version_num')::int,
       r.rolsuper,
       EXISTS (SELECT 1 FROM pg_roles g
               WHERE g.rolname IN ('pg_monitor', 'pg_read_all_stats')
                 AND pg_has_role(current_user, g.oid, 'MEMBER')),
       pg_is_in_recovery(),
       (SELECT count(*) FROM pg_stat_replication),
       (SELECT count(state) FROM pg_stat_replication)
FROM pg_roles r WHERE r.rolname = current_user
"""


@dataclass(frozen=True)
class Privileges:
    user: str
    version: int
    superuser: bool
    monitor: bool  # member of pg_monitor or pg_read_all_stats (10+)
    in_recovery: bool
    walsenders: int
    walsenders_visible: int


def read_privileges(dsn: str, timeout: float, connect: Optional[Callable[..., Any]] = None
                    ) -> Privileges:
    """One connection, one query; raises with libpq's reason."""
    if connect is None:
        import psycopg

        connect = psycopg.connect
    conn = connect(dsn, connect_timeout=max(2, int(timeout + 0.999)), autocommit=True,
                   fallback_application_name="ha-watchdog-check")
    try:
        row = conn.execute(PRIVILEGE_SQL).fetchone()
    finally:
        conn.close()
    user, version, superuser, monitor, recovery, senders, visible = row
    return Privileges(str(user), int(version), bool(superuser), bool(monitor), bool(recovery),
                      int(senders), int(visible))


def privilege_findings(priv: Privileges) -> List[Finding]:
    """What the role can see, per check; the GRANT to run when it cannot."""
    out: List[Finding] = []
    major = priv.version // 10000 if priv.version >= 100000 else priv.version // 100
    shown = f"{major // 100}.{major % 100}" if priv.version < 100000 else str(major)
    where = f"PostgreSQL {shown}, role {priv.user}"
    sees_all = priv.superuser or (priv.version >= 100000 and priv.monitor)
    if priv.walsenders > priv.walsenders_visible:
        sees_all = False
    if sees_all:
        how = "superuser" if priv.superuser else "member of pg_monitor"
        out.append(Finding(OK, "postgres.dsn",
                           f"{where} ({how}): sees pg_stat_replication and "
                           "pg_stat_wal_receiver (standbys, replay_lag, backup detection)"))
        return out
    if priv.version >= 100000:
        fix = f"as a superuser: GRANT pg_monitor TO {priv.user};"
    else:
        fix = (f"on {shown} only a superuser sees those columns: ALTER ROLE {priv.user} "
               "SUPERUSER; (from PostgreSQL 10, GRANT pg_monitor is enough)")
    hidden = ""
    if priv.walsenders > priv.walsenders_visible:
        hidden = (f" (right now {priv.walsenders} walsender(s), state visible for "
                  f"{priv.walsenders_visible})")
    out.append(Finding(ERROR, "postgres.dsn",
                       f"{where} cannot see pg_stat_replication.state and the WAL receiver's "
                       f"columns{hidden}: standbys and replay_lag would report UNKNOWN, "
                       "backups would go unnoticed", fix))
    return out


# ---------------------------------------------------------------- the command


def _print(text: str, level: str) -> None:
    print(text)


def run_check_config(cfg: Config, connect: bool = False,
                     print_line: Callable[[str, str], None] = _print) -> int:
    """Print every finding (with its level); 0 when there is no error, 3 otherwise."""
    text = _read_text(cfg.source) if cfg.source != "<defaults>" else ""
    findings = static_findings(cfg, text)
    findings += url_findings(cfg, text, check_syntax=connect)
    if connect:
        from watchdog.preflight_probes import connect_findings

        findings += connect_findings(cfg, text)
    findings.sort(key=lambda f: {ERROR: 0, WARNING: 1, OK: 2}[f.level])
    for finding in findings:
        print_line(finding.render(cfg.source), finding.level)
    errors = sum(1 for f in findings if f.level == ERROR)
    if errors:
        print_line(f"{cfg.source}: {errors} error(s): fix them before starting the daemon", ERROR)
        return 3
    print_line(f"{cfg.source}: OK", OK)
    return 0


# The probe half (`--connect`) lives in watchdog.preflight_probes, which imports this
# module; its names stay importable from here.
_PROBE_HALF = frozenset(('_in_thread', 'connect_findings', '_storage', '_drbd', '_services', '_backup_log', '_postgres', '_postgres_probe', '_wal_findings'))


def __getattr__(name: str) -> Any:
    if name in _PROBE_HALF:
        from watchdog import preflight_probes

        return getattr(preflight_probes, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
