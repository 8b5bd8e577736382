"""A lab node: a config file plus a real `ha-watchdog` daemon process running it.

The tests, the demo and the benchmark start one per simulated node; everything the daemon
touches is on loopback or in the node's work directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence


def toml_value(value: Any) -> str:
    """A TOML 1.0 literal for str, bool, int, float, list (JSON strings are valid TOML)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def render_config(sections: Mapping[str, Any]) -> str:
    """TOML text from {"section": {...}, "alerts.targets": [{...}], "backup_windows": [...]}."""
    out: List[str] = []
    for name, body in sections.items():
        if isinstance(body, (list, tuple)):
            for item in body:
                out.append(f"[[{name}]]")
                out.extend(f"{k} = {toml_value(v)}" for k, v in item.items() if v is not None)
                out.append("")
        else:
            out.append(f"[{name}]")
            out.extend(f"{k} = {toml_value(v)}" for k, v in body.items() if v is not None)
            out.append("")
    return "\n".join(out)


def node_sections(
    name: str,
    state_dir: str,
    drbd_path: str,
    dsn: str,
    services_command: Sequence[str] = ("true",),
    targets: Sequence[Mapping[str, Any]] = (),
    interval: str = "0.5s",
    overrides: Optional[Mapping[str, Mapping[str, Any]]] = None,
) -> Dict[str, Any]:
    """A lab node's config: short intervals and debounce so scenarios take seconds."""
    sections: Dict[str, Any] = {
        "node": {"name": name},
        "daemon": {"interval": interval, "state_dir": state_dir, "flap_changes": 6},
        "drbd": {"path": drbd_path, "format": "proc", "for": "0s", "recover_for": "0s"},
        "postgres": {"dsn": dsn, "connect_timeout": "1s", "query_timeout": "2s"},
        "postgres_role": {"for": "1s", "recover_for": "1s"},
        "services": {
            "command": list(services_command),
            "timeout": "4s",
            "for": "1s",
            "recover_for": "1s",
        },
        "standbys": {"for": "1s", "recover_for": "1s", "max_reply_age": "15s"},
        "replay_lag": {
            "warning": "2s",
            "critical": "6s",
            "for": "2s",
            "recover_for": "1s",
            "max_receive_age": "45s",
        },
        "alerts": {"retries": 1, "retry_max_wait": "200ms", "send_timeout": "5s"},
    }
    if targets:
        sections["alerts.targets"] = [dict(t) for t in targets]
    for section, values in (overrides or {}).items():
        if isinstance(values, (list, tuple)):
            sections[section] = [dict(v) for v in values]
        else:
            sections.setdefault(section, {}).update(values)
    return sections


class NodeDaemon:
    """`ha-watchdog --config <workdir>/config.toml` as a real process, its log captured."""

    def __init__(
        self,
        name: str,
        workdir: str,
        sections: Mapping[str, Any],
        python: str = sys.executable,
        on_line: Optional[Callable[[str, str], None]] = None,
        env: Optional[Mapping[str, str]] = None,
    ):
        self.name = name
        self.workdir = workdir
        self.python = python
        self.on_line = on_line
        self.env = dict(os.environ if env is None else env)
        self.config_path = os.path.join(workdir, "config.toml")
        self.proc: Optional[subprocess.Popen] = None
        self.lines: List[str] = []
        self._lock = threading.Lock()
        self._reader: Optional[threading.Thread] = None
        os.makedirs(workdir, exist_ok=True)
        self.write_config(sections)

    def write_config(self, sections: Mapping[str, Any]) -> None:
        self.sections = dict(sections)
        tmp = self.config_path + ".tmp"
        with open(tmp, "w") as handle:
            handle.write(render_config(sections))
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.config_path)

    def write_raw_config(self, text: str) -> None:
        with open(self.config_path, "w") as handle:
            handle.write(text)
        os.chmod(self.config_path, 0o600)

    # ---- process control

    def start(self) -> NodeDaemon:
        self.proc = subprocess.Popen(
            [self.python, "-m", "watchdog", "--config", self.config_path],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            env=self.env,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, args=(self.proc,), daemon=True)
        self._reader.start()
        return self

    def _read(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            with self._lock:
                self.lines.append(line)
            if self.on_line is not None:
                self.on_line(self.name, line)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.running():
            assert self.proc is not None
            self.proc.send_signal(sig)

    def reload(self) -> None:
        self.signal(signal.SIGHUP)

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
            if self._reader is not None:
                self._reader.join(5)

    def stop(self, timeout: float = 20.0) -> Optional[int]:
        """SIGTERM and wait; SIGKILL if it does not exit within `timeout`."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        if self._reader is not None:
            self._reader.join(5)
        return self.proc.returncode

    def __enter__(self) -> NodeDaemon:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ---- log

    def log(self) -> List[str]:
        with self._lock:
            return list(self.lines)

    def wait_log(self, pattern: str, timeout: float, start: int = 0) -> Optional[str]:
        """The first log line (from index `start`) matching `pattern`, or None at timeout."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            for line in self.log()[start:]:
                if regex.search(line):
                    return line
            if time.monotonic() >= deadline or not self.running():
                for line in self.log()[start:]:
                    if regex.search(line):
                        return line
                return None
            time.sleep(0.05)

    def cycles(self) -> int:
        return sum(1 for line in self.log() if " cycle " in f" {line}" and "ms," in line)
