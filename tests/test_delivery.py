"""Alert delivery through apprise to real receivers on loopback: routing, retries, outbox,
digest, restart after SIGKILL, expiry, url_file, secrets, --test-alert."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from conftest import ROOT

from lab.receivers import free_port
from watchdog.alerts import notification as nt
from watchdog.alerts.delivery import (
    Deliverer,
    build_digest,
    is_incident_url,
    plan_messages,
    send_test,
)
from watchdog.alerts.outbox import Outbox
from watchdog.config import AlertTarget, parse_config

WAIT = 15.0  # generous upper bound for "eventually"; tests end as soon as the event happens


def deliverer(cfg, tmp_path, **kwargs) -> Deliverer:
    kwargs.setdefault("round_max_wait", 0.2)
    d = Deliverer(cfg, str(tmp_path / "state"), **kwargs)
    d.start()
    return d


def wait_until(predicate, timeout=WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


# ---------------------------------------------------------------- real channels


def test_json_webhook_gets_title_body_and_type(
    tmp_path, http_receiver, alerts_config, make_notification
):
    cfg = alerts_config({"name": "hook", "url": http_receiver.url})
    d = deliverer(cfg, tmp_path)
    n = make_notification("drbd", body="DRBD r0 StandAlone (split brain?)", created=time.time())
    d.submit([n])
    assert http_receiver.wait_count(1, WAIT)
    d.stop(5)
    (message,) = http_receiver.messages
    assert message["title"] == "[mail1] drbd"  # no subject: the stable title
    assert message["message"] == "DRBD r0 StandAlone (split brain?)"
    assert message["type"] == "failure"
    status = d.status()["hook"]
    assert status["pending"] == 0 and status["sent"] == 1
    assert status["last_success"] is not None and status["last_error"] is None


def test_email_through_real_smtp(tmp_path, smtp_receiver, alerts_config, make_notification):
    cfg = alerts_config({"name": "mail", "url": smtp_receiver.mailto_url(to="ops@example.com")})
    d = deliverer(cfg, tmp_path)
    d.submit([make_notification("replay_lag", nt.SEV_WARNING, body="replay lag 412 s")])
    assert smtp_receiver.wait_count(1, WAIT)
    d.stop(5)
    (mail,) = smtp_receiver.messages
    assert mail.subject == "[mail1] replay_lag"
    assert "replay lag 412 s" in mail.body
    assert mail.rcpt_tos == ("ops@example.com",)


def test_routing_by_severity(tmp_path, alerts_config, make_notification):
    from lab.receivers import HttpReceiver

    with HttpReceiver() as pager, HttpReceiver() as chat:
        cfg = alerts_config(
            AlertTarget(name="pager", url=pager.url, severities=("critical",)),
            AlertTarget(name="chat", url=chat.url),
        )
        d = deliverer(cfg, tmp_path)
        steps = [
            make_notification("replay_lag", nt.SEV_WARNING),
            make_notification("drbd", nt.SEV_CRITICAL),
            make_notification("drbd", nt.SEV_RECOVERY, problem_severity=nt.SEV_CRITICAL),
        ]
        for count, (n, paged) in enumerate(zip(steps, (0, 1, 2)), 1):
            d.submit([n])  # one at a time, so each arrives as itself (no digest)
            assert chat.wait_count(count, WAIT)
            assert pager.wait_count(paged, WAIT)
        d.stop(5)
        assert [(m["title"], m["type"]) for m in pager.messages] == [
            ("[mail1] drbd", "failure"),
            ("[mail1] drbd", "success"),
        ]
        assert [m["type"] for m in chat.messages] == ["warning", "failure", "success"]


@pytest.mark.parametrize("outage", ["error", "close"])
def test_outage_then_back_every_alert_once_as_one_digest(
    outage, tmp_path, http_receiver, alerts_config, make_notification
):
    cfg = alerts_config({"name": "hook", "url": http_receiver.url})
    http_receiver.set_down(True, outage)
    d = deliverer(cfg, tmp_path)
    problem = make_notification("drbd", nt.SEV_CRITICAL, body="drbd StandAlone")
    lag = make_notification("replay_lag", nt.SEV_WARNING, body="replay lag 400 s")
    recovered = make_notification("drbd", nt.SEV_RECOVERY, body="drbd Connected again")
    d.submit([problem])
    assert http_receiver.wait_requests(lambda r: len(r) >= 2, WAIT)  # tried and retried
    d.submit([lag, recovered])
    # Once a digest of all three was refused, every later attempt carries all three.
    assert http_receiver.wait_requests(
        lambda requests: any(b"ha-watchdog digest" in r.body for r in requests), WAIT
    )
    assert d.outbox.count("hook") == 3

    http_receiver.set_down(False)
    assert http_receiver.wait_count(1, WAIT)
    d.stop(5)
    assert d.outbox.count("hook") == 0

    (digest,) = http_receiver.messages  # one message, not a flood and not twice
    assert digest["title"] == "[mail1] ha-watchdog digest"
    assert digest["type"] == "warning"  # drbd recovered, replay lag still open
    text = digest["message"]
    for body in ("drbd StandAlone", "replay lag 400 s", "drbd Connected again"):
        assert text.count(body) == 1
    assert "PROBLEM (critical)" in text and "RECOVERY (recovery)" in text

    # A restart on the same state dir, and the same notifications submitted again: nothing more.
    d2 = deliverer(cfg, tmp_path)
    d2.submit([problem, lag, recovered])
    d2.stop(5)
    assert len(http_receiver.messages) == 1
    assert d2.status()["hook"]["sent"] == 0


_VICTIM = textwrap.dedent(
    """
    import sys, time
    from watchdog.alerts import notification as nt
    from watchdog.alerts.delivery import Deliverer
    from watchdog.config import AlertsConfig, AlertTarget, Config, NodeConfig

    state_dir, url = sys.argv[1], sys.argv[2]
    cfg = Config(
        node=NodeConfig(name="mail1"),
        alerts=AlertsConfig(retries=50, retry_max_wait=0.05, send_timeout=5,
                            targets=(AlertTarget(name="hook", url=url),)),
    )
    d = Deliverer(cfg, state_dir, round_max_wait=0.2)
    d.start()
    items = []
    for i, check in enumerate(("drbd", "services")):
        items.append(nt.Notification(
            id=nt.make_id("mail1", check, i), kind=nt.PROBLEM, severity=nt.SEV_CRITICAL,
            notify_type=nt.TYPE_FAILURE, title=nt.title_for("mail1", check),
            body=check + " is down", node="mail1", created=time.time() + i, check=check))
    d.submit(items)
    print("queued", flush=True)
    time.sleep(600)
    """
)


def test_sigkill_with_a_full_outbox_then_restart_delivers_once(
    tmp_path, http_receiver, alerts_config
):
    state_dir = tmp_path / "state"
    http_receiver.set_down(True)
    victim = subprocess.Popen(
        [sys.executable, "-c", _VICTIM, str(state_dir), http_receiver.url],
        stdout=subprocess.PIPE,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    try:
        assert victim.stdout.readline().strip() == b"queued"
        assert http_receiver.wait_requests(lambda r: len(r) >= 3, WAIT)  # mid-retries
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait()
    assert http_receiver.messages == []
    on_disk = Outbox(str(state_dir / "outbox.json"))
    on_disk.load()
    assert [n.check for n in on_disk.pending("hook")] == ["drbd", "services"]

    http_receiver.set_down(False)
    cfg = alerts_config({"name": "hook", "url": http_receiver.url})
    d = Deliverer(cfg, str(state_dir), round_max_wait=0.2)
    d.start()
    assert http_receiver.wait_count(1, WAIT)
    d.stop(5)
    (digest,) = http_receiver.messages
    assert digest["title"] == "[mail1] ha-watchdog digest"
    assert digest["type"] == "failure"
    assert "drbd is down" in digest["message"] and "services is down" in digest["message"]
    assert d.outbox.count() == 0


def test_expired_items_are_dropped_with_one_log_line(
    tmp_path, http_receiver, alerts_config, make_notification, caplog
):
    caplog.set_level(logging.INFO, logger="watchdog.alerts")
    now = [1_700_000_000.0]
    cfg = alerts_config({"name": "hook", "url": http_receiver.url}, expire=3600.0)
    http_receiver.set_down(True)
    d = deliverer(cfg, tmp_path, clock=lambda: now[0])
    old = make_notification("drbd", created=now[0] - 10)
    d.submit([old])
    assert http_receiver.wait_requests(lambda r: len(r) >= 1, WAIT)
    now[0] += 7200  # two hours later, with the channel still down
    assert wait_until(lambda: d.outbox.count() == 0)
    d.stop(1)
    dropped = [r for r in caplog.records if "undelivered after" in r.getMessage()]
    assert len(dropped) == 1
    assert "[mail1] drbd" in dropped[0].getMessage() and "'hook'" in dropped[0].getMessage()
    assert dropped[0].levelno == logging.ERROR
    assert http_receiver.messages == []


def test_url_file_is_read_and_a_missing_one_fails_only_its_target(
    tmp_path, http_receiver, make_notification
):
    secret = tmp_path / "hook.url"
    secret.write_text(f"  {http_receiver.url}\n")
    secret.chmod(0o600)
    missing = tmp_path / "nope.url"
    cfg = parse_config(
        textwrap.dedent(
            f"""
            [node]
            name = "mail1"
            [alerts]
            retries = 1
            retry_max_wait = "0.05s"
            [[alerts.targets]]
            name = "from-file"
            url_file = "{secret}"
            [[alerts.targets]]
            name = "broken"
            url_file = "{missing}"
            """
        )
    )
    d = deliverer(cfg, tmp_path)
    d.submit([make_notification("services")])
    assert http_receiver.wait_count(1, WAIT)
    assert wait_until(lambda: d.status()["broken"]["last_error"] is not None)
    d.stop(0.5)
    status = d.status()
    assert status["from-file"]["pending"] == 0 and status["from-file"]["last_error"] is None
    assert status["broken"]["pending"] == 1
    assert "cannot read url_file" in status["broken"]["last_error"]
    assert http_receiver.messages[0]["title"] == "[mail1] services"


def test_secrets_never_reach_the_logs(tmp_path, http_receiver, make_notification, caplog):
    caplog.set_level(logging.DEBUG)
    token, slack_token, file_token = "S3cretHookToken42", "xoxbSlackS3cret77", "FileS3cretToken99"
    url_file = tmp_path / "url"
    url_file.write_text(f"{http_receiver.url}hook/{file_token}\n")
    from watchdog.config import AlertsConfig, Config, NodeConfig

    cfg = Config(
        node=NodeConfig(name="mail1"),
        alerts=AlertsConfig(
            retries=1,
            retry_max_wait=0.05,
            send_timeout=5,
            targets=(
                AlertTarget(name="hook", url=f"{http_receiver.url}hook/{token}?x-key={token}"),
                AlertTarget(name="slack", url=f"slack://{slack_token}"),  # invalid: apprise errors
                AlertTarget(name="file", url_file=str(url_file)),
            ),
        ),
    )
    http_receiver.set_down(True)
    d = deliverer(cfg, tmp_path)
    d.submit([make_notification("drbd")])
    assert wait_until(lambda: all(s["last_failure"] for s in d.status().values()))
    http_receiver.set_down(False)
    assert http_receiver.wait_count(2, WAIT)
    d.stop(0.5)
    results = send_test(cfg, "mail1")

    assert "'hook'" in caplog.text and "'slack'" in caplog.text  # logs name the targets
    everything = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    everything += repr(d.status()) + repr(results)
    for secret in (token, slack_token, file_token):
        assert secret not in everything


def test_send_test_reports_each_target(tmp_path, http_receiver, alerts_config):
    closed = f"json://127.0.0.1:{free_port()}/"
    cfg = alerts_config(
        {"name": "good", "url": http_receiver.url},
        {"name": "refused", "url": closed},
        {"name": "missing", "url_file": str(tmp_path / "absent")},
        AlertTarget(name="critical-only", url=http_receiver.url, severities=("critical",)),
    )
    results = send_test(cfg, "mail1")
    assert [(name, ok) for name, ok, _ in results] == [
        ("good", True),
        ("refused", False),
        ("missing", False),
        ("critical-only", True),  # a test goes to every target
    ]
    assert results[0][2] == "delivered"
    assert "cannot read url_file" in results[2][2]
    assert results[1][2]
    titles = [m["title"] for m in http_receiver.messages]
    assert titles == ["[mail1] ha-watchdog test"] * 2
    assert not os.path.exists(tmp_path / "state")  # no outbox involved


# ---------------------------------------------------------------- threads and deadlines


def test_submit_never_waits_for_a_hung_channel_and_stop_is_bounded(
    tmp_path, alerts_config, make_notification
):
    release = threading.Event()
    calls = []

    def hung_send(target, url, title, body, notify_type):
        calls.append(title)
        release.wait(30)
        return True, None

    cfg = alerts_config({"name": "hook", "url": "json://127.0.0.1:9/"}, send_timeout=30)
    d = deliverer(cfg, tmp_path, send=hung_send)
    d.submit([make_notification("drbd")])
    assert wait_until(lambda: calls)
    d.submit([make_notification("services")])  # returns although the channel hangs
    assert not release.is_set()
    assert d.outbox.count("hook") == 2

    started = time.monotonic()
    d.stop(0.5)
    assert time.monotonic() - started < 5  # bounded by its timeout, not by send_timeout
    release.set()
    again = Outbox(str(tmp_path / "state" / "outbox.json"))
    again.load()
    assert again.count("hook") == 2  # left for the next start


def test_stop_flushes_what_is_pending(tmp_path, http_receiver, alerts_config, make_notification):
    cfg = alerts_config({"name": "hook", "url": http_receiver.url})
    http_receiver.set_down(True)
    d = deliverer(cfg, tmp_path, round_max_wait=60.0)  # the next round would be far away
    d.submit([make_notification("drbd")])
    assert wait_until(lambda: d.status()["hook"]["last_failure"] is not None)
    http_receiver.set_down(False)
    d.stop(5)
    assert len(http_receiver.messages) == 1
    assert d.outbox.count() == 0


def test_retries_are_bounded_per_round(tmp_path, alerts_config, make_notification):
    calls = []

    def failing(target, url, title, body, notify_type):
        calls.append(time.monotonic())
        return False, "HTTP 503"

    cfg = alerts_config({"name": "hook", "url": "json://127.0.0.1:9/"}, retries=3)
    d = deliverer(cfg, tmp_path, send=failing, round_max_wait=60.0)
    d.submit([make_notification()])
    assert wait_until(lambda: d.status()["hook"]["consecutive_failures"] == 1)
    d.stop(0)
    assert len(calls) == 4  # first attempt + 3 retries, then the round gives up
    assert d.status()["hook"]["last_error"] == "HTTP 503"


# ---------------------------------------------------------------- incident services


def test_incident_targets_get_one_message_per_title_not_a_digest(
    tmp_path, alerts_config, make_notification
):
    sent = []

    def pagerduty(target, url, title, body, notify_type):
        sent.append((title, notify_type, body))
        return True, None

    cfg = alerts_config(
        {
            "name": "pd",
            "url": "pagerduty://integration@apikey?action=map",
            "severities": ("critical",),
        }
    )
    d = Deliverer(cfg, str(tmp_path / "state"), send=pagerduty)
    # A backlog, as after an outage (queued before the delivery threads run).
    d.submit(
        [
            make_notification("drbd", nt.SEV_CRITICAL, body="drbd down"),
            make_notification("drbd", nt.SEV_RECOVERY, problem_severity=nt.SEV_CRITICAL),
            make_notification("postgres_role", nt.SEV_CRITICAL, body="no primary"),
        ]
    )
    d.start()
    assert wait_until(lambda: d.outbox.count() == 0)
    d.stop(5)
    assert [(t, k) for t, k, _ in sent] == [
        ("[mail1] drbd", "success"),  # resolves the incident the PROBLEM would have opened
        ("[mail1] postgres_role", "failure"),
    ]
    assert "drbd down" in sent[0][2]  # the earlier fact is kept in the text


def test_pagerduty_map_action_is_supported_by_the_installed_apprise():
    import apprise

    from watchdog.alerts.pagerduty_compat import RESOLVES_FROM, installed_version

    apobj = apprise.Apprise()
    assert apobj.add("pagerduty://integration@apikey?action=map")
    (service,) = list(apobj)
    version = installed_version("apprise")
    if version is not None and version < RESOLVES_FROM:
        # Python 3.8's apprise 1.9.x: no action=map, every message a trigger; what
        # alerts.pagerduty_compat makes up for (tests/test_pagerduty_compat.py).
        assert sys.version_info < (3, 9)
        assert not hasattr(service, "action")
        assert service.event_action == "trigger"
    else:
        assert str(service.action) == "map"
    assert is_incident_url("pagerduty://integration@apikey?action=map")
    assert not is_incident_url("slack://a/b/c")


# ---------------------------------------------------------------- digest text (pure)


def test_digest_type_is_the_worst_open_severity(make_notification):
    warning = make_notification("replay_lag", nt.SEV_WARNING)
    critical = make_notification("drbd", nt.SEV_CRITICAL)
    recovered = make_notification("drbd", nt.SEV_RECOVERY)
    lag_ok = make_notification("replay_lag", nt.SEV_RECOVERY)
    info = make_notification("role", nt.SEV_INFO)
    assert build_digest("mail1", [warning, critical]).notify_type == "failure"
    assert build_digest("mail1", [warning, critical, recovered]).notify_type == "warning"
    assert build_digest("mail1", [warning, critical, recovered, lag_ok]).notify_type == "success"
    assert build_digest("mail1", [critical, recovered, info]).notify_type == "info"


def test_digest_lists_open_problems_first_and_keeps_every_fact(make_notification):
    problem = make_notification("drbd", nt.SEV_CRITICAL, body="drbd StandAlone\nmore detail")
    recovery = make_notification("drbd", nt.SEV_RECOVERY, body="drbd Connected")
    lag = make_notification("replay_lag", nt.SEV_WARNING, body="lag 400 s")
    digest = build_digest("mail1", [problem, recovery, lag])
    assert digest.title == "[mail1] ha-watchdog digest"
    assert set(digest.ids) == {problem.id, recovery.id, lag.id}
    lines = digest.body.splitlines()
    assert "3 notifications for 2 subject(s)" in lines[0]
    entries = [line for line in lines if line.startswith("* ")]
    assert entries[0].startswith("* [mail1] replay_lag: OPEN warning")
    assert entries[1].startswith("* [mail1] drbd: RESOLVED - RECOVERY (recovery)")
    assert any(
        "earlier: PROBLEM (critical)" in line and "drbd StandAlone" in line for line in lines
    )
    assert "more detail" not in digest.body  # one line per fact


def test_plan_sends_a_single_notification_as_itself(make_notification):
    n = make_notification("drbd", body="body text")
    (message,) = plan_messages("mail1", [n])
    assert (message.title, message.body, message.notify_type, message.ids) == (
        n.title,
        "body text",
        "failure",
        (n.id,),
    )
    assert not message.digest


def test_several_changes_in_one_cycle_are_separate_alerts_without_an_outage(
    tmp_path, http_receiver, alerts_config, make_notification
):
    """A digest is for a backlog after an outage; a healthy channel gets each alert."""
    cfg = alerts_config({"name": "hook", "url": http_receiver.url})
    d = deliverer(cfg, tmp_path)
    d.submit([make_notification("drbd"), make_notification("standbys")])
    assert http_receiver.wait_count(2, WAIT)
    d.stop(5)
    titles = sorted(m["title"] for m in http_receiver.messages)
    assert titles == ["[mail1] drbd", "[mail1] standbys"]
    assert not plan_messages("mail1", [make_notification("drbd")] * 2, backlog=False)[0].digest


# ---------------------------------------------------------------- counters and the daily report


def test_deliveries_counted_and_undelivered_reported_across_a_restart(
    tmp_path, http_receiver, alerts_config, make_notification
):
    """What metrics (deliveries by target and outcome, outbox age) and the daily report
    (alerts that failed to deliver) read from the deliverer."""
    now = [1_700_000_000.0]
    cfg = alerts_config({"name": "hook", "url": http_receiver.url}, expire=3600.0)
    http_receiver.set_down(True)
    d = deliverer(cfg, tmp_path, clock=lambda: now[0])
    d.submit([make_notification("drbd", created=now[0])])
    assert wait_until(lambda: d.deliveries().get(("hook", "failed"), 0) >= 2)
    assert d.outbox.oldest_queued() == now[0]
    (line,) = d.undelivered(now[0])
    assert line.startswith("target 'hook': ") and "failed delivery round(s)" in line
    assert "1 waiting in the outbox" in line and "last error:" in line

    now[0] += 7200  # still down two hours later: it expires, counted and remembered
    assert wait_until(lambda: d.deliveries().get(("hook", "expired")) == 1)
    d.stop(1)
    assert d.outbox.oldest_queued() is None

    http_receiver.set_down(False)
    d2 = deliverer(cfg, tmp_path, clock=lambda: now[0])  # a restart: counters start over
    assert d2.deliveries() == {}
    (dropped,) = d2.undelivered(now[0])
    assert dropped == (
        "target 'hook': [mail1] drbd (problem) dropped undelivered after 1h00m"
    )
    d2.submit([make_notification("services", created=now[0])])
    assert http_receiver.wait_count(1, WAIT)
    assert wait_until(lambda: d2.deliveries() == {("hook", "delivered"): 1})
    now[0] += 2 * 86400 + 60  # two days on: the dropped record is gone too
    d2.outbox.expire(now[0], cfg.alerts.expire)
    assert d2.undelivered(now[0]) == []
    d2.stop(1)


# ---------------------------------------------------------------- damaged entries (issue 11)


def test_a_malformed_outbox_entry_is_set_aside_and_the_others_go_out(
    tmp_path, http_receiver, alerts_config, make_notification, caplog
):
    """`"created": "yesterday"` or `"body": {}` used to crash every delivery round of
    the target, so the good alerts queued behind them waited until they expired."""
    import json

    state = tmp_path / "state"
    state.mkdir()
    good = make_notification("drbd", body="DRBD r0 StandAlone")
    yesterday = dict(make_notification("services").to_json(), created="yesterday")
    no_body = dict(make_notification("standbys").to_json(), body={})
    doc = {"version": 1, "targets": {"hook": {"delivered": {}, "pending": [
        {"queued": time.time(), "notification": n} for n in (yesterday, no_body, good.to_json())
    ]}}}
    (state / "outbox.json").write_text(json.dumps(doc))
    caplog.set_level(logging.ERROR, logger="watchdog.alerts.outbox")
    cfg = alerts_config({"name": "hook", "url": http_receiver.url})
    d = deliverer(cfg, tmp_path)
    try:
        assert http_receiver.wait_count(1, WAIT)
        assert wait_until(lambda: d.outbox.count() == 0)
    finally:
        d.stop(1)
    assert [m["title"] for m in http_receiver.messages] == ["[mail1] drbd"]
    assert "'created' is not a time" in caplog.text and "'body' is not a string" in caplog.text
    aside = [p for p in os.listdir(state) if p.startswith("outbox.json.rejected-")]
    assert len(aside) == 1 and len(json.loads((state / aside[0]).read_text())) == 2
    assert "2 damaged entries set aside" in d.take_damage()[0]


def test_url_file_that_is_a_fifo_or_dev_zero_fails_its_target_without_hanging(
    tmp_path, alerts_config, make_notification
):
    fifo = tmp_path / "hook.url"
    os.mkfifo(fifo)
    cfg = alerts_config(AlertTarget(name="fifo", url_file=str(fifo)),
                        AlertTarget(name="zero", url_file="/dev/zero"))
    results = {}

    def run():
        results.update({name: (ok, msg) for name, ok, msg in send_test(cfg, "mail1")})

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(WAIT)
    assert not thread.is_alive(), "--test-alert hung on a url_file"
    assert results["fifo"] == (False, f"cannot read url_file {fifo}: is a FIFO, not a regular file")
    assert results["zero"] == (
        False, "cannot read url_file /dev/zero: is a character device, not a regular file")
