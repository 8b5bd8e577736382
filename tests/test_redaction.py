"""No DSN password in any text: the shared redaction rules, the real probe, `--once`, and a
real daemon's alerts, log and engine.json. Addresses stay readable."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.drbdstate import DrbdStateFile
from lab.node import NodeDaemon, node_sections
from watchdog.alerts.delivery import redact, register_secret
from watchdog.alerts.heartbeat import scrub as heartbeat_scrub
from watchdog.config import PostgresConfig
from watchdog.probes.postgres import probe_postgres
from watchdog.redaction import dsn_secrets, is_address, scrub, scrub_dsn, url_secrets

# dsn, the secret fragments that must never show, what libpq is expected to complain about
DSN_FORMS = [
    ("postgresql://x:S3CRET%pw@127.0.0.1:1/db", ["S3CRET%pw", "S3CRET"],
     "invalid percent-encoded token"),
    ("postgres://x:S3CRETpass@127.0.0.1:1/db", ["S3CRETpass"], "127.0.0.1"),
    ("postgresql://x:S3CRET%20pw@127.0.0.1:1/db", ["S3CRET%20pw", "S3CRET pw"], "127.0.0.1"),
    ("postgresql://x@127.0.0.1:1/db?password=S3CRET%zz", ["S3CRET%zz", "S3CRET"],
     "invalid percent-encoded token"),
    ("postgresql://x@127.0.0.1:1/db?password=S3CRET=pw", ["S3CRET=pw", "S3CRET"],
     "extra key/value separator"),
    ("postgresql://x@127.0.0.1:1/db?sslmode=disable&password=S3CRETpass", ["S3CRETpass"],
     "127.0.0.1"),
    ("password=S3CRET pw host=127.0.0.1 port=1", ["S3CRET", '"pw"'], 'missing "="'),
    ("host=127.0.0.1 port=1 password=S3CRET pw=x", ["S3CRET", '"pw"'],
     "invalid connection option"),
    ("host=127.0.0.1 port=1 user=x password='S3 CRET\\'s pw'", ["S3 CRET", "CRET's"],
     "127.0.0.1"),
    ("host=127.0.0.1 port=1 password = 'S3CRET \"pw\"' dbname=x", ["S3CRET", '"pw"'],
     "127.0.0.1"),
    ("host=127.0.0.1 port=1 password='S3CRET unterminated", ["S3CRET"], "quoted string"),
    ("host=127.0.0.1 port=1 sslpassword=S3CRETkey passfile=/etc/ha-watchdog/pgpass",
     ["S3CRETkey"], "127.0.0.1"),
]  # fmt: skip


@pytest.mark.parametrize("dsn,secrets,said", DSN_FORMS, ids=[str(i) for i in range(len(DSN_FORMS))])
def test_the_real_probe_never_quotes_a_dsn_secret(dsn, secrets, said):
    snapshot = probe_postgres(PostgresConfig(dsn=dsn, connect_timeout=2.0, query_timeout=2.0))
    assert snapshot.error, snapshot
    assert said in snapshot.error  # the reason itself survives
    for secret in secrets:
        assert secret not in snapshot.error, snapshot.error


def test_addresses_and_passfile_paths_are_not_secrets():
    dsn = "host=db.example.com port=5432 passfile=/etc/ha-watchdog/pgpass password=S3CRETpass"
    found = dsn_secrets(dsn)
    assert "S3CRETpass" in found
    assert found == {"S3CRETpass", dsn}  # not the host, not the passfile path
    text = 'connection to server at "db.example.com" (10.0.0.5), port 5432 failed: S3CRETpass'
    assert scrub_dsn(text, dsn) == (
        'connection to server at "db.example.com" (10.0.0.5), port 5432 failed: ***'
    )
    assert dsn_secrets("host=127.0.0.1 port=5432 user=watchdog") == set()
    assert dsn_secrets("") == set()


def test_short_fragments_are_masked_as_words_only():
    assert scrub('missing "=" after "pw" in a pwned string', {"pw"}) == (
        'missing "=" after "***" in a pwned string'
    )


def test_url_parts_that_are_addresses_are_kept():
    url = "json://127.0.0.1:8080/hook/T0KEN-abcdef?secret=query-value-1"
    parts = url_secrets(url)
    assert {"T0KEN-abcdef", "query-value-1"} <= parts
    assert "127.0.0.1" not in parts
    assert is_address("127.0.0.1") and is_address("[::1]:80") and is_address("hooks.slack.com")
    assert not is_address("T1JJ3T3L2") and not is_address("A1BRTD4JD")
    # Slack keeps a token in the host position: it stays secret
    assert "T1JJ3T3L2xx" in url_secrets("slack://T1JJ3T3L2xx/A1BRTD4JDyy/TIiajkdnlazkcOXrIdevi7FQ")


def test_a_url_password_is_secret_at_any_length():
    parts = url_secrets("mailtos://ops:pw%21@smtp.example.com:587?to=ops@example.com")
    assert {"pw%21", "pw!"} <= parts
    assert "smtp.example.com" not in parts
    assert scrub("auth as ops with pw! refused", parts) == "auth as ops with *** refused"


def test_alert_redactor_scrubs_tokens_not_addresses():
    register_secret("json://127.0.0.1:8080/hook/T0KEN-zyxwvu")
    text = "send to 127.0.0.1:8080 failed for /hook/T0KEN-zyxwvu: refused"
    assert redact(text) == "send to 127.0.0.1:8080 failed for /hook/***: refused"


def test_heartbeat_scrub_keeps_the_host():
    url = "https://hc-ping.example.com/5a3c9d1e-key"
    assert heartbeat_scrub("hc-ping.example.com said 5a3c9d1e-key", url) == (
        "hc-ping.example.com said ***"
    )


# ---------------------------------------------------------------- end to end

SECRET_DSN = "postgresql://watchdog:S3CRET%pw@127.0.0.1:1/postgres"


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "watchdog", *args], capture_output=True, text=True, timeout=60
    )


def test_once_json_and_table_never_show_the_password(tmp_path):
    work = tmp_path / "n"
    node = NodeDaemon("p1", str(work), _sections(work, SECRET_DSN))
    for extra in (["--json"], []):
        result = _cli("--config", node.config_path, "--once", *extra)
        said = " ".join((result.stdout + result.stderr).split())  # the table wraps
        assert "invalid percent-encoded token" in said and "***" in said
        assert "S3CRET" not in said


def _sections(work: Path, dsn: str, targets=()) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    drbd = DrbdStateFile(str(work / "proc_drbd"))
    drbd.primary()
    return node_sections(
        "p1",
        str(work / "state"),
        drbd.path,
        dsn,
        targets=list(targets),
        overrides={"postgres_role": {"for": "0s"}},
    )


def test_daemon_alert_log_and_engine_state_never_show_the_password(tmp_path, http_receiver):
    work = tmp_path / "p1"
    sections = _sections(work, SECRET_DSN, [{"name": "hook", "url": http_receiver.url}])
    node = NodeDaemon("p1", str(work), sections).start()
    try:
        assert http_receiver.wait_count(1, 30), "\n".join(node.log()[-30:])
        deadline = time.monotonic() + 20
        state = work / "state" / "engine.json"
        while "invalid percent-encoded" not in (state.read_text() if state.exists() else ""):
            assert time.monotonic() < deadline, "\n".join(node.log()[-30:])
            time.sleep(0.2)
    finally:
        node.stop()
    bodies = json.dumps(http_receiver.messages)
    assert "postgres_role" in bodies and "invalid percent-encoded token" in bodies
    everything = bodies + "\n".join(node.log()) + state.read_text()
    assert "S3CRET" not in everything
