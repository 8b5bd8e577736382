"""The heartbeat (dead man's switch) ping, against a real HTTP server on loopback."""

from __future__ import annotations

import logging
import threading

from lab.receivers import free_port
from watchdog.alerts.heartbeat import Heartbeat, ping_url, scrub
from watchdog.config import HeartbeatConfig

WAIT = 10.0


def test_good_cycle_posts_the_url_and_a_failed_one_posts_url_fail(http_receiver):
    hb = Heartbeat(HeartbeatConfig(url=f"{http_receiver.http_url}/ping/abc123", timeout=5))
    hb.ping(True, "mail1 primary ok: drbd=ok")
    assert hb.wait_idle(WAIT)
    hb.ping(False, "mail1 primary: cycle error: probe crashed")
    assert hb.wait_idle(WAIT)
    hb.close()
    requests = http_receiver.requests
    assert [(r.method, r.path) for r in requests] == [
        ("POST", "/ping/abc123"),
        ("POST", "/ping/abc123/fail"),
    ]
    assert requests[0].body == b"mail1 primary ok: drbd=ok"
    assert hb.last_ok is True and hb.last_error is None


def test_ping_url_keeps_the_query():
    assert ping_url("https://hc.example.com/p/key?rid=1", False) == (
        "https://hc.example.com/p/key/fail?rid=1"
    )
    assert ping_url("https://hc.example.com/p/key/", False) == "https://hc.example.com/p/key/fail"
    assert ping_url("https://hc.example.com/p/key", True) == "https://hc.example.com/p/key"


def test_no_url_means_no_thread_and_no_request():
    hb = Heartbeat(HeartbeatConfig())
    assert not hb.enabled
    hb.ping(True, "ok")
    assert hb.wait_idle(0)
    assert hb.sent == 0
    assert hb.ping_now(True, "ok") == (False, "no heartbeat url configured")


def test_failures_never_raise_and_never_log_the_url(http_receiver, caplog):
    caplog.set_level(logging.DEBUG, logger="watchdog.alerts.heartbeat")
    key = "0f6cb0a5-9b55-4a3e-8d1f-secretpingkey"
    refused = Heartbeat(HeartbeatConfig(url=f"http://127.0.0.1:{free_port()}/{key}", timeout=2))
    refused.ping(True, "ok")
    assert refused.wait_idle(WAIT)
    assert refused.last_ok is False and "cannot connect" in refused.last_error

    http_receiver.set_down(True)
    erroring = Heartbeat(HeartbeatConfig(url=f"{http_receiver.http_url}/{key}", timeout=2))
    erroring.ping(True, "ok")
    assert erroring.wait_idle(WAIT)
    erroring.ping(True, "ok again")
    assert erroring.wait_idle(WAIT)
    assert erroring.last_error == "HTTP 500"

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2  # one per heartbeat: repeats go to debug
    assert key not in caplog.text and http_receiver.http_url not in caplog.text

    http_receiver.set_down(False)
    erroring.ping(True, "back")
    assert erroring.wait_idle(WAIT)
    assert erroring.last_ok is True
    assert "pings go through again" in caplog.text


def test_pings_that_pile_up_collapse_to_the_latest():
    gate = threading.Event()
    bodies = []

    def slow_post(url, body, timeout):
        gate.wait(10)
        bodies.append(body)
        return True, None

    hb = Heartbeat(HeartbeatConfig(url="https://hc.example.com/key", timeout=1), post=slow_post)
    for cycle in range(5):
        hb.ping(True, f"cycle {cycle}")  # returns at once although the first is stuck
    gate.set()
    assert hb.wait_idle(WAIT)
    assert bodies[-1] == b"cycle 4"
    assert len(bodies) <= 2  # the one in flight, then only the latest


def test_ping_now_is_synchronous(http_receiver):
    hb = Heartbeat(HeartbeatConfig(url=f"{http_receiver.http_url}/k", timeout=5))
    assert hb.ping_now(False, "failed") == (True, None)
    assert [r.path for r in http_receiver.requests] == ["/k/fail"]


def test_a_raising_post_is_contained():
    def broken(url, body, timeout):
        raise RuntimeError(f"boom at {url}")

    hb = Heartbeat(
        HeartbeatConfig(url="https://hc.example.com/secretkey42", timeout=1), post=broken
    )
    ok, error = hb.ping_now(True, "x")
    assert ok is False
    assert "secretkey42" not in error and "boom" in error


def test_scrub_removes_the_url_and_its_key():
    url = "https://hc-ping.com/5a3c9d1e-key"
    assert scrub(f"failed {url}/fail: 5a3c9d1e-key", url) == "failed ***/fail: ***"
