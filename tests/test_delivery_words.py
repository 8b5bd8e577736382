"""Issue 14, part 3, on the delivery side (watchdog.alerts.delivery, sendchild): what a
channel receives. Subjects for chat and email, a dedup key PagerDuty resolves by, and a
late notification that says it is late. Real loopback receivers; apprise's real PagerDuty
plugin pointed at a loopback receiver. Kept apart from test_delivery.py to ease merging."""

from __future__ import annotations

import hashlib
import re
import time

import pytest

from watchdog.alerts import message, sendchild
from watchdog.alerts.delivery import (
    Deliverer,
    dedup_key,
    late_line,
    mark_late,
    plan_messages,
    wants_subjects,
)
from watchdog.alerts.history import read_history
from watchdog.alerts.message import Facts
from watchdog.model import Status

WAIT = 20.0
T = 1717416000.0


def facts(summary="replay lag 6m52s, 3.0 MiB not replayed"):
    return Facts("mail1", "replay_lag", "secondary", Status.CRITICAL, summary, {})


def test_chat_and_email_get_the_subject_as_title(tmp_path, http_receiver, alerts_config):
    cfg = alerts_config({"name": "hook", "url": http_receiver.url})
    d = Deliverer(cfg, str(tmp_path / "state"), round_max_wait=0.2)
    d.start()
    now = time.time()
    n = message.problem(facts(), Status.CRITICAL, now - 60, now, now - 60)
    d.submit([n])
    assert http_receiver.wait_count(1, WAIT)
    d.stop(5)
    (got,) = http_receiver.messages
    assert got["title"] == "[mail1] replay_lag CRITICAL: replay lag 6m52s, 3.0 MiB not replayed"
    assert "Delivered late" not in got["message"]
    (sent,) = read_history(str(tmp_path / "state" / "sent.json"))
    assert sent["target"] == "hook" and sent["title"] == got["title"]
    assert sent["headline"] == "PROBLEM CRITICAL: replay_lag on mail1 (secondary)"
    assert "url" not in sent and http_receiver.url not in str(sent)


def test_a_late_notification_says_when_it_was_queued(tmp_path, http_receiver, alerts_config):
    """Before: an alert delivered after an outage read as if it had just happened."""
    cfg = alerts_config({"name": "hook", "url": http_receiver.url}, retries=0)
    d = Deliverer(cfg, str(tmp_path / "state"), round_max_wait=0.3, late_after=1.0)
    http_receiver.set_down(True)
    d.start()
    queued = time.time()
    d.submit([message.problem(facts(), Status.CRITICAL, queued, queued, queued)])
    assert http_receiver.wait_requests(lambda r: len(r) >= 2, WAIT)  # failing rounds
    time.sleep(1.2)
    http_receiver.set_down(False)
    assert http_receiver.wait_count(1, WAIT)
    d.stop(5)
    (got,) = http_receiver.messages
    lines = got["message"].splitlines()
    assert lines[0] == "PROBLEM CRITICAL: replay_lag on mail1 (secondary)"  # headline stays first
    stamp = time.strftime("%H:%M:%S", time.gmtime(queued))
    assert re.match(rf"Delivered late: queued since {stamp} UTC, delivered \d\d:\d\d:\d\d UTC "
                    r"\(\d+(\.\d)?s later; this channel could not be reached until now\)\.$",
                    lines[1]), lines[1]


def test_late_line_formats():
    assert late_line(T - 180, T) == ("Delivered late: queued since 11:57:00 UTC, delivered "
                                     "12:00:00 UTC (3m00s later; this channel could not be "
                                     "reached until now).")
    assert "queued since 2024-06-02 23:00:00 UTC" in late_line(T - 13 * 3600, T)


def test_mark_late_leaves_prompt_and_digest_messages_alone(make_notification):
    n = make_notification(created=T - 30)
    (m,) = plan_messages("mail1", [n])
    assert mark_late(m, [n], T) == m
    old = make_notification(created=T - 600)
    (m,) = plan_messages("mail1", [old])
    assert "Delivered late: queued since 11:50:00 UTC" in mark_late(m, [old], T).body


def test_incident_schemes_keep_stable_titles_unless_we_set_their_key():
    assert wants_subjects("json://x/") and wants_subjects("mailto://a@b")
    assert wants_subjects("pagerduty://i@k?action=map")  # the key goes separately
    assert not wants_subjects("opsgenie://apikey")  # keys on the title: stays stable
    n = message.problem(facts(), Status.CRITICAL, T, T, T)
    (pd,) = plan_messages("mail1", [n], incident=True, subjects=True)
    (og,) = plan_messages("mail1", [n], incident=True, subjects=False)
    assert pd.title == n.subject and og.title == "[mail1] replay_lag"
    assert pd.dedup == og.dedup == dedup_key("[mail1] replay_lag")


# ---------------------------------------------------------------- PagerDuty, apprise's plugin


@pytest.fixture
def pagerduty(monkeypatch, http_receiver):
    """apprise's PagerDuty plugin, its Events API endpoint pointed at a loopback receiver."""
    plugin = pytest.importorskip("apprise.plugins.pagerduty")
    if not hasattr(plugin, "PagerDutyAction"):
        pytest.skip("this apprise's PagerDuty plugin has no actions (apprise < 2.1)")
    url = f"{http_receiver.http_url}/v2/enqueue"
    monkeypatch.setitem(plugin.PAGERDUTY_API_LOOKUP, "us", url)
    monkeypatch.setattr(plugin.NotifyPagerDuty, "request_rate_per_sec", 0, raising=False)
    return http_receiver


def _send(n, url, dedup):
    return sendchild.send(url, n.subject or n.title, n.body, n.notify_type, 10.0, dedup)


def test_pagerduty_resolves_the_incident_the_problem_opened(pagerduty):
    """Descriptive titles differ between PROBLEM and RECOVERY. Without our key apprise
    hashes the title, so the recovery would name another incident (reproduced first);
    with the key from the stable title it resolves the one the problem opened."""
    url = "pagerduty://integrationkey1@apikey12345?action=map&image=no"
    p = message.problem(facts(), Status.CRITICAL, T - 60, T, T - 60)
    r = message.recovery(facts(), T - 60, T, T + 1, Status.CRITICAL, "critical")
    assert p.subject != r.subject
    assert _send(p, url, None) == (True, None)
    assert _send(r, url, None) == (True, None)
    without = [m.get("dedup_key") for m in pagerduty.messages]
    assert without[0] != without[1]  # the failure: the incident would stay open

    pagerduty.clear()
    assert _send(p, url, dedup_key(p.title)) == (True, None)
    assert _send(r, url, dedup_key(r.title)) == (True, None)
    trigger, resolve = pagerduty.messages
    assert trigger["event_action"] == "trigger" and resolve["event_action"] == "resolve"
    assert trigger["dedup_key"] == resolve["dedup_key"]
    # The key of the versions before subjects (a hash of the title apprise saw): open
    # incidents survive the upgrade.
    assert trigger["dedup_key"] == hashlib.sha256(b"[mail1] replay_lag").hexdigest()
    assert trigger["payload"]["summary"].startswith(p.subject)


def test_pagerduty_url_with_its_own_dedup_wins(pagerduty):
    url = "pagerduty://integrationkey1@apikey12345?action=map&image=no&dedup=my-own"
    p = message.problem(facts(), Status.CRITICAL, T - 60, T, T - 60)
    assert _send(p, url, dedup_key(p.title)) == (True, None)
    (got,) = pagerduty.messages
    assert got["dedup_key"] == "my-own"
