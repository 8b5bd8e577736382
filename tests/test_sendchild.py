"""The send child (`python -m watchdog.alerts.sendchild`): its protocol, real apprise sends to
real loopback receivers, and the parent's AppriseSender killing it at the deadline."""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import sys
import threading
import time

from conftest import ROOT

from lab.receivers import LOOPBACK
from watchdog.alerts.delivery import AppriseSender
from watchdog.alerts.sendchild import main
from watchdog.config import AlertTarget
from watchdog.probes.command import run_command

TARGET = AlertTarget(name="hook", url="json://127.0.0.1:9/")


def ask(request) -> tuple:
    """main() on one request: (exit code, the answer object)."""
    raw = request if isinstance(request, bytes) else json.dumps(request).encode("utf-8")
    out = io.BytesIO()
    code = main(io.BytesIO(raw), out)
    lines = out.getvalue().decode("utf-8").splitlines()
    assert len(lines) == 1, lines  # exactly one answer line, whatever happened
    return code, json.loads(lines[0])


def request(url: str, **extra) -> dict:
    base = {"url": url, "title": "[mail1] drbd", "body": "drbd StandAlone (café)",
            "notify_type": "failure", "timeout": 5}
    base.update(extra)
    return base


# ---------------------------------------------------------------- protocol


def test_a_bad_request_is_answered_not_raised():
    cases = {
        b"not json": "request is not JSON",
        b"[1, 2]": "not a JSON object",
        json.dumps({"url": "json://x/"}).encode(): "'title' is missing",
        json.dumps(request("json://x/", notify_type="loud")).encode(): "notify_type 'loud'",
        json.dumps(request("json://x/", timeout=0)).encode(): "'timeout'",
        json.dumps(request("json://x/", timeout=True)).encode(): "'timeout'",
    }
    for raw, reason in cases.items():
        code, answer = ask(raw)
        assert code == 2 and answer["ok"] is False, raw
        assert answer["error"].startswith("bad request to the send process") and reason in (
            answer["error"]), (raw, answer)


def test_an_unusable_url_is_a_reason():
    code, answer = ask(request("nosuchscheme://secret-token@host/"))
    assert code == 0 and answer == {
        "ok": False, "error": "apprise cannot use this URL (check its scheme and parts)"}
    code, answer = ask(request("json://127.0.0.1:9/ json://127.0.0.1:10/"))
    assert answer["ok"] is False and "one [[alerts.targets]] per channel" in answer["error"]


# ---------------------------------------------------------------- real channels


def test_child_delivers_to_a_real_webhook(http_receiver):
    code, answer = ask(request(http_receiver.url))
    assert (code, answer) == (0, {"ok": True, "error": None})
    (message,) = http_receiver.messages
    assert message["title"] == "[mail1] drbd" and message["type"] == "failure"
    assert message["message"] == "drbd StandAlone (café)"


def test_child_failure_names_the_reason_without_the_secret(http_receiver, caplog):
    caplog.set_level(logging.DEBUG)
    http_receiver.set_down(True)
    url = http_receiver.url.rstrip("/") + "/hooks/s3cr3t-token"
    code, answer = ask(request(url))
    assert code == 0 and answer["ok"] is False
    assert "500" in answer["error"], answer
    assert "s3cr3t-token" not in answer["error"] + caplog.text
    # apprise prints tokens at DEBUG: its logger stays at WARNING whatever the root says.
    assert logging.getLogger("apprise").getEffectiveLevel() >= logging.WARNING


def test_sender_runs_the_child_as_a_process(http_receiver, smtp_receiver):
    sender = AppriseSender(timeout=20)
    assert sender(TARGET, http_receiver.url, "[mail1] services", "all up — café", "success") == (
        True, None)
    assert http_receiver.messages[0]["title"] == "[mail1] services"
    assert http_receiver.messages[0]["message"] == "all up — café"  # UTF-8 across the pipe
    ok, error = sender(TARGET, smtp_receiver.mailto_url(), "[mail1] drbd", "StandAlone", "failure")
    assert (ok, error) == (True, None)
    assert smtp_receiver.wait_count(1, 10)


def test_the_sending_process_never_imports_apprise(http_receiver):
    """The point of the child: apprise's plugins (and requests) never load in the daemon."""
    script = (
        "import sys\n"
        "from watchdog.alerts.delivery import AppriseSender\n"
        "from watchdog.config import AlertTarget\n"
        f"ok = AppriseSender(20)(AlertTarget(name='hook', url='x'), {http_receiver.url!r},"
        " 't', 'b', 'info')\n"
        "print(ok, sorted(m for m in ('apprise', 'requests') if m in sys.modules))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = run_command([sys.executable, "-c", script], timeout=30, env=env)
    assert result.stdout.strip() == "(True, None) []", (result.stdout, result.stderr)
    assert len(http_receiver.messages) == 1


def test_the_children_stay_small_and_never_import_the_delivery_machinery():
    """The send child and the URL-check child import the redactor, not the daemon's side
    (delivery threads, outbox, config parsing), and no apprise until a send needs it."""
    script = (
        "import sys\n"
        "import watchdog.alerts.sendchild, watchdog.alerts.urlcheck\n"
        "heavy = ('watchdog.alerts.delivery', 'watchdog.alerts.outbox', 'watchdog.alerts.digest',\n"
        "         'watchdog.alerts.sender', 'watchdog.config', 'apprise')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = run_command([sys.executable, "-c", script], timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", result.stdout


def test_sender_reports_a_child_that_cannot_start_or_answer(tmp_path):
    missing = AppriseSender(timeout=5, python=str(tmp_path / "no-python"))
    ok, error = missing(TARGET, "json://127.0.0.1:9/", "t", "b", "info")
    assert not ok and error.startswith("send process: command not found"), error
    silent = tmp_path / "silent-python"
    silent.write_text("#!/bin/sh\necho 'Traceback: boom' >&2\nexit 1\n")
    silent.chmod(0o755)
    ok, error = AppriseSender(timeout=5, python=str(silent))(
        TARGET, "json://127.0.0.1:9/", "t", "b", "info")
    assert not ok and error == "send process exited 1 without an answer: Traceback: boom"


def test_a_hung_channel_is_killed_at_the_deadline():
    """A server that answers one header line every 0.3 s forever: no socket timeout ever
    fires inside apprise. The child is killed at send_timeout and its connection drops."""
    server = socket.socket()
    server.bind((LOOPBACK, 0))
    server.listen(1)
    port = server.getsockname()[1]
    closed = threading.Event()

    def drip() -> None:
        conn, _ = server.accept()
        conn.settimeout(0.3)
        try:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\n")
            while True:
                conn.sendall(b"X-Still-Thinking: yes\r\n")
                try:
                    if conn.recv(1) == b"":
                        break  # the peer closed: the child is gone
                except socket.timeout:
                    pass
        except OSError:
            pass
        finally:
            closed.set()
            conn.close()

    thread = threading.Thread(target=drip, daemon=True)
    thread.start()
    try:
        sender = AppriseSender(timeout=4)
        started = time.monotonic()
        ok, error = sender(TARGET, f"json://{LOOPBACK}:{port}/", "t", "b", "info")
        took = time.monotonic() - started
        assert not ok and error == "send process: timed out after 4s (killed)", error
        assert 4 <= took < 10, took
        assert closed.wait(5), "the killed child's connection stayed open"
    finally:
        server.close()
