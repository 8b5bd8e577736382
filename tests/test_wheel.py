"""The README's install steps, followed from a built wheel in fresh venvs, on Python 3.8
(EL7 rh-python38, EL8 python38, Ubuntu 20.04), the Python running the suite and 3.13.

Real parts only: the wheel is built by pip from this checkout, each venv is made with
`python -m venv`, and pip installs the wheel with its dependencies from the configured
package index, as an operator would. Each interpreter is looked up under pyenv's root (the
newest patch release of its minor version); one that is not there is skipped with the
reason. These are slow (a venv and an install each), so only CI's default pass runs them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Dict, List

import pytest

from lab.wheel import build_wheel, clean_env, find_python, install_venv, pyenv_root

ROOT = Path(__file__).resolve().parent.parent
REPO_UNIT = ROOT / "systemd" / "ha-watchdog.service"
REPO_EXAMPLE = ROOT / "config.example.toml"
CURRENT = "{}.{}".format(*sys.version_info[:2])
PYTHONS = sorted({"3.8", CURRENT, "3.13"}, key=lambda v: tuple(map(int, v.split("."))))

pytestmark = pytest.mark.slow


def run(argv: List[str], timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          env=dict(clean_env()), **kwargs)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


def test_wheel_carries_the_repository_unit_and_example_config_unchanged(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        assert zf.read("watchdog/data/ha-watchdog.service") == REPO_UNIT.read_bytes()
        assert zf.read("watchdog/data/config.example.toml") == REPO_EXAMPLE.read_bytes()
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        meta = zf.read(metadata).decode("utf-8")
    # The product only: no lab (cluster harness, demo), tests or bench in what operators install.
    assert not [n for n in names if n.split("/")[0] in ("lab", "tests", "bench")], names
    assert not [n for n in names if n.startswith(("watchdog/lab/", "watchdog/demo"))], names
    assert not [n for n in names if "/test_" in n or n.endswith("conftest.py")], names
    assert "watchdog/cli.py" in names and "watchdog/__main__.py" in names
    assert "Requires-Python: >=3.8" in meta
    requires = [line for line in meta.splitlines() if line.startswith("Requires-Dist:")]
    assert any(re.match(r"Requires-Dist: psycopg\[binary\]>=3\.1$", r) for r in requires), requires
    assert any("apprise<2,>=1.9" in r and "python_version < '3.9'" in r for r in requires)
    assert any("apprise>=2.1" in r and "python_version >= '3.9'" in r for r in requires)


PROBE_PSYCOPG = r"""
import json, psycopg
version = psycopg.pq.version()
with open("/proc/self/maps") as maps:
    libpq = sorted({line.split()[-1] for line in maps if "/libpq" in line})
print(json.dumps({"impl": psycopg.pq.__impl__, "libpq": version, "paths": libpq}))
"""


@pytest.mark.parametrize("minor", PYTHONS)
def test_readme_install_steps_from_the_wheel_in_a_fresh_venv(minor, wheel, tmp_path):
    python = find_python(minor)
    if python is None:
        pytest.skip(f"no Python {minor} (looked under pyenv's root {pyenv_root()})")
    venv = install_venv(python, wheel, tmp_path / "opt-ha-watchdog")
    pip = [str(venv / "bin" / "python"), "-m", "pip"]
    hw = str(venv / "bin" / "ha-watchdog")

    listing = run([*pip, "list", "--format=json"])
    versions: Dict[str, str] = {p["name"].lower(): p["version"] for p in json.loads(listing.stdout)}
    print(f"Python {minor}: " + ", ".join(
        f"{name} {versions.get(name)}"
        for name in ("apprise", "psycopg", "psycopg-binary", "tenacity", "sdnotify", "tomli",
                     "backports.zoneinfo")
    ))
    assert versions.get("psycopg-binary") == versions.get("psycopg"), versions
    if minor == "3.8":
        assert versions["apprise"].startswith("1.9."), versions
        assert "backports.zoneinfo" in versions
    else:
        assert tuple(map(int, versions["apprise"].split(".")[:2])) >= (2, 1), versions

    version = run([hw, "--version"])
    assert version.returncode == 0 and re.match(r"ha-watchdog \d+\.\d+", version.stdout), version

    # The demo's harness stays in the repository: the command says so and exits 3.
    demo = run([hw, "demo", "--quick"], cwd=str(tmp_path))
    assert demo.returncode == 3, demo
    assert "checkout" in demo.stderr and "Traceback" not in demo.stderr, demo.stderr

    # libpq comes from inside the psycopg-binary wheel, not from the system.
    probe = run([str(venv / "bin" / "python"), "-c", PROBE_PSYCOPG], cwd=str(tmp_path))
    assert probe.returncode == 0, probe.stderr
    seen = json.loads(probe.stdout)
    assert seen["impl"] == "binary", seen
    assert seen["paths"], seen
    site = str(venv.resolve())
    for path in seen["paths"]:
        assert os.path.realpath(path).startswith(site + "/"), seen
        assert "/site-packages/psycopg_binary.libs/" in path, seen

    # example-config, edited as the README says, then --check-config.
    etc = tmp_path / "etc"
    etc.mkdir(mode=0o700)
    config = etc / "config.toml"
    written = run([hw, "example-config", "--output", str(config)])
    assert written.returncode == 0, written.stderr
    assert config.read_text(encoding="utf-8") == REPO_EXAMPLE.read_text(encoding="utf-8")
    url_file = etc / "hook.url"
    url_file.write_text("json://127.0.0.1:9/\n")
    url_file.chmod(0o600)
    text = config.read_text(encoding="utf-8")
    assert '\ndsn = ""' in text
    text = text.replace('\ndsn = ""', '\ndsn = "host=/var/run/postgresql port=5432 '
                        'user=ha_watchdog dbname=postgres"', 1)
    text += (f'\n[[alerts.targets]]\nname = "hook"\nurl_file = "{url_file}"\n'
             'severities = ["warning", "critical", "recovery", "info"]\n')
    config.write_text(text, encoding="utf-8")
    checked = run([hw, "--check-config", "--config", str(config)])
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"{config}: OK" in checked.stdout

    # The unit, from the wheel's package data, names this venv's script.
    printed = run([hw, "install-unit", "--print", "--config", str(config)])
    assert printed.returncode == 0, printed.stderr
    assert f"ExecStart={hw} --config {config}\n" in printed.stdout
    repo_lines = REPO_UNIT.read_text(encoding="utf-8").splitlines()
    diff = [(a, b) for a, b in zip(repo_lines, printed.stdout.splitlines()) if a != b]
    assert len(diff) == 1 and diff[0][0].startswith("ExecStart="), diff
    units = tmp_path / "systemd-system"
    units.mkdir()
    put = run([hw, "install-unit", "--unit-dir", str(units), "--config", str(config)])
    assert put.returncode == 0, put.stderr
    assert (units / "ha-watchdog.service").read_text(encoding="utf-8") == printed.stdout
