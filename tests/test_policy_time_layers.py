"""Time and layering semantics of the policy, where a slip approves what a team froze.

Each test names the way the team wrote its policy and what it expects: freeze windows of `"*"` and of an
environment both hold, a rule turned off for every environment can be turned back on for one, a date-only
end freezes the whole day, a zone name means the same on every server, and a window's ends are the widest
reading of a local time that occurs twice (or not at all) on a daylight-saving day.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rules.decide import freeze_status
from rules.freeze import check_window, window_end
from rules.pipeline import evaluate
from rules.policy import PolicyError, effective, load_policy_text, parse_duration
from rules.samples import clean_evidence
from scorer.assessment import Assessment, RiskEstimate

WEDNESDAY = datetime(2025, 6, 4, 10, 0, tzinfo=UTC)
SATURDAY = datetime(2025, 6, 7, 10, 0, tzinfo=UTC)
YEAR_END = '{start: "2025-12-22", end: "2026-01-05", reason: "year-end freeze"}'


# --- freeze windows of "*" and of the environment ----------------------------------------------------------


def test_an_organisation_freeze_for_every_environment_holds_in_production_under_the_strict_pack() -> None:
    """Before, the strict pack's own production freeze (a list) replaced the organisation's `"*"` freeze, so the
    organisation's year-end freeze held in staging but not in production."""
    org = f'extends: strict\nenvironments:\n  "*":\n    freeze:\n      - {YEAR_END}\n'
    policy = load_policy_text("extends: strict\n", org_text=org)
    reasons = {w.reason for w in effective(policy, "production").freeze}
    assert reasons == {"weekend freeze", "year-end freeze"}
    env = effective(policy, "production")
    christmas_tuesday = datetime(2025, 12, 23, 12, 0, tzinfo=UTC)
    active = freeze_status(env, _assessment(), christmas_tuesday)
    assert active is not None and active.reason == "year-end freeze"


def test_a_freeze_under_star_and_one_under_the_environment_both_hold() -> None:
    text = (f'environments:\n  "*":\n    freeze:\n      - {YEAR_END}\n'
            '  production:\n    freeze:\n      - {start: "FRI 16:00", end: "MON 08:00", reason: "weekend"}\n')  # fmt: skip
    policy = load_policy_text(text)
    assert [w.reason for w in effective(policy, "production").freeze] == ["weekend", "year-end freeze"]
    d = evaluate(clean_evidence(), policy, "production", datetime(2025, 12, 23, 12, 0, tzinfo=UTC))
    assert d.verdict == "escalate" and d.freeze is not None and d.freeze.reason == "year-end freeze"


def test_an_environment_may_drop_a_pack_freeze_of_its_own_name() -> None:
    """Replacing a list still works for the environment's own windows: `production: freeze: []` lifts the strict
    pack's weekend freeze (written under production), while windows under `"*"` still hold."""
    policy = load_policy_text('extends: strict\nenvironments:\n  production:\n    freeze: []\n')
    assert effective(policy, "production").freeze == []
    assert evaluate(clean_evidence(), policy, "production", SATURDAY).freeze is None


# --- rules turned off under "*" ----------------------------------------------------------------------------


def test_a_rule_off_for_every_environment_can_be_switched_back_on_for_one() -> None:
    """The docs promise that a severity or threshold switches an `off` rule back on; across layers it did, but
    an environment's entry over the same file's `"*": off` stayed off, silently."""
    text = ('environments:\n  "*":\n    rules:\n      GNG-OPS-003: off\n'
            '  production:\n    rules:\n      GNG-OPS-003: {severity: blocker}\n')  # fmt: skip
    ov = effective(load_policy_text(text), "production").override("GNG-OPS-003")
    assert ov is not None and ov.enabled and ov.severity == "blocker"
    assert effective(load_policy_text(text), "staging").override("GNG-OPS-003").enabled is False  # type: ignore[union-attr]


def test_the_relaxed_packs_weekend_rule_can_be_switched_on_for_production() -> None:
    policy = load_policy_text("extends: relaxed\nenvironments:\n  production:\n    rules:\n      GNG-OPS-003: {severity: major}\n")
    ov = effective(policy, "production").override("GNG-OPS-003")
    assert ov is not None and ov.enabled and ov.severity == "major"


def test_a_threshold_alone_switches_a_star_off_rule_on_and_off_still_wins_when_written_later() -> None:
    text = ('environments:\n  "*":\n    rules:\n      GNG-CHG-001: off\n'
            '  production:\n    rules:\n      GNG-CHG-001: {threshold: 300}\n')  # fmt: skip
    ov = effective(load_policy_text(text), "production").override("GNG-CHG-001")
    assert ov is not None and ov.enabled and ov.threshold == 300
    text = ('environments:\n  "*":\n    rules:\n      GNG-CHG-001: {severity: blocker}\n'
            '  production:\n    rules:\n      GNG-CHG-001: off\n')  # fmt: skip
    ov = effective(load_policy_text(text), "production").override("GNG-CHG-001")
    assert ov is not None and not ov.enabled


# --- one-off dates -----------------------------------------------------------------------------------------


def test_a_date_only_end_freezes_that_whole_day() -> None:
    """`end: "2026-01-05"` in a year-end freeze names the 5th as frozen; before, the window ended at 00:00 that
    day and a deployment on the 5th was approved."""
    window = ("2025-12-22", "2026-01-05", "Europe/Berlin")
    on_the_fifth = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    assert window_end(*window, on_the_fifth) == datetime(2026, 1, 5, 23, 0, tzinfo=UTC)  # 00:00 on the 6th, Berlin
    assert window_end(*window, datetime(2026, 1, 5, 23, 0, tzinfo=UTC)) is None
    # an explicit time still ends exactly there
    assert window_end("2025-12-22", "2026-01-05 00:00", "Europe/Berlin", on_the_fifth) is None


def test_a_one_day_freeze_is_written_with_the_same_date_twice() -> None:
    check_window("2025-12-24", "2025-12-24", "UTC")  # Christmas Eve, all day: before, "end must be after start"
    assert window_end("2025-12-24", "2025-12-24", "UTC", datetime(2025, 12, 24, 18, 0, tzinfo=UTC)) is not None
    with pytest.raises(ValueError, match="after start"):
        check_window("2025-12-24 18:00", "2025-12-24 18:00", "UTC")


def test_an_absolute_end_in_the_hour_that_occurs_twice_holds_until_its_second_occurrence() -> None:
    """London goes back from 02:00 BST to 01:00 GMT on 2025-10-26, so 01:00-02:00 happens twice. A freeze until
    01:30 local was over at its first 01:30 (00:30 UTC) and approved at the second 01:15 on the wall clock."""
    window = ("2025-10-25 18:00", "2025-10-26 01:30", "Europe/London")
    second_quarter_past_one = datetime(2025, 10, 26, 1, 15, tzinfo=UTC)  # 01:15 GMT, the second 01:15
    assert window_end(*window, second_quarter_past_one) == datetime(2025, 10, 26, 1, 30, tzinfo=UTC)
    assert window_end(*window, datetime(2025, 10, 26, 1, 30, tzinfo=UTC)) is None


def test_an_absolute_start_in_the_hour_that_is_skipped_starts_when_the_clock_reaches_it() -> None:
    """New York skips 02:00-03:00 on 2025-03-09. A freeze from 02:30 local starts as the clock jumps to 03:00
    (07:00 UTC), not an hour later."""
    window = ("2025-03-09 02:30", "2025-03-09 12:00", "America/New_York")
    assert window_end(*window, datetime(2025, 3, 9, 7, 0, tzinfo=UTC)) is not None
    assert window_end(*window, datetime(2025, 3, 9, 6, 59, tzinfo=UTC)) is None  # 01:59 EST, before the freeze


# --- time zones and durations ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["localtime", "posixrules", "Factory"])
def test_a_zone_that_is_not_a_place_is_a_policy_error(name: str) -> None:
    """`localtime` is whatever zone the gonogo server runs in: the same file froze different hours on different
    hosts. Not a place's IANA name, so an error like any unknown zone."""
    text = f'environments:\n  production:\n    freeze:\n      - {{start: "FRI 16:00", end: "MON 08:00", timezone: "{name}"}}\n'
    with pytest.raises(PolicyError, match="unknown time zone"):
        load_policy_text(text)


def test_a_duration_too_long_for_the_calendar_is_a_policy_error_not_a_crash() -> None:
    """Before, `999999999w` raised OverflowError out of the loader: the gate's job failed and was retried for
    ever instead of escalating with the policy's errors."""
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("999999999w")
    text = 'environments:\n  "*":\n    waivers: {max_lifetime: 999999999w}\n'
    with pytest.raises(PolicyError, match="max_lifetime"):
        load_policy_text(text)


# --- which moment counts -----------------------------------------------------------------------------------


def test_the_moment_of_the_decision_counts_not_the_request() -> None:
    """A deployment requested just before a weekend freeze and decided inside it (a slow or retried job, a
    re-run of the check) escalates: the approval would let it out during the freeze."""
    policy = load_policy_text('environments:\n  production:\n    freeze:\n      - {start: "FRI 16:00", end: "MON 08:00"}\n')
    friday = datetime(2025, 6, 6, 15, 59, tzinfo=UTC)
    ev = clean_evidence().model_copy(update={"created_at": friday})
    assert evaluate(ev, policy, "production", friday).verdict == "go"
    d = evaluate(ev, policy, "production", friday + timedelta(minutes=2))
    assert d.verdict == "escalate" and d.freeze is not None


def _assessment() -> Assessment:
    return Assessment(evidence=clean_evidence(), risk=RiskEstimate(probability=0.01, source="rules"))
