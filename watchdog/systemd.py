"""systemd integration: sd_notify messages, the watchdog interval, journal logging, crash dumps.

Everything here is a silent no-op outside systemd, so the same daemon code runs under
systemd, in a terminal and in tests. The notify socket and the environment are injectable:
tests talk to a real AF_UNIX datagram socket of their own.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import socket
import sys
import threading
import time
import unicodedata
from typing import IO, Any, Callable, Mapping, Optional, Union

log = logging.getLogger(__name__)

#: STATUS= is shown by `systemctl status` on one line; longer text is cut with "...".
STATUS_MAX_LEN = 200


def sanitize_status(text: str, max_len: int = STATUS_MAX_LEN) -> str:
    """One line of printable ASCII, at most `max_len` characters.

    sdnotify encodes latin-1 and silently drops a message it cannot encode, so a STATUS=
    with any other character would vanish; systemd shows STATUS= on one line.
    Accents are folded ("café" -> "cafe"), other non-ASCII becomes "?", runs of
    whitespace and control characters become one space.
    """
    folded = unicodedata.normalize("NFKD", str(text))
    out = []
    pending_space = False
    for ch in folded:
        category = unicodedata.category(ch)
        if unicodedata.combining(ch) or category == "Cf":  # accents, zero-width marks
            continue
        if ch.isspace() or category in ("Cc", "Zl", "Zp"):
            pending_space = bool(out)
            continue
        if pending_space:
            out.append(" ")
            pending_space = False
        out.append(ch if " " < ch < "\x7f" else "?")
    line = "".join(out)
    if max_len < 4:
        return line[: max(max_len, 0)]
    if len(line) > max_len:
        line = line[: max_len - 3].rstrip() + "..."
    return line


def _socket_address(path: str) -> str:
    """`@name` is an abstract-namespace socket (leading NUL byte)."""
    return "\0" + path[1:] if path.startswith("@") else path


class Notifier:
    """sd_notify through the `sdnotify` package, imported on first use.

    Without a notify socket (not started by systemd with Type=notify) every method is a
    no-op. A send that fails is retried once on a fresh socket, then dropped with a debug
    log line: notifying must never take the daemon down.
    """

    def __init__(
        self,
        environ: Optional[Mapping[str, str]] = None,
        socket_path: Optional[str] = None,
        getpid: Callable[[], int] = os.getpid,
        monotonic_usec: Callable[[], int] = lambda: time.monotonic_ns() // 1000,
    ) -> None:
        self._environ = os.environ if environ is None else environ
        self._address = (
            socket_path if socket_path is not None else self._environ.get("NOTIFY_SOCKET")
        )
        self._getpid = getpid
        self._monotonic_usec = monotonic_usec
        self._notifier = None  # sdnotify.SystemdNotifier, created lazily

    @property
    def enabled(self) -> bool:
        """True when there is a notify socket to talk to."""
        return bool(self._address)

    # -- messages ---------------------------------------------------------------------

    def ready(self, status: Optional[str] = None) -> None:
        """READY=1: startup (or a reload) is complete."""
        self._send("READY=1", status)

    def status(self, text: str) -> None:
        """STATUS=<one ASCII line>, shown by `systemctl status`."""
        self._send(None, text)

    def reloading(self, status: Optional[str] = None) -> None:
        """RELOADING=1 before a config reload; follow it with ready().

        MONOTONIC_USEC is required by newer systemd (Type=notify-reload) and ignored by 252.
        """
        self._send(f"RELOADING=1\nMONOTONIC_USEC={self._monotonic_usec()}", status)

    def stopping(self, status: Optional[str] = None) -> None:
        """STOPPING=1: shutdown has begun (SIGTERM received)."""
        self._send("STOPPING=1", status)

    def watchdog_ping(self) -> None:
        """WATCHDOG=1. Call it only from the loop that proves progress."""
        self._send("WATCHDOG=1", None)

    def watchdog_interval(self) -> Optional[float]:
        """Seconds between pings (WATCHDOG_USEC / 2), or None when no watchdog is ours.

        The watchdog is ours when WATCHDOG_PID is unset or names this process (a child that
        inherited the environment must not ping on the parent's behalf).
        """
        usec = self._environ.get("WATCHDOG_USEC")
        if not usec:
            return None
        pid = self._environ.get("WATCHDOG_PID")
        if pid:
            try:
                if int(pid) != self._getpid():
                    return None
            except ValueError:
                return None
        try:
            value = int(usec)
        except ValueError:
            return None
        if value <= 0:
            return None
        return value / 2 / 1_000_000

    # -- transport --------------------------------------------------------------------

    def _send(self, fields: Optional[str], status: Optional[str]) -> None:
        if not self._address:
            return
        parts = [] if fields is None else [fields]
        if status is not None:
            parts.append("STATUS=" + sanitize_status(status))
        if not parts:
            return
        message = "\n".join(parts)
        for attempt in (1, 2):
            try:
                self._connected().notify(message)
                return
            except Exception as exc:  # notifying must never crash the daemon
                self._reset()
                if attempt == 2:
                    log.debug("sd_notify to %r failed: %s", self._address, exc)

    def _connected(self):
        if self._notifier is None:
            import sdnotify  # lazy: costs nothing when not under systemd

            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            try:
                sock.connect(_socket_address(self._address))
            except OSError:
                sock.close()
                raise
            # Not through its constructor: that reads os.environ (not injectable) and,
            # without NOTIFY_SOCKET there, leaks the socket it opened. Its notify() does
            # the latin-1 encoding and sendall on `socket`; debug=True makes it raise, so
            # that _send can reconnect.
            notifier = sdnotify.SystemdNotifier.__new__(sdnotify.SystemdNotifier)
            notifier.socket = sock
            notifier.debug = True
            self._notifier = notifier
        return self._notifier

    def _reset(self) -> None:
        if self._notifier is not None and self._notifier.socket is not None:
            self._notifier.socket.close()
        self._notifier = None

    def close(self) -> None:
        """Close the socket (a later message opens a new one)."""
        self._reset()

    def __enter__(self) -> Notifier:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# -- logging ------------------------------------------------------------------------------


def syslog_priority(levelno: int) -> int:
    """syslog priority for a logging level: 2 crit, 3 err, 4 warning, 6 info, 7 debug."""
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


class JournalFormatter(logging.Formatter):
    """`<N>name: message` lines: journald reads the `<N>` prefix as the priority.

    Every line of a multi-line record (a traceback) carries the prefix, since journald
    stores each line as its own entry. No timestamp: the journal adds one.
    """

    def __init__(self, fmt: str = "%(name)s: %(message)s") -> None:
        super().__init__(fmt)

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{syslog_priority(record.levelno)}>"
        text = super().format(record)
        return "\n".join(prefix + line for line in text.splitlines()) or prefix


PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


def journal_detected(
    environ: Optional[Mapping[str, str]] = None, stream: Optional[IO] = None
) -> bool:
    """Is `stream` (default stderr) connected to the journal?

    systemd sets JOURNAL_STREAM=<dev>:<inode> of the stream it connected; when stderr is
    that stream the answer is yes, when it was redirected elsewhere no. Without
    JOURNAL_STREAM, INVOCATION_ID (set for every unit) counts unless stderr is a terminal.
    """
    env = os.environ if environ is None else environ
    stream = sys.stderr if stream is None else stream
    journal_stream = env.get("JOURNAL_STREAM")
    if journal_stream:
        try:
            st = os.fstat(stream.fileno())
        except (AttributeError, OSError, ValueError):
            return True  # cannot check: trust systemd
        return journal_stream == f"{st.st_dev}:{st.st_ino}"
    if env.get("INVOCATION_ID"):
        try:
            return not stream.isatty()
        except (AttributeError, ValueError):
            return True
    return False


def setup_logging(
    level: Union[int, str] = logging.INFO,
    journal: Optional[bool] = None,
    stream: Optional[IO] = None,
    environ: Optional[Mapping[str, str]] = None,
) -> logging.Handler:
    """Configure the root logger; call again (on reload) to change the level.

    `journal=None` auto-detects (journal_detected). The apprise logger is kept at INFO or
    above: at DEBUG apprise logs webhook tokens and integration keys.
    """
    levelno = _LEVELS[level.strip().lower()] if isinstance(level, str) else int(level)
    stream = sys.stderr if stream is None else stream
    if journal is None:
        journal = journal_detected(environ, stream)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JournalFormatter() if journal else logging.Formatter(PLAIN_FORMAT))
    handler._ha_watchdog = True  # type: ignore[attr-defined]  # ours: replaced on next call
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_ha_watchdog", False):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(levelno)
    logging.getLogger("apprise").setLevel(max(levelno, logging.INFO))
    return handler


def enable_crash_dumps(file: Optional[IO] = None) -> None:
    """Dump every thread's Python stack to stderr (the journal) on a fatal signal.

    systemd's watchdog kills with SIGABRT (WatchdogSignal= default); with this, the
    journal shows where each thread was stuck before the process dies of that signal.

    SIGABRT is also blocked in every thread started from now on, so the main thread (the
    loop that stopped pinging) is the one that takes it: faulthandler reads the other
    threads' frames without the GIL, and a main thread still running Python while another
    thread dumps it can crash the dump half-way (seen after SIGSTOP + SIGCONT, when any
    thread may take the pending signal). abort() called in a thread still works: it
    unblocks SIGABRT itself. Commands started from those threads (svstat, the send child)
    inherit the block; nothing sends them SIGABRT, and abort() works there too.
    """
    faulthandler.enable(file=sys.stderr if file is None else file, all_threads=True)
    if threading.current_thread() is threading.main_thread():
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGABRT})
    threading.setprofile(_block_sigabrt_in_new_thread)


def _block_sigabrt_in_new_thread(frame: Any, event: str, arg: Any) -> None:
    """threading's per-thread profile hook, used once: block SIGABRT, then step aside.

    threading installs it in each new thread before run(), which makes it the one place
    that covers threads started by libraries (apprise's sender pool) as well as ours.
    """
    sys.setprofile(None)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGABRT})
