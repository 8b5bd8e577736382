"""config.pagerduty_warnings: a PagerDuty target on an apprise that cannot resolve.

Python 3.8 gets apprise 1.9.x, whose PagerDuty plugin sends every message as a "trigger"
(no dedup key, no resolve). The last test runs `--check-config` with the apprise this venv
really has: on the 3.8 pass of .ci/run it must warn, on 3.9+ (apprise >= 2.1) it must not.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from watchdog.config import (
    PAGERDUTY_RESOLVES_FROM,
    installed_version,
    pagerduty_warnings,
    parse_config,
)

PD_URL = "pagerduty://IntegrationKey@ApiKey?action=map"


def config_with(*targets: str):
    text = "".join(
        f'[[alerts.targets]]\nname = "t{i}"\n{line}\nseverities = ["critical"]\n'
        for i, line in enumerate(targets)
    )
    return parse_config(text, "c.toml")


@pytest.mark.parametrize("version", [(1, 9, 3), (1, 9, 0), (2, 0, 9)])
def test_warns_for_each_pagerduty_target_below_2_1(version):
    cfg = config_with(f'url = "{PD_URL}"', 'url = "json://127.0.0.1:9/"', 'url = "PagerDuty://a@b"')
    found = pagerduty_warnings(cfg, apprise_version=version)
    assert [w.split("'")[1] for w in found] == ["t0", "t2"]
    shown = ".".join(map(str, version))
    assert f"apprise {shown}" in found[0] and "never resolve" in found[0]
    assert "Python >= 3.9" in found[0]
    assert "ApiKey" not in found[0] and "IntegrationKey" not in found[0]  # no secret


@pytest.mark.parametrize("version", [(2, 1), (2, 1, 0), (2, 3, 0), (3, 0)])
def test_silent_from_2_1(version):
    cfg = config_with(f'url = "{PD_URL}"')
    assert pagerduty_warnings(cfg, apprise_version=version) == ()


def test_no_pagerduty_target_needs_no_version():
    cfg = config_with('url = "json://127.0.0.1:9/"', 'url = "mailto://a@b.c"')
    assert pagerduty_warnings(cfg, apprise_version=(1, 0)) == ()


def test_url_file_is_read_and_an_unreadable_one_is_left_to_the_sender(tmp_path):
    pd = tmp_path / "pd.url"
    pd.write_text(PD_URL + "\n")
    cfg = config_with(f'url_file = "{pd}"', f'url_file = "{tmp_path / "missing.url"}"')
    found = pagerduty_warnings(cfg, apprise_version=(1, 9, 3))
    assert len(found) == 1 and "'t0'" in found[0]


def test_installed_version_reads_metadata():
    assert installed_version("no-such-distribution-ha-watchdog") is None
    version = installed_version("apprise")
    assert version is not None and len(version) >= 2


def test_check_config_warns_only_where_the_installed_apprise_cannot_resolve(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(f'[[alerts.targets]]\nname = "pager"\nurl = "{PD_URL}"\n'
                      'severities = ["critical"]\n')
    config.chmod(0o600)
    script = Path(sys.executable).with_name("ha-watchdog")
    result = subprocess.run([str(script), "--check-config", "--config", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    installed = installed_version("apprise")
    assert installed is not None
    if installed < PAGERDUTY_RESOLVES_FROM:  # Python 3.8: apprise 1.9.x
        assert sys.version_info < (3, 9)
        assert "warning: target 'pager' is PagerDuty" in result.stderr
        assert "never resolve" in result.stderr
    else:
        assert "PagerDuty" not in result.stderr
    assert "ApiKey" not in result.stderr + result.stdout


def test_a_fifo_as_url_file_does_not_block_the_load(tmp_path):
    import os
    import threading

    fifo = tmp_path / "pd.fifo"
    os.mkfifo(fifo)
    cfg = config_with(f'url_file = "{fifo}"')
    done = []
    worker = threading.Thread(target=lambda: done.append(pagerduty_warnings(cfg, (1, 9, 3))),
                              daemon=True)
    worker.start()
    worker.join(5)
    assert done == [()], "reading the url_file FIFO blocked"

