"""The README's Prometheus rules and Alertmanager snippet: valid, and the key alerts fire
when they should (promtool/amtool when installed), and its metric table matches the code."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import List

import pytest

from watchdog.metrics import MetricsView, families
from watchdog.model import (
    BACKUP_LOG,
    DRBD,
    REPLAY_LAG,
    STANDBYS,
    STORAGE,
    WAL,
    CheckResult,
    Status,
)

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()

needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool not installed (Debian package `prometheus`)")
needs_amtool = pytest.mark.skipif(
    shutil.which("amtool") is None,
    reason="amtool not installed (Debian package `prometheus-alertmanager`)")

# promtool unit tests against the README's rules (rules.yml next to this file).
RULE_TESTS = """\
rule_files: [rules.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      # mail1's daemon hangs after 5m (its last cycle stays at 300 s); mail2 keeps cycling.
      - series: 'ha_watchdog_last_cycle_timestamp_seconds{cluster="mail-a",node="mail1"}'
        values: '0+60x5 300x15'
      - series: 'ha_watchdog_last_cycle_timestamp_seconds{cluster="mail-a",node="mail2"}'
        values: '0+60x20'
    alert_rule_test:
      - {eval_time: 5m, alertname: HaWatchdogStale, exp_alerts: []}
      - {eval_time: 9m, alertname: HaWatchdogStale, exp_alerts: []}  # pending: 240 s, for 1m
      - eval_time: 10m
        alertname: HaWatchdogStale
        exp_alerts:
          - exp_labels: {service: ha-watchdog, severity: critical, cluster: mail-a, node: mail1}
            exp_annotations:
              summary: "ha-watchdog on mail1 has completed no cycle for 5m 0s"
      - eval_time: 20m
        alertname: HaWatchdogStale
        exp_alerts:
          - exp_labels: {service: ha-watchdog, severity: critical, cluster: mail-a, node: mail1}
            exp_annotations:
              summary: "ha-watchdog on mail1 has completed no cycle for 15m 0s"

  - interval: 1m
    input_series:
      # mail-a: mail2 is promoted too at 3m (split brain); mail-b: healthy; mail-c: no primary.
      - {series: 'ha_watchdog_role{cluster="mail-a",node="mail1",role="primary"}', values: '1x10'}
      - {series: 'ha_watchdog_role{cluster="mail-a",node="mail2",role="primary"}',
         values: '0 0 0 1x7'}
      - {series: 'ha_watchdog_role{cluster="mail-b",node="mail3",role="primary"}', values: '1x10'}
      - {series: 'ha_watchdog_role{cluster="mail-b",node="mail4",role="primary"}', values: '0x10'}
      - {series: 'ha_watchdog_role{cluster="mail-c",node="mail5",role="primary"}', values: '0x10'}
      - {series: 'ha_watchdog_role{cluster="mail-c",node="mail6",role="primary"}', values: '0x10'}
    alert_rule_test:
      - eval_time: 2m
        alertname: HaWatchdogNotOnePrimary
        exp_alerts:
          - exp_labels: {service: ha-watchdog, severity: critical, cluster: mail-c}
            exp_annotations:
              summary: "mail-c: 0 primaries (2: split brain; 0: nothing serves)"
      - eval_time: 6m
        alertname: HaWatchdogNotOnePrimary
        exp_alerts:
          - exp_labels: {service: ha-watchdog, severity: critical, cluster: mail-a}
            exp_annotations:
              summary: "mail-a: 2 primaries (2: split brain; 0: nothing serves)"
          - exp_labels: {service: ha-watchdog, severity: critical, cluster: mail-c}
            exp_annotations:
              summary: "mail-c: 0 primaries (2: split brain; 0: nothing serves)"

  - interval: 1m
    input_series:
      # Both nodes' services check is confirmed critical; mail1 is in maintenance.
      - series: 'ha_watchdog_check_confirmed_status{cluster="mail-a",node="mail1",check="services"}'
        values: '2x5'
      - series: 'ha_watchdog_check_confirmed_status{cluster="mail-a",node="mail2",check="services"}'
        values: '2x5'
      - {series: 'ha_watchdog_maintenance_active{cluster="mail-a",node="mail1"}', values: '1x5'}
      - {series: 'ha_watchdog_maintenance_active{cluster="mail-a",node="mail2"}', values: '0x5'}
    alert_rule_test:
      - eval_time: 1m
        alertname: HaWatchdogCheckCritical
        exp_alerts:
          - exp_labels: {service: ha-watchdog, severity: critical, cluster: mail-a, node: mail2,
                         check: services}
            exp_annotations:
              summary: "mail2: services is CRITICAL (see ha-watchdog --once)"
"""


def yaml_block(first_line: str) -> str:
    """The README's one ```yaml block whose first line is `first_line`."""
    blocks = re.findall(r"^```yaml\n(.*?)^```$", README, flags=re.S | re.M)
    found = [b for b in blocks if b.startswith(first_line + "\n")]
    assert len(found) == 1, f"expected one ```yaml block starting with {first_line!r}"
    return found[0]


def run(argv: List[str], cwd: Path) -> str:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


def test_metric_table_lists_exactly_what_the_code_exports():
    section = README.split("## Metrics (Prometheus)", 1)[1].split("\n## ", 1)[0]
    documented = re.findall(r"^\| `(ha_watchdog_\w+)` \|", section, flags=re.M)
    drbd = {"resources": [{"name": "r0", "cstate": "Connected", "role": "Primary",
                           "peer_role": "Secondary", "disk": "UpToDate", "peer_disk": "UpToDate"}]}
    checks = [CheckResult(DRBD, Status.OK, "x", drbd),
              CheckResult(STANDBYS, Status.OK, "x", {"streaming": 1}),
              CheckResult(REPLAY_LAG, Status.OK, "x", {"lag_seconds": 0.0, "lag_bytes": 0}),
              CheckResult(STORAGE, Status.OK, "x", {"filesystems": [
                  {"path": "/", "size_bytes": 9, "free_bytes": 5, "inodes": 9, "free_inodes": 5,
                   "full_in_seconds": 60.0, "inodes_full_in_seconds": 90.0}]}),
              CheckResult(WAL, Status.OK, "x", {
                  "slots": [{"name": "standby1", "retained_bytes": 0, "active": True}],
                  "archiver": {"failed_count": 0, "last_archived_age": 1.0},
                  "ready_count": 0, "waldir_bytes": 1}),
              CheckResult(BACKUP_LOG, Status.OK, "x", {"age_seconds": 60.0, "outcome": "success"})]
    everything = MetricsView(node="n", version="v", role="primary", checks=checks,
                             confirmed={"drbd": "ok"}, deliveries={("t", "delivered"): 1},
                             maintenance_active=True, maintenance_until=1.0)
    assert documented == [f.sample_name for f in families(everything)]
    used = set(re.findall(r"\bha_watchdog_\w+", yaml_block("groups:")))
    assert used <= set(documented)


@needs_promtool
def test_promtool_accepts_the_rules(tmp_path: Path):
    (tmp_path / "rules.yml").write_text(yaml_block("groups:"))
    output = run(["promtool", "check", "rules", "rules.yml"], tmp_path)
    assert "SUCCESS: 9 rules found" in output


@needs_promtool
def test_promtool_rule_unit_tests(tmp_path: Path):
    """Stale fires only for the node whose last cycle stops advancing; not exactly one
    primary fires for two and for none; a confirmed critical is held by maintenance."""
    (tmp_path / "rules.yml").write_text(yaml_block("groups:"))
    (tmp_path / "rules_test.yml").write_text(RULE_TESTS)
    assert "SUCCESS" in run(["promtool", "test", "rules", "rules_test.yml"], tmp_path)


@needs_amtool
def test_amtool_accepts_the_alertmanager_snippet(tmp_path: Path):
    snippet = yaml_block("route:")
    # The snippet names its receivers; a whole config must define them (here: no integration).
    receivers = sorted(set(re.findall(r"receiver: (\S+)", snippet)))
    assert receivers == ["dba-chat", "dba-pager", "default"]
    config = snippet + "receivers:\n" + "".join(f"  - name: {r}\n" for r in receivers)
    (tmp_path / "alertmanager.yml").write_text(config)
    output = run(["amtool", "check-config", "alertmanager.yml"], tmp_path)
    assert "SUCCESS" in output
    assert " - 1 inhibit rules" in output
