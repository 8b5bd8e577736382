"""The loopback receivers themselves: what they record and how they fake an outage."""

from __future__ import annotations

import http.client
import json
import smtplib
from email.message import EmailMessage

import pytest

from lab.receivers import HttpReceiver, SmtpReceiver


def post(receiver: HttpReceiver, path: str, body: bytes) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", receiver.port, timeout=5)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        return conn.getresponse().status
    finally:
        conn.close()


def test_http_receiver_records_json_posts_and_calls_back():
    seen = []
    with HttpReceiver(on_message=seen.append) as rx:
        assert rx.url == f"json://127.0.0.1:{rx.port}/"
        assert post(rx, "/", json.dumps({"title": "t", "message": "m"}).encode()) == 200
        assert post(rx, "/hb", b"plain text heartbeat") == 200
        assert rx.messages == [{"title": "t", "message": "m"}]
        assert seen == rx.messages
        assert [(r.method, r.path, r.accepted) for r in rx.requests] == [
            ("POST", "/", True),
            ("POST", "/hb", True),
        ]


def test_http_receiver_outage_modes():
    with HttpReceiver() as rx:
        rx.set_down(True)
        assert post(rx, "/", b"{}") == 500
        rx.set_down(True, "close")
        with pytest.raises((http.client.HTTPException, ConnectionError)):
            post(rx, "/", b"{}")
        rx.set_down(False)
        assert post(rx, "/", b'{"ok": 1}') == 200
        assert rx.rejected == 2
        assert rx.messages == [{"ok": 1}]
        assert rx.wait_count(1, 0)
        assert not rx.wait_count(2, 0.05)


def test_smtp_receiver_records_mail_and_refuses_when_down():
    with SmtpReceiver() as rx:
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = "a@example.com", "b@example.com", "hello"
        msg.set_content("body text")
        with smtplib.SMTP("127.0.0.1", rx.port, timeout=5) as client:
            client.send_message(msg)
        assert rx.wait_count(1, 5)
        (mail,) = rx.messages
        assert (mail.subject, mail.body.strip(), mail.rcpt_tos) == (
            "hello",
            "body text",
            ("b@example.com",),
        )
        rx.set_down(True)
        with smtplib.SMTP("127.0.0.1", rx.port, timeout=5) as client, pytest.raises(
            smtplib.SMTPDataError
        ):
            client.send_message(msg)
        assert len(rx.messages) == 1
        assert rx.mailto_url(to="ops@example.com").startswith(f"mailto://127.0.0.1:{rx.port}/")
