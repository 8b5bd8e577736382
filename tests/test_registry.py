"""The check registry: the one list of checks, and adding a check through one entry."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import watchdog.config as config
from watchdog.alerts import message
from watchdog.checks import registry
from watchdog.checks.registry import CHECKS, Check, CheckContext
from watchdog.config import CheckTiming, Config, ConfigError, check_section, parse_config
from watchdog.config.schema import _f
from watchdog.core.debounce import Timing
from watchdog.core.windows import Relaxation
from watchdog.model import CHECK_NAMES, CheckResult, Role, Status
from watchdog.runner import ROLE_CHECKS, Probes, check_cycle, probe_cycle, run_cycle

DRBD_PRIMARY = Path(__file__).parent / "fixtures/drbd/proc-drbd-8.4-connected-primary-secondary.txt"


def test_every_check_is_registered_once_in_display_order():
    names = [c.name for c in CHECKS]
    assert names == ["drbd", "postgres_role", "services", "standbys", "replay_lag", "storage",
                     "wal", "backup_log"]
    assert len(set(names)) == len(names)
    assert tuple(names) == CHECK_NAMES  # model's public tuple is the registry's


def test_roles_match_the_documented_role_table():
    assert ROLE_CHECKS == {
        Role.PRIMARY: ("drbd", "postgres_role", "services", "standbys", "storage", "wal",
                       "backup_log"),
        Role.SECONDARY: ("drbd", "postgres_role", "replay_lag", "storage", "backup_log"),
        Role.UNKNOWN: ("drbd", "postgres_role", "storage", "backup_log"),
    }


def test_each_check_has_its_config_section_with_the_shared_timing():
    defaults = Config()
    for check in CHECKS:
        assert issubclass(check.section, CheckTiming), check.name
        section = defaults.check(check.name)
        assert type(section) is check.section
        assert config.all_sections()[check.name] is check.section
        assert section.timing == CheckTiming(section.for_, section.recover_for,
                                             section.unknown_as, section.unknown_for)
    # The per-check defaults survive being declared once (README "Configuration").
    assert (defaults.drbd.for_, defaults.drbd.unknown_as) == (30.0, "critical")
    assert (defaults.standbys.for_, defaults.standbys.unknown_for) == (0.0, 120.0)
    assert (defaults.replay_lag.for_, defaults.replay_lag.recover_for) == (120.0, 60.0)


def test_timing_keys_keep_their_flat_toml_names_and_located_errors():
    cfg = parse_config('[services]\nfor = "2m"\nunknown_as = "critical"\n')
    assert cfg.services.for_ == 120.0 and cfg.services.unknown_as == "critical"
    with pytest.raises(ConfigError) as caught:
        parse_config('[drbd]\npath = "/proc/drbd"\nunknown_as = "sometimes"\n', "/etc/x.toml")
    problem = caught.value.problems[0]
    assert (problem.path, problem.key, problem.line) == ("/etc/x.toml", "drbd.unknown_as", 3)


def test_first_look_lines_come_from_the_registry():
    for check in CHECKS:
        assert check.first_look and message.first_look(check.name) == check.first_look
    assert message.first_look(message.ROLE_TITLE) == registry.ROLE_CHANGE_LOOK
    assert message.first_look("nonsense") == "ha-watchdog --once on this node"


def test_a_check_section_must_inherit_the_timing():
    with pytest.raises(TypeError):
        check_section(for_="1m", recover_for="1m", unknown_as="warning")(type("Bad", (), {}))


# ---------------------------------------------------------------- a check added in a test


@check_section(for_="1m", recover_for="10s", unknown_as="critical")
class ResourceCountConfig(CheckTiming):
    minimum: int = _f("int", 1, minimum=0, maximum=64)


def _resource_count(snaps, section, ctx: CheckContext) -> CheckResult:
    count = len(snaps["drbd"].resources)
    status = Status.OK if count >= section.minimum else Status.CRITICAL
    return CheckResult("resource_count", status, f"{count} resource(s), role {ctx.role.value}",
                       {"count": count, "relaxed": ctx.relaxation.active},
                       recheck_in=7.0)


NEW = Check("resource_count", frozenset({Role.PRIMARY}), ("drbd",), ResourceCountConfig,
            "cat /proc/drbd", _resource_count)


def _unreachable(cfg):
    raise ConnectionError("no server in this test")


@pytest.fixture
def with_new_check(monkeypatch):
    monkeypatch.setattr(registry, "CHECKS", CHECKS + (NEW,))


def _cfg(extra: str = "") -> Config:
    return parse_config(f'[drbd]\nformat = "proc"\npath = "{DRBD_PRIMARY}"\n' + extra)


def test_a_check_added_by_one_registry_entry_runs_in_a_real_cycle(with_new_check):
    cfg = _cfg('[resource_count]\nminimum = 2\nfor = "5m"\n')
    assert cfg.check("resource_count") == ResourceCountConfig(minimum=2, for_=300.0)
    probes = Probes(postgres=_unreachable, services=_unreachable)  # DRBD: the real probe

    cycle = run_cycle(cfg, probes)

    report = cycle.report
    assert report.role == Role.PRIMARY
    assert [c.name for c in report.checks] == [*ROLE_CHECKS[Role.PRIMARY], "resource_count"]
    added = report.checks[-1]
    assert added.status == Status.CRITICAL  # one resource, two required
    assert added.summary == "1 resource(s), role primary"
    assert added.recheck_in == 7.0
    # The other checks still report their probes' reasons.
    by_name = {c.name: c for c in report.checks}
    assert by_name["postgres_role"].status == Status.UNKNOWN
    assert "PostgreSQL probe failed: ConnectionError" in by_name["postgres_role"].summary
    assert "services probe failed" in by_name["services"].summary
    # Config, alerts and the engine know it from the same entry.
    assert message.first_look("resource_count") == "cat /proc/drbd"
    # The engine debounces a check with Timing.of(cfg.check(name)).
    assert Timing.of(cfg.check("resource_count")) == Timing(
        for_=300.0, recover_for=10.0, unknown_for=300.0, unknown_as=Status.CRITICAL)
    assert Timing.of(_cfg().check("resource_count")).for_ == 60.0  # no table: its defaults
    assert parse_config('[backup]\nchecks = ["resource_count"]\n').backup.checks == (
        "resource_count",)


def test_an_added_check_defaults_without_its_table_and_gets_the_relaxation(with_new_check):
    cfg = _cfg()
    probed = probe_cycle(cfg, Probes(postgres=_unreachable, services=_unreachable))
    assert "resource_count" in probed.names
    relaxed = {"resource_count": Relaxation(True, "backup window", 0.0)}
    result = check_cycle(probed, cfg, relaxed).report.checks[-1]
    assert result.status == Status.OK  # minimum 1 by default
    assert result.details["relaxed"] is True


def test_an_added_checks_unknown_key_is_refused_with_its_line(with_new_check):
    with pytest.raises(ConfigError) as caught:
        parse_config('[resource_count]\n\nmaximum = 3\n', "/etc/x.toml")
    problem = caught.value.problems[0]
    assert (problem.key, problem.line) == ("resource_count.maximum", 3)
    assert "known keys: for, minimum, recover_for, unknown_as, unknown_for" in problem.message


def test_a_raising_check_is_unknown_and_the_others_still_run(with_new_check, monkeypatch):
    def broken(snaps, section, ctx):
        raise KeyError("bug")

    monkeypatch.setattr(registry, "CHECKS", CHECKS + (dataclasses.replace(NEW, evaluate=broken),))
    report = run_cycle(_cfg(), Probes(postgres=_unreachable, services=_unreachable)).report
    assert report.checks[-1].status == Status.UNKNOWN
    assert report.checks[-1].summary == "resource_count check failed: KeyError: 'bug'"
    assert report.checks[0].name == "drbd" and report.checks[0].status != Status.UNKNOWN
