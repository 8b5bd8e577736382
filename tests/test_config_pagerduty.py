"""config.pagerduty_warnings: a PagerDuty target whose incidents would never resolve.

Without `?action=map` every message to PagerDuty is a new trigger, RECOVERY included, on
every apprise (1.9.x on Python 3.8 through alerts.pagerduty_compat, 2.1+ by itself).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from watchdog.alerts.pagerduty_compat import installed_version
from watchdog.config import pagerduty_warnings, parse_config

PD_MAP = "pagerduty://IntegrationKey@ApiKey?action=map"


def config_with(*targets: str):
    text = "".join(
        f'[[alerts.targets]]\nname = "t{i}"\n{line}\nseverities = ["critical"]\n'
        for i, line in enumerate(targets)
    )
    return parse_config(text, "c.toml")


@pytest.mark.parametrize(
    "url",
    [
        "pagerduty://IntegrationKey@ApiKey",
        "PagerDuty://IntegrationKey@ApiKey/src?region=eu",
        "pagerduty://IntegrationKey@ApiKey?action=trigger",
        "pagerduty://IntegrationKey@ApiKey?action=t",
    ],
)
def test_warns_when_incidents_cannot_resolve(url):
    found = pagerduty_warnings(config_with(f'url = "{url}"', 'url = "json://127.0.0.1:9/"'))
    assert len(found) == 1
    assert found[0].startswith("target 't0' is PagerDuty without ?action=map")
    assert "no incident ever resolves" in found[0]
    assert "IntegrationKey@ApiKey?" in found[0]  # the placeholder example, not the URL
    assert "src" not in found[0] and "region" not in found[0]


@pytest.mark.parametrize("url", [PD_MAP, PD_MAP.replace("map", "m"),
                                 "pagerduty://a@b?action=map&dedup=x", "json://127.0.0.1:9/",
                                 "mailto://a@b.c"])
def test_silent_when_it_resolves_or_is_no_pagerduty(url):
    assert pagerduty_warnings(config_with(f'url = "{url}"')) == ()


def test_an_unknown_action_is_named():
    (found,) = pagerduty_warnings(config_with('url = "pagerduty://SecretK@SecretA?action=page"'))
    assert "'t0'" in found and "'page' is not one of trigger, map, resolve" in found
    assert "Secret" not in found


def test_url_file_is_read_and_an_unreadable_one_is_left_to_the_sender(tmp_path):
    plain = tmp_path / "pd.url"
    plain.write_text("pagerduty://SecretK@SecretA\n")
    mapped = tmp_path / "pd-map.url"
    mapped.write_text(PD_MAP + "\n")
    cfg = config_with(f'url_file = "{plain}"', f'url_file = "{mapped}"',
                      f'url_file = "{tmp_path / "missing.url"}"')
    (found,) = pagerduty_warnings(cfg)
    assert "'t0'" in found and "Secret" not in found


def test_a_fifo_as_url_file_does_not_block_the_load(tmp_path):
    fifo = tmp_path / "pd.fifo"
    os.mkfifo(fifo)
    cfg = config_with(f'url_file = "{fifo}"')
    done = []
    worker = threading.Thread(target=lambda: done.append(pagerduty_warnings(cfg)), daemon=True)
    worker.start()
    worker.join(5)
    assert done == [()], "reading the url_file FIFO blocked"


def test_installed_version_reads_metadata():
    assert installed_version("no-such-distribution-ha-watchdog") is None
    version = installed_version("apprise")
    assert version is not None and len(version) >= 2


def test_check_config_warns_for_a_plain_pagerduty_url_on_this_python(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(
        '[[alerts.targets]]\nname = "plain"\nurl = "pagerduty://SecretK@SecretA"\n'
        'severities = ["critical"]\n'
        f'[[alerts.targets]]\nname = "mapped"\nurl = "{PD_MAP}"\nseverities = ["critical"]\n'
    )
    config.chmod(0o600)
    script = Path(sys.executable).with_name("ha-watchdog")
    result = subprocess.run([str(script), "--check-config", "--config", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert (f"warning: {config}:3: [alerts.targets[0].url] target 'plain' is PagerDuty "
            "without ?action=map") in result.stderr
    assert "'mapped'" not in result.stderr
    assert "Secret" not in result.stderr + result.stdout
