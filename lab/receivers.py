"""Real alert receivers on loopback: an HTTP endpoint for apprise's json:// and the heartbeat,
and an SMTP server for mailto://.

The tests and the demo deliver to these instead of Slack, PagerDuty or a mail relay, so
what is checked is the real path: apprise builds the request, a real socket carries it, a
real server parses it. Both bind 127.0.0.1 on a free port and record what arrived.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import json
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional, Tuple

LOOPBACK = "127.0.0.1"


def is_about(seen_title: object, stable: str) -> bool:
    """Is a delivered title about `stable` ("[p1] standbys")? Chat and email titles carry a
    subject after the stable title since issue 14 ("[p1] standbys CRITICAL: ...")."""
    text = str(seen_title or "")
    return text == stable or text.startswith(stable + " ")


@dataclass(frozen=True)
class HttpRequest:
    """One request as the HTTP receiver saw it (whether it accepted it or not)."""

    method: str
    path: str
    headers: Dict[str, str]
    body: bytes
    accepted: bool


@dataclass(frozen=True)
class Mail:
    """One message as the SMTP receiver got it."""

    mail_from: str
    rcpt_tos: Tuple[str, ...]
    subject: str
    body: str
    headers: Dict[str, str] = field(default_factory=dict)


class _Recorder:
    """What both receivers share: a list of messages and a way to wait for them."""

    def __init__(self, on_message: Optional[Callable[[Any], None]] = None):
        self._cond = threading.Condition()
        self._messages: List[Any] = []
        self.on_message = on_message

    @property
    def messages(self) -> List[Any]:
        with self._cond:
            return list(self._messages)

    def _record(self, message: Any) -> None:
        with self._cond:
            self._messages.append(message)
            self._cond.notify_all()
        if self.on_message is not None:
            with contextlib.suppress(Exception):  # a demo printer must not break the receiver
                self.on_message(message)

    def wait_for(self, predicate: Callable[[List[Any]], bool], timeout: float) -> bool:
        """Wait until `predicate(messages)` is true; False when `timeout` passes first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(list(self._messages)):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def wait_count(self, count: int, timeout: float) -> bool:
        return self.wait_for(lambda msgs: len(msgs) >= count, timeout)

    def clear(self) -> None:
        with self._cond:
            self._messages.clear()


class HttpReceiver(_Recorder):
    """ThreadingHTTPServer on 127.0.0.1; records POSTed JSON bodies in `.messages`.

    Every request (any method, any path, accepted or not) is in `.requests`, which is what
    the heartbeat tests read. `set_down(True)` simulates an outage: requests are answered
    500 (mode "error") or the connection is closed without an answer (mode "close").
    """

    def __init__(self, on_message: Optional[Callable[[Any], None]] = None):
        super().__init__(on_message)
        self._requests: List[HttpRequest] = []
        self._down = False
        self._down_mode = "error"
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    # -- lifecycle
    def start(self) -> HttpReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # keep test output clean

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                receiver._on_request(self, body)

            do_GET = _handle
            do_POST = _handle
            do_PUT = _handle
            do_HEAD = _handle

        self._server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="http-receiver", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> HttpReceiver:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- addresses
    @property
    def port(self) -> int:
        assert self._server is not None, "receiver not started"
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """The apprise URL that posts JSON here."""
        return f"json://{LOOPBACK}:{self.port}/"

    @property
    def http_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    # -- outage simulation
    def set_down(self, down: bool, mode: str = "error") -> None:
        """Simulate an outage: answer 500 ("error") or drop the connection ("close")."""
        if mode not in ("error", "close"):
            raise ValueError("mode is 'error' or 'close'")
        with self._cond:
            self._down = down
            self._down_mode = mode

    @property
    def requests(self) -> List[HttpRequest]:
        with self._cond:
            return list(self._requests)

    @property
    def rejected(self) -> int:
        """How many requests arrived while down."""
        with self._cond:
            return sum(1 for r in self._requests if not r.accepted)

    def wait_requests(self, predicate: Callable[[List[HttpRequest]], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(list(self._requests)):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def _on_request(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        with self._cond:
            down, mode = self._down, self._down_mode
            request = HttpRequest(
                handler.command, handler.path, dict(handler.headers.items()), body, not down
            )
            self._requests.append(request)
            self._cond.notify_all()
        if down:
            if mode == "close":
                handler.close_connection = True
                with contextlib.suppress(OSError):
                    handler.connection.shutdown(socket.SHUT_RDWR)
                return
            self._reply(handler, 500, b"receiver is down\n")
            return
        if handler.command == "POST" and body:
            try:
                message = json.loads(body.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                message = None
            if message is not None:
                self._record(message)
        self._reply(handler, 200, b"OK\n")

    @staticmethod
    def _reply(handler: BaseHTTPRequestHandler, code: int, payload: bytes) -> None:
        handler.send_response(code)
        handler.send_header("Content-Type", "text/plain")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(payload)


def free_port() -> int:
    """A TCP port on loopback that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


class SmtpReceiver(_Recorder):
    """An aiosmtpd server on 127.0.0.1 (no TLS, no auth); records every message as a Mail.

    `set_down(True)` makes it refuse messages with a temporary error (451).
    """

    def __init__(self, on_message: Optional[Callable[[Any], None]] = None):
        super().__init__(on_message)
        self._controller: Any = None
        self._port: Optional[int] = None
        self._down = False

    def start(self) -> SmtpReceiver:
        from aiosmtpd.controller import Controller  # test/demo dependency only

        receiver = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                if receiver._down:
                    return "451 Requested action aborted: receiver is down"
                receiver._record(receiver._parse(envelope))
                return "250 Message accepted for delivery"

        last_error: Optional[Exception] = None
        for _ in range(5):  # another process may take the free port between probe and bind
            port = free_port()
            controller = Controller(Handler(), hostname=LOOPBACK, port=port, ready_timeout=10)
            try:
                controller.start()
            except Exception as exc:  # pragma: no cover - port race
                last_error = exc
                continue
            self._controller, self._port = controller, port
            return self
        raise RuntimeError(f"cannot start SMTP receiver: {last_error}")  # pragma: no cover

    def close(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpReceiver:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def port(self) -> int:
        assert self._port is not None, "receiver not started"
        return self._port

    def set_down(self, down: bool) -> None:
        self._down = down

    def mailto_url(self, to: str = "ops@example.com", sender: str = "watchdog@example.com") -> str:
        """An apprise URL that delivers here in plain SMTP (mode=insecure: no STARTTLS)."""
        return f"mailto://{LOOPBACK}:{self.port}/?mode=insecure&from={sender}&to={to}"

    @staticmethod
    def _parse(envelope: Any) -> Mail:
        raw = envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8")
        message = email.message_from_bytes(raw, policy=email.policy.default)
        if message.is_multipart():
            part = message.get_body(preferencelist=("plain", "html"))
            body = part.get_content() if part is not None else ""
        else:
            body = message.get_content()
        return Mail(
            mail_from=envelope.mail_from,
            rcpt_tos=tuple(envelope.rcpt_tos),
            subject=str(message.get("Subject", "")),
            body=body,
            headers={k: str(v) for k, v in message.items()},
        )


# -- command line: a receiver as a process of its own --------------------------------------


def _append_line(path: str, message: Any) -> None:
    """One JSON document per line; opened per message so a reader never sees half a line
    held back in a buffer. A failed write is reported (the recorder would swallow it)."""
    line = json.dumps(message, sort_keys=True, ensure_ascii=True) + "\n"
    try:
        with open(path, "a", encoding="ascii") as handle:
            handle.write(line)
    except OSError as exc:
        print(f"cannot append to {path}: {exc}", file=sys.stderr, flush=True)


def _write_atomically(path: str, text: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="ascii") as handle:
        handle.write(text)
    os.replace(tmp, path)


def main(argv: Optional[List[str]] = None) -> int:
    """`python -m lab.receivers http --out FILE [--port-file FILE]`.

    Runs an HttpReceiver until SIGTERM/SIGINT, appending each received JSON body as one
    line to FILE. It is for a daemon that runs where an in-process receiver cannot be
    (e.g. inside a container with its own network): the port it bound is written to
    --port-file (atomically, so its appearance means "listening") and printed.
    """
    import argparse
    import signal

    parser = argparse.ArgumentParser(prog="python -m lab.receivers")
    parser.add_argument("kind", choices=["http"], help="http: apprise json:// receiver")
    parser.add_argument("--out", required=True, help="append each JSON body here, one a line")
    parser.add_argument("--port-file", help="write the bound port here once listening")
    args = parser.parse_args(argv)

    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    out = args.out
    with HttpReceiver(on_message=lambda message: _append_line(out, message)) as receiver:
        if args.port_file:
            _write_atomically(args.port_file, f"{receiver.port}\n")
        print(f"listening on {receiver.url}, writing to {out}", flush=True)
        while not stop.wait(1.0):
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
