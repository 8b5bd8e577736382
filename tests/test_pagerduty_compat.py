"""alerts.pagerduty_compat: PagerDuty incidents resolve on Python 3.8's apprise 1.9.x too.

The cross-version test sends the same PROBLEM / RECOVERY pair for the same URL through
whatever apprise this venv has, to a real HTTP receiver standing in for PagerDuty's Events
API, and expects the same requests on every version: on apprise 1.9.x (the 3.8 pass of
.ci/run) through adapt(), on apprise >= 2.1 through apprise's own plugin. The only thing
changed for that is the Events API URL: adapt() takes it as a parameter; apprise 2.x's
plugin reads it from its module's PAGERDUTY_API_LOOKUP, pointed at the receiver here.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest

from watchdog.alerts import pagerduty_compat as pdc

URL = "pagerduty://IKey123@AKey456/mail1/ha-watchdog?action=map&image=no"
TITLE = "[mail1] replay_lag"
KEY = hashlib.sha256(TITLE.encode("utf-8")).hexdigest()
OLD_APPRISE = (pdc.installed_version("apprise") or (0,)) < pdc.RESOLVES_FROM


@pytest.mark.parametrize(
    "query, expected",
    [
        ("", {"action": None, "dedup": None}),
        ("action=map", {"action": "map", "dedup": None}),
        ("action=M", {"action": "map", "dedup": None}),
        ("action=resolve&dedup=abc", {"action": "resolve", "dedup": "abc"}),
        ("action=t&dedup=%20k%20", {"action": "trigger", "dedup": "k"}),
    ],
)
def test_url_options(query, expected):
    assert pdc.url_options(f"pagerduty://a@b?{query}") == expected


def test_an_unknown_action_is_refused():
    with pytest.raises(ValueError, match="not one of trigger, map, resolve"):
        pdc.url_options("pagerduty://a@b?action=page")


def test_dedup_key_is_the_first_line_or_the_given_one():
    assert pdc.dedup_key(f"{TITLE}\r\nPROBLEM: lag 6m", None) == KEY
    assert pdc.dedup_key(f"{TITLE}\r\nRECOVERY", None) == KEY
    assert pdc.dedup_key("anything", "mine") == "mine"


def send_through_installed_apprise(url, endpoint, monkeypatch, title, body, notify_type):
    import apprise

    apobj = apprise.Apprise()
    assert apobj.add(url)
    (service,) = list(apobj)
    if pdc.needs_adapting(service):
        pdc.adapt(service, url, endpoint=endpoint)
    else:
        from apprise.plugins import pagerduty

        region = service.region_name
        monkeypatch.setitem(pagerduty.PAGERDUTY_API_LOOKUP, region, endpoint)
    kind = apprise.NotifyType
    return apobj.notify(title=title, body=body,
                        notify_type=kind(notify_type) if isinstance(kind, type) and hasattr(
                            kind, "__members__") else notify_type)


def test_problem_then_recovery_give_the_same_requests_on_every_apprise(
    http_receiver, monkeypatch
):
    endpoint = http_receiver.http_url + "/v2/enqueue"
    assert send_through_installed_apprise(URL, endpoint, monkeypatch, TITLE,
                                          "PROBLEM: replay lag 6m", "failure")
    assert send_through_installed_apprise(URL, endpoint, monkeypatch, TITLE,
                                          "RECOVERY: replay lag 0s", "success")
    assert http_receiver.wait_count(2, 10)
    trigger, resolve = http_receiver.messages
    assert trigger == {
        "routing_key": "IKey123",
        "payload": {
            "summary": f"{TITLE}\r\nPROBLEM: replay lag 6m",
            "severity": "critical",
            "source": "mail1",
            "component": "ha-watchdog",
        },
        "client": "Apprise",
        "event_action": "trigger",
        "dedup_key": KEY,
    }
    assert resolve == {"routing_key": "IKey123", "event_action": "resolve", "dedup_key": KEY}
    posted = [r for r in http_receiver.requests if r.method == "POST"]
    assert [r.path for r in posted] == ["/v2/enqueue", "/v2/enqueue"]
    assert all(r.headers.get("Authorization") == "Token token=AKey456" for r in posted)


def test_without_an_action_nothing_changes(http_receiver, monkeypatch):
    url = "pagerduty://IKey123@AKey456/mail1?image=no"
    if OLD_APPRISE:
        # Not adapted: apprise 1.9.x keeps its own send (a plain trigger, to PagerDuty
        # itself, so nothing is sent from here).
        import apprise

        apobj = apprise.Apprise()
        apobj.add(url)
        (service,) = list(apobj)
        own = service.send
        pdc.adapt(service, url, endpoint=http_receiver.http_url)
        assert service.send == own
        return
    endpoint = http_receiver.http_url + "/v2/enqueue"
    assert send_through_installed_apprise(url, endpoint, monkeypatch, TITLE, "WARNING: x",
                                          "warning")
    assert http_receiver.wait_count(1, 10)
    (event,) = http_receiver.messages
    assert event["event_action"] == "trigger" and "dedup_key" not in event
    assert event["payload"]["severity"] == "warning"


@pytest.mark.skipif(not OLD_APPRISE, reason="what apprise < 2.1 does by itself")
def test_apprise_19_alone_sends_the_recovery_as_a_new_trigger(http_receiver, monkeypatch):
    # The failure adapt() exists for, reproduced with apprise 1.9.x's own plugin (only its
    # Events API URL pointed at the receiver): no dedup key, and the RECOVERY triggers.
    import apprise
    from apprise.plugins import pagerduty

    apobj = apprise.Apprise()
    assert apobj.add(URL)
    (service,) = list(apobj)
    monkeypatch.setitem(pagerduty.PAGERDUTY_API_LOOKUP, service.region_name,
                        http_receiver.http_url + "/v2/enqueue")
    assert apobj.notify(title=TITLE, body="PROBLEM", notify_type="failure")
    assert apobj.notify(title=TITLE, body="RECOVERY", notify_type="success")
    assert http_receiver.wait_count(2, 10)
    trigger, recovery = http_receiver.messages
    assert trigger["event_action"] == recovery["event_action"] == "trigger"
    assert "dedup_key" not in trigger and "dedup_key" not in recovery
    assert recovery["payload"]["severity"] == "info"


def test_a_rejected_event_fails_the_send_with_pagerdutys_status(http_receiver, monkeypatch):
    http_receiver.set_down(True)
    endpoint = http_receiver.http_url + "/v2/enqueue"
    assert not send_through_installed_apprise(URL, endpoint, monkeypatch, TITLE, "PROBLEM",
                                              "failure")


@pytest.mark.skipif(not OLD_APPRISE, reason="apprise >= 2.1 resolves by itself")
def test_the_send_child_adapts_an_old_apprise(tmp_path):
    # The child's own path (sendchild.send) on apprise 1.9.x: a bad action is this send's
    # reason, without the keys; a good one is adapted (checked in-process: the child
    # would post to PagerDuty itself).
    request = {"url": "pagerduty://IKey123@AKey456?action=page", "title": TITLE,
               "body": "PROBLEM", "notify_type": "failure", "timeout": 5}
    child = subprocess.run([sys.executable, "-m", "watchdog.alerts.sendchild"],
                           input=json.dumps(request), capture_output=True, text=True,
                           timeout=60)
    answer = json.loads(child.stdout.strip().splitlines()[-1])
    assert answer["ok"] is False and "not one of trigger, map, resolve" in answer["error"]
    assert "AKey456" not in child.stdout + child.stderr
    import apprise

    apobj = apprise.Apprise()
    apobj.add(URL)
    (service,) = list(apobj)
    assert pdc.needs_adapting(service)
    pdc.adapt(service, URL)
    assert service.send.__qualname__.startswith("_sender")
