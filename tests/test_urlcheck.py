"""apprise URL checks in a child process (watchdog.alerts.urlcheck): the protocol, and no
URL in what it answers. The real child, the real apprise."""

from __future__ import annotations

import json
import subprocess
import sys


def ask(payload: bytes) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "watchdog.alerts.urlcheck"], input=payload,
                          capture_output=True, timeout=120)


def test_known_unknown_and_invalid_urls():
    urls = ["json://127.0.0.1:9/x", "nosuch://SeCrEtToKeN/x", "mailto://", "pagerduty://",
            "json://127.0.0.1:9/a json://127.0.0.1:9/b"]
    result = ask(json.dumps({"urls": urls}).encode())
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    r = answer["results"]
    assert [x["known"] for x in r] == [True, False, True, True, True]
    assert [x["valid"] for x in r] == [True, False, False, False, False]
    assert "several URLs" in r[4]["error"]
    assert b"SeCrEtToKeN" not in result.stdout + result.stderr
    assert answer["apprise"]


def test_a_bad_request_is_answered():
    result = ask(b"not json")
    assert result.returncode == 2 and json.loads(result.stdout)["error"].startswith("bad request")
