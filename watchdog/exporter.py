"""Serve `watchdog.metrics` to Prometheus: HTTP `/metrics` and a node_exporter textfile.

The only module importing prometheus_client (the `metrics` extra); the daemon imports it
only when `[metrics]` is configured. Nothing here may stop the watchdog: a port in use or an
unwritable textfile is logged once per distinct error and retried after every cycle.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import threading
import time
from socketserver import ThreadingMixIn
from typing import Any, Dict, Iterator, Optional, Tuple
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, generate_latest, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from watchdog import __version__
from watchdog.config import MetricsConfig
from watchdog.metrics import COUNTER, MetricsView, families, info_family, with_node
from watchdog.statefile import write_atomic

log = logging.getLogger("watchdog.metrics")

TEXTFILE_MODE = 0o644  # node_exporter reads it as another user; the unit's UMask is 0077
_REFUSED = (errno.EROFS, errno.EACCES, errno.EPERM)  # what ProtectSystem=strict looks like
_SYSTEMD_HINT = (
    " (the unit has ProtectSystem=strict: allow the directory with a drop-in, "
    "`systemctl edit ha-watchdog`: [Service] ReadWritePaths={directory})"
)


class _ViewCollector(Collector):
    """Yields the families of the latest view, built at scrape time from that view only
    (before the first view: just `ha_watchdog_info`)."""

    def __init__(self, node: str) -> None:
        self._node = node
        self._lock = threading.Lock()
        self._view: Optional[MetricsView] = None

    def set(self, view: MetricsView) -> None:
        with self._lock:
            self._view = view

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            view = self._view
        fams = families(view) if view else [with_node(info_family(__version__), self._node)]
        for fam in fams:
            kind = CounterMetricFamily if fam.type == COUNTER else GaugeMetricFamily
            metric = kind(fam.name, fam.help, labels=fam.labels)
            for values, value in fam.samples:
                metric.add_metric(values, value)
            yield metric


# Bounds of the HTTP endpoint, so that no client (any local user can connect) can take the
# file descriptors and threads the probes and alert sends need: at most MAX_CONNECTIONS at
# once (more are accepted and closed at once), each read bounded by READ_TIMEOUT and each
# connection's whole life by MAX_LIFETIME (a client dripping bytes is cut off).
MAX_CONNECTIONS = 8
READ_TIMEOUT = 5.0
MAX_LIFETIME = 10.0


class _Server(ThreadingMixIn, WSGIServer):
    """A WSGI server whose connections are bounded in number and lifetime."""

    daemon_threads = True  # a slow scraper never delays shutdown
    block_on_close = False
    # A deep accept queue: a flood is accepted (and closed at once) quickly instead of
    # lingering in the kernel's queue and retrying into free slots later.
    request_queue_size = 128
    max_connections = MAX_CONNECTIONS
    max_lifetime = MAX_LIFETIME

    def server_activate(self) -> None:
        super().server_activate()
        self._slots = threading.BoundedSemaphore(self.max_connections)
        self._open: Dict[socket.socket, float] = {}
        self._open_lock = threading.Lock()
        self.refused = 0  # connections closed at once because every slot was taken

    def verify_request(self, request: Any, client_address: Any) -> bool:
        """False (socketserver then closes it) when every slot is taken."""
        if self._slots.acquire(blocking=False):
            return True
        self.refused += 1
        return False

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open[request] = time.monotonic()
        try:
            super().process_request(request, client_address)
        except BaseException:  # no thread started: free what it held
            self._done(request)
            self.shutdown_request(request)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._done(request)

    def _done(self, request: Any) -> None:
        with self._open_lock:
            held = self._open.pop(request, None) is not None
        if held:
            self._slots.release()

    def service_actions(self) -> None:
        """Run by serve_forever between polls: end connections past their lifetime (the
        shutdown makes their blocked read return, and their thread ends)."""
        now = time.monotonic()
        with self._open_lock:
            old = [sock for sock, since in self._open.items() if now - since > self.max_lifetime]
        for sock in old:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def open_connections(self) -> int:
        with self._open_lock:
            return len(self._open)


class _QuietHandler(WSGIRequestHandler):
    timeout = READ_TIMEOUT  # socket timeout for each read and write of a connection

    def log_message(self, format: str, *args: object) -> None:
        """Scrapes are not worth a log line each."""


class MetricsExporter:
    """Holds the latest `MetricsView`; serves it over HTTP and/or writes it to a textfile.

    The HTTP server is our own small WSGI server around prometheus_client's app (rather than
    `start_http_server`, which returns nothing to shut down before 0.19), so `close()` frees
    the port for a reload on every supported version.
    """

    def __init__(self, cfg: MetricsConfig, node: str) -> None:
        self.cfg = cfg
        self._collector = _ViewCollector(node)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self._collector)
        self._server_lock = threading.Lock()
        self._server: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None
        self._closed = False
        self._errors: Dict[str, Optional[str]] = {"listen": None, "textfile": None}

    @property
    def address(self) -> Optional[Tuple[str, int]]:
        """(host, port) actually bound; None while not serving."""
        server = self._server
        return None if server is None else server.server_address[:2]

    def update(self, view: MetricsView) -> None:
        """Publish `view`; (re)try the textfile and the listener. Never raises."""
        self._collector.set(view)
        if self.cfg.textfile:
            self._write_textfile(self.cfg.textfile)
        if self.cfg.listen:
            self._ensure_serving(*self.cfg.listen)

    def close(self) -> None:
        """Stop serving and release the port (idempotent)."""
        with self._server_lock:
            self._closed = True
            server, thread = self._server, self._thread
            self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    # ------------------------------------------------------------ HTTP

    def _ensure_serving(self, host: str, port: int) -> None:
        with self._server_lock:
            if self._server is not None or self._closed:
                return
            try:
                server = _bind(host, port, self.registry)
            except Exception as exc:  # OSError mostly; an odd host name is a UnicodeError
                self._failed("listen", f"cannot listen on {_url(host, port)}: {_reason(exc)}")
                return
            self._server = server
            self._thread = threading.Thread(
                target=server.serve_forever, name="metrics-http", daemon=True
            )
            self._thread.start()
        self._errors["listen"] = None
        bound_host, bound_port = server.server_address[:2]
        log.info("metrics: serving %s/metrics", _url(bound_host, bound_port))

    # ------------------------------------------------------------ textfile

    def _write_textfile(self, path: str) -> None:
        try:
            write_atomic(path, generate_latest(self.registry), TEXTFILE_MODE, make_dirs=False)
        except Exception as exc:  # never let metrics stop the watchdog
            message = f"cannot write textfile {path}: {_reason(exc)}"
            if getattr(exc, "errno", None) in _REFUSED and _under_systemd():
                message += _SYSTEMD_HINT.format(directory=os.path.dirname(path) or ".")
            self._failed("textfile", message)
            return
        if self._errors["textfile"] is not None:
            log.info("metrics: writing textfile %s works again", path)
            self._errors["textfile"] = None

    # ------------------------------------------------------------ errors

    def _failed(self, what: str, message: str) -> None:
        """ERROR once per distinct problem; the same problem again is a DEBUG retry."""
        if self._errors[what] == message:
            log.debug("metrics: still failing, will retry: %s", message)
        else:
            log.error("metrics: %s; retrying after every cycle", message)
            self._errors[what] = message


def _bind(host: str, port: int, registry: CollectorRegistry) -> _Server:
    """A bound, listening server for `registry` on host:port, IPv4 or IPv6 as `host` is."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, sockaddr = infos[0]

    class Server(_Server):
        address_family = family

    return make_server(sockaddr[0], port, make_wsgi_app(registry), Server,
                       handler_class=_QuietHandler)


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _reason(exc: Exception) -> str:
    """The OS's words ("Address already in use"), else the exception's."""
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _under_systemd() -> bool:
    """systemd sets INVOCATION_ID for the processes of a unit."""
    return bool(os.environ.get("INVOCATION_ID"))
