"""How good the gate is and how delivery goes: gate quality and DORA figures from decisions and outcomes.

``load`` reads the facts of one window through SQLAlchemy (deployments with their decision's headline,
whether a human answered and the first commit of the change, all kept on the deployment row, and the
outcomes); everything else is pure and works on those facts: ``build(load(...))`` is the reference
computation of every figure docs/insights.md defines. ``report``, what the API, the dashboard and
``gonogo report`` show, gets the same figures from one SQL statement instead (github_app/insights_sql.py;
tests/test_insights_sql.py holds them equal).
"""

from __future__ import annotations

import bisect
import logging
import statistics
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from functools import partial
from operator import attrgetter
from typing import Any

from sqlalchemy import ColumnElement, DateTime, Engine, String, or_, select, type_coerce
from sqlalchemy.orm import aliased

from github_app.browse import FilterError, check_filter_text
from github_app.db import read_only
from github_app.db.models import Deployment, Outcome

log = logging.getLogger(__name__)

FAILED = frozenset({"failure", "rollback", "incident"})
CALIBRATION_BINS = 10
ANSWER_BUCKETS: tuple[tuple[str, float], ...] = (
    ("< 10 s", 10), ("< 1 min", 60), ("< 10 min", 600), ("< 1 h", 3600), ("< 8 h", 8 * 3600), ("< 1 d", 86400),
    ("≥ 1 d", float("inf")),
)  # fmt: skip
VERDICTS = ("go", "escalate", "no-go", "none")


@dataclass(slots=True)  # thousands are built per report; frozen dataclasses build slower
class DeploymentFact:
    """One deployment as the figures need it (read from the existing columns, whatever the state names)."""

    id: int
    key: str
    repository: str
    environment: str
    sha: str
    created_at: datetime
    answer: str | None  # approved | rejected | None while waiting
    answered_at: datetime | None
    verdict: str | None  # go | escalate | no-go; None before a decision
    action: str | None  # approve | reject | escalate
    risk: float | None
    decided_at: datetime | None
    answered_by_human: bool
    first_commit_at: datetime | None
    # the run ended (or GitHub's 30 days passed) while it waited: never answered, never went out
    abandoned: bool = False


@dataclass(slots=True)
class OutcomeFact:
    repository: str
    environment: str
    sha: str
    outcome: str  # success | failure | rollback | incident
    observed_at: datetime


@dataclass(frozen=True)
class Window:
    since: datetime
    until: datetime
    repository: str | None = None
    environment: str | None = None
    # how the caller asked for it (not part of its identity): ``live``, it ends now (no ``until`` given);
    # ``age``, its start counts back from its end ("30d"). A live window is the same report a minute later.
    live: bool = field(default=False, compare=False)
    age: timedelta | None = field(default=None, compare=False)

    def renewed(self, now: datetime) -> Window:
        """The same live window ending at ``now``'s next whole minute (itself if it is not live)."""
        if not self.live:
            return self
        until = _next_minute(now)
        since = until - self.age if self.age is not None else self.since
        return replace(self, since=since, until=until)

    @property
    def days(self) -> float:
        return max((self.until - self.since).total_seconds() / 86400, 1 / 24)


@dataclass
class Facts:
    window: Window
    deployments: list[DeploymentFact]
    outcomes: list[OutcomeFact]


DEFAULT_WINDOW = timedelta(days=30)
MAX_WINDOW = timedelta(days=366)
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


class WindowError(ValueError):
    """A window the caller asked for that cannot be read."""


def _age(text: str) -> timedelta | None:
    """The age ``text`` gives ("30d", "12h", "8w"), or None when it gives none (a date, say)."""
    from rules.policy import parse_duration

    try:
        return parse_duration(text.strip())
    except ValueError:
        return None


def parse_moment(text: str, now: datetime) -> datetime:
    """A point in time: an ISO-8601 date or time (UTC unless it says otherwise), or an age like "30d" or "12h"."""
    text = text.strip()
    age = _age(text)
    try:
        if age is not None:
            moment = now - age
        else:
            try:
                moment = datetime.fromisoformat(text)
            except ValueError:
                raise WindowError(f"{text!r} is neither an ISO-8601 date or time (2026-03-01, 2026-03-01T09:00:00Z) "
                                  "nor an age like 30d, 12h or 8w") from None  # fmt: skip
            moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except OverflowError:
        moment = EARLIEST - timedelta(days=1)
    # the weekly series steps a week past each end: a moment near the calendar's ends would overflow it
    if not EARLIEST <= moment <= LATEST:
        raise WindowError(f"{text!r} is out of range: give a time between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}")
    return moment


def _next_minute(moment: datetime) -> datetime:
    floor = moment.replace(second=0, microsecond=0)
    return floor if floor == moment else floor + timedelta(minutes=1)


def window_from(since: str | None, until: str | None, now: datetime, *, repository: str | None = None,
                environment: str | None = None) -> Window:  # fmt: skip
    """The window a caller asked for: by default the last 30 days; at most 366 days long.

    Without ``until`` the window ends at the next whole minute, so everything up to now is in it; ages
    count back from that minute, so callers within one minute ask for the same window (and share a
    cached report).
    """
    try:
        check_filter_text("repository", repository)
        check_filter_text("environment", environment)
    except FilterError as exc:
        raise WindowError(str(exc)) from None
    now = _next_minute(now)  # ages ("30d") count back from a whole minute too
    end = parse_moment(until, now) if until else now
    start = parse_moment(since, now) if since else end - DEFAULT_WINDOW
    if start >= end:
        raise WindowError("since must be before until")
    if end - start > MAX_WINDOW:
        raise WindowError("the window is longer than 366 days: narrow since/until")
    age = _age(since) if since else DEFAULT_WINDOW  # None for a date: the start stays where it is
    return Window(since=start, until=end, repository=repository or None, environment=environment or None,
                  live=not until, age=age if not until else None)  # fmt: skip


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is UTC:
        return moment
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return _aware(datetime.fromisoformat(value))
    except ValueError:
        return None


def _raw_time(column: Any, dialect: str) -> Any:
    """``column`` without its per-value conversion: ``_time_reader`` turns it into an aware UTC datetime faster."""
    return type_coerce(column, String if dialect == "sqlite" else DateTime(timezone=True))


def _time_reader(dialect: str) -> Callable[[Any], datetime | None]:
    """How a raw time column reads: SQLite stores UTC text, PostgreSQL (session zone UTC) gives aware values."""
    if dialect == "sqlite":
        def from_text(value: Any) -> datetime | None:
            if value is None:
                return None
            try:
                return datetime.fromisoformat(value + "+00:00")
            except (TypeError, ValueError):  # a time written in another form: the slow, general path
                return _parse_time(value) if isinstance(value, str) else _aware(value)
        return from_text
    return _aware


ABANDONED = "abandoned"  # github_app/deployments.py: final, without an answer


def counted_attempt() -> ColumnElement[bool]:
    """The deployment is one the figures count: not an attempt a later attempt of its run superseded.

    A re-run asks again for the same run and environment, and deployments.begin abandons the earlier,
    unfinished attempt in its favour: one deployment, asked about twice, answered (at most) once. An
    abandoned deployment with no later attempt is an escalation whose run ended while it waited: the gate
    did decide it, so it counts, but as nobody's wait and as nothing that went out.
    """
    later = aliased(Deployment)
    superseded = select(later.id).where(
        later.repository == Deployment.repository, later.environment == Deployment.environment,
        later.run_id == Deployment.run_id, later.created_at > Deployment.created_at,
    ).exists()  # fmt: skip
    return or_(Deployment.state != ABANDONED, ~superseded)


def load(engine: Engine, window: Window) -> Facts:
    """Read the deployments requested in ``window`` and the outcomes observed since it began.

    Only the columns the figures need, and times without SQLAlchemy's per-value conversion: a month of
    a busy organisation is thousands of rows, and the conversion cost more than the query.
    """
    dialect = engine.dialect.name
    t = partial(_raw_time, dialect=dialect)
    # the decision's headline, the human review and the first commit are the row's own (migration 0011)
    stmt = select(
        Deployment.id, Deployment.key, Deployment.repository, Deployment.environment, Deployment.sha,
        t(Deployment.created_at), Deployment.answer, t(Deployment.answered_at), Deployment.verdict,
        Deployment.decided_action, Deployment.risk, t(Deployment.decided_at), Deployment.human_reviewed,
        t(Deployment.first_commit_at), Deployment.state,
    )  # fmt: skip
    stmt = stmt.where(Deployment.created_at >= window.since, Deployment.created_at < window.until, counted_attempt())
    outcome_stmt = select(
        Outcome.repository, Outcome.environment, Outcome.sha, Outcome.outcome, t(Outcome.observed_at)
    ).where(Outcome.observed_at >= window.since)
    for column, value in ((Deployment.repository, window.repository), (Deployment.environment, window.environment)):
        if value:
            stmt = stmt.where(column == value)
    for column, value in ((Outcome.repository, window.repository), (Outcome.environment, window.environment)):
        if value:
            outcome_stmt = outcome_stmt.where(column == value)
    with read_only(engine) as conn:
        if dialect == "postgresql":  # times then arrive in UTC, the zone the figures use, with no conversion
            conn.exec_driver_sql("SET LOCAL TIME ZONE 'UTC'")
        rows = conn.execute(stmt.order_by(Deployment.created_at, Deployment.id)).all()
        outcome_rows = conn.execute(outcome_stmt.order_by(Outcome.observed_at, Outcome.id)).all()
    when = _time_reader(dialect)
    deployments = [
        DeploymentFact(i, key, repo, env, sha, when(created) or window.since, answer, when(answered), verdict,
                       action, risk, when(decided), bool(human_answer), when(first_commit), state == ABANDONED)
        for i, key, repo, env, sha, created, answer, answered, verdict, action, risk, decided, human_answer, first_commit,
        state in rows
    ]  # fmt: skip
    outcomes = [OutcomeFact(repo, env, sha, outcome, when(observed) or window.since)
                for repo, env, sha, outcome, observed in outcome_rows]  # fmt: skip
    return Facts(window=window, deployments=deployments, outcomes=outcomes)


# --- attribution: which deployment an outcome belongs to ---------------------------------------


@dataclass(slots=True)  # one per deployment of the window
class Result:
    """What happened to one deployment: its first success and its failures, if any were observed."""

    deployed_at: datetime | None = None
    failures: list[datetime] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.failures)

    @property
    def succeeded(self) -> bool:
        return self.deployed_at is not None and not self.failures

    @property
    def known(self) -> bool:
        return self.deployed_at is not None or bool(self.failures)


def attribute(deployments: Sequence[DeploymentFact], outcomes: Iterable[OutcomeFact]) -> dict[int, Result]:
    """Give each outcome to the newest deployment of its sha to its environment requested before it.

    An abandoned deployment never went out, so it takes no outcome: one observed after it belongs to the
    deployment of the sha before it (still the one running), if any.
    """
    by_target: dict[tuple[str, str, str], tuple[list[DeploymentFact], list[datetime]]] = {}
    for d in sorted(deployments, key=attrgetter("created_at", "id")):
        if d.abandoned:
            continue
        target = (d.repository, d.environment, d.sha)
        entry = by_target.get(target)
        if entry is None:
            by_target[target] = ([d], [d.created_at])
        else:
            entry[0].append(d)
            entry[1].append(d.created_at)
    results: dict[int, Result] = {d.id: Result() for d in deployments}
    for o in outcomes:
        found = by_target.get((o.repository, o.environment, o.sha))
        if found is None:
            continue
        candidates, starts = found
        i = bisect.bisect_right(starts, o.observed_at) - 1
        if i < 0:
            continue
        result = results[candidates[i].id]
        if o.outcome in FAILED:
            result.failures.append(o.observed_at)
        elif o.outcome == "success" and (result.deployed_at is None or o.observed_at < result.deployed_at):
            result.deployed_at = o.observed_at
    return results


# --- small statistics ---------------------------------------------------------------------------


def _median(values: Sequence[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def _percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return float(ordered[int(rank) - 1])


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _seconds(later: datetime | None, earlier: datetime | None) -> float | None:
    if later is None or earlier is None:
        return None
    return max(0.0, (later - earlier).total_seconds())


# --- gate quality -------------------------------------------------------------------------------


@dataclass
class CalibrationBin:
    low: float
    high: float
    deployments: int
    predicted: float | None  # mean predicted risk
    observed: float | None  # observed failure rate


@dataclass
class GateQuality:
    repository: str | None
    environment: str | None
    deployments: int
    decided: int
    approved_automatically: int
    escalated: int
    rejected_automatically: int
    share_approved_automatically: float | None
    share_escalated: float | None
    share_rejected_automatically: float | None
    approved: int
    escaped_failures: int
    escaped_failure_rate: float | None
    false_rejections: int
    needless_escalations: int
    false_blocks: int
    answer_seconds_automatic_median: float | None
    answer_seconds_human_median: float | None
    reviewer_wait_seconds_median: float | None
    reviewer_wait_seconds_p90: float | None
    waiting_now: int
    oldest_waiting_seconds: float | None
    failures_observed: int
    caught: int
    catch_rate: float | None
    calibration: list[CalibrationBin]
    brier_score: float | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _automatic(d: DeploymentFact) -> bool:
    # the gate's go / no-go is stored with its decision, before anyone could answer: a reviewer's allowed
    # review on record (a click refused while the gate still evaluated) did not answer it
    return d.action in ("approve", "reject")


def gate_quality(
    deployments: Sequence[DeploymentFact], results: dict[int, Result], now: datetime, *,
    repository: str | None = None, environment: str | None = None,
) -> GateQuality:
    """The gate's figures for ``deployments`` (outcomes already attributed in ``results``)."""
    paired = [(d, results[d.id]) for d in deployments]
    # a block was needless when the same sha went out to the same environment later and only succeeded
    succeeded_at: dict[tuple[str, str, str], list[datetime]] = defaultdict(list)
    failed_shas: set[tuple[str, str, str]] = set()
    for d, r in paired:
        if r.failures:
            failed_shas.add((d.repository, d.environment, d.sha))
        elif r.deployed_at is not None:
            succeeded_at[(d.repository, d.environment, d.sha)].append(r.deployed_at)

    def later_success(d: DeploymentFact) -> bool:
        target = (d.repository, d.environment, d.sha)
        return target not in failed_shas and any(t >= d.created_at for t in succeeded_at.get(target, ()))

    # one pass, counting what the definitions in docs/insights.md ask for
    n = auto_go = escalated = auto_no = approved = escaped = false_rejections = needless = 0
    waiting = failures = caught = 0
    oldest: float | None = None
    automatic_answers: list[float] = []
    human_answers: list[float] = []
    waits: list[float] = []
    scored: list[tuple[float, bool]] = []
    for d, r in paired:
        failed = bool(r.failures)
        if d.answer == "approved":
            approved += 1
            escaped += failed
        action = d.action
        if action is None:
            continue
        n += 1
        if action == "approve":
            auto_go += 1
        elif action == "reject":
            auto_no += 1
        elif action == "escalate":
            escalated += 1
            if d.answer == "approved" and later_success(d):
                needless += 1
            if d.answered_by_human:
                if (s := _seconds(d.answered_at, d.created_at)) is not None:
                    human_answers.append(s)
                if (s := _seconds(d.answered_at, d.decided_at or d.created_at)) is not None:
                    waits.append(s)
            if d.answer is None and not d.abandoned:
                waiting += 1
                oldest = max(oldest if oldest is not None else 0.0, _seconds(now, d.decided_at or d.created_at) or 0.0)
        if d.answer == "rejected" and action in ("reject", "escalate") and later_success(d):
            false_rejections += 1
        if _automatic(d) and (s := _seconds(d.answered_at, d.created_at)) is not None:
            automatic_answers.append(s)
        if failed or r.deployed_at is not None:  # went out: its outcome is known
            if failed:
                failures += 1
                caught += action != "approve"
            if d.risk is not None:
                scored.append((d.risk, failed))
    bins = calibration(scored)
    brier = sum((r - float(f)) ** 2 for r, f in scored) / len(scored) if scored else None
    return GateQuality(
        repository=repository, environment=environment, deployments=len(deployments), decided=n,
        approved_automatically=auto_go, escalated=escalated, rejected_automatically=auto_no,
        share_approved_automatically=_share(auto_go, n), share_escalated=_share(escalated, n),
        share_rejected_automatically=_share(auto_no, n), approved=approved,
        escaped_failures=escaped, escaped_failure_rate=_share(escaped, approved),
        false_rejections=false_rejections, needless_escalations=needless, false_blocks=false_rejections + needless,
        answer_seconds_automatic_median=_median(automatic_answers), answer_seconds_human_median=_median(human_answers),
        reviewer_wait_seconds_median=_median(waits), reviewer_wait_seconds_p90=_percentile(waits, 90),
        waiting_now=waiting, oldest_waiting_seconds=oldest, failures_observed=failures, caught=caught,
        catch_rate=_share(caught, failures), calibration=bins, brier_score=brier,
    )  # fmt: skip


def calibration(pairs: Sequence[tuple[float, bool]], bins: int = CALIBRATION_BINS) -> list[CalibrationBin]:
    """Predicted risk against the observed failure rate, in ``bins`` equal-width bins of predicted risk."""
    grouped: list[list[tuple[float, bool]]] = [[] for _ in range(bins)]
    for risk, failed in pairs:
        grouped[min(bins - 1, max(0, int(risk * bins)))].append((risk, failed))
    return [
        CalibrationBin(low=i / bins, high=(i + 1) / bins, deployments=len(g),
                       predicted=sum(r for r, _ in g) / len(g) if g else None,
                       observed=sum(1 for _, f in g if f) / len(g) if g else None)
        for i, g in enumerate(grouped)
    ]  # fmt: skip


# --- DORA ---------------------------------------------------------------------------------------


@dataclass
class Dora:
    repository: str | None
    environment: str | None
    days: float
    successful_deployments: int
    deployments_per_day: float
    deployments_per_week: float
    deployment_days: int
    frequency_category: str  # daily | weekly | monthly | yearly | none, as Four Keys buckets it
    lead_time_seconds_median: float | None
    lead_time_seconds_p90: float | None
    lead_time_samples: int
    deployments_with_outcome: int
    failed_deployments: int
    change_failure_rate: float | None
    restores: int
    time_to_restore_seconds_median: float | None
    unrestored_failures: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _week(moment: datetime) -> date:
    return _week_of_day(moment.date())


def _week_of_day(day: date) -> date:
    """The Monday of ``day``'s week."""
    return day - timedelta(days=day.weekday())


def frequency_category(deploy_times: Sequence[datetime], window: Window) -> str:
    """Daily / weekly / monthly / yearly the way Four Keys buckets deployment frequency.

    Daily: on the median week of the window, deployments happened on 3 days or more. Weekly: the
    median week had at least one. Monthly: the median 30-day period had at least one. Otherwise yearly.
    """
    if not deploy_times:
        return "none"
    days_per_week: dict[date, set[date]] = defaultdict(set)
    for t in deploy_times:
        days_per_week[_week(t)].add(t.date())
    per_month: dict[int, int] = defaultdict(int)
    for t in deploy_times:
        per_month[int((t - window.since).total_seconds() // (30 * 86400))] += 1
    return frequency_bucket({week: len(days) for week, days in days_per_week.items()}, per_month, window)


def frequency_bucket(days_per_week: dict[date, int], per_month: dict[int, int], window: Window) -> str:
    """``frequency_category`` from its counts: distinct deployment days per week, deployments per 30-day period."""
    weeks = max(1, round(window.days / 7))
    counts = sorted([*days_per_week.values()] + [0] * max(0, weeks - len(days_per_week)))
    median_days = statistics.median(counts)
    if median_days >= 3:
        return "daily"
    if median_days >= 1:
        return "weekly"
    months = max(1, round(window.days / 30))
    month_counts = sorted([*per_month.values()] + [0] * max(0, months - len(per_month)))
    return "monthly" if statistics.median(month_counts) >= 1 else "yearly"


def restore_times(outcomes: Sequence[OutcomeFact], since: datetime,
                  until: datetime | None = None) -> tuple[list[float], int]:  # fmt: skip
    """Seconds from each failure (the first of a run of failures) to the next success in its environment.

    Returns the durations of failures observed from ``since`` until before ``until`` and how many of them are
    not restored yet; the success that restores one may come after ``until``.
    """

    def counted(down: datetime) -> bool:
        return down >= since and (until is None or down < until)

    by_env: dict[tuple[str, str], list[OutcomeFact]] = defaultdict(list)
    for o in outcomes:
        by_env[(o.repository, o.environment)].append(o)
    durations: list[float] = []
    open_failures = 0
    for events in by_env.values():
        down_since: datetime | None = None
        for o in sorted(events, key=lambda o: o.observed_at):
            if o.outcome in FAILED:
                down_since = down_since or o.observed_at
            elif o.outcome == "success" and down_since is not None:
                if counted(down_since):
                    durations.append((o.observed_at - down_since).total_seconds())
                down_since = None
        if down_since is not None and counted(down_since):
            open_failures += 1
    return durations, open_failures


def dora(
    deployments: Sequence[DeploymentFact], results: dict[int, Result], outcomes: Sequence[OutcomeFact],
    window: Window, *, repository: str | None = None, environment: str | None = None,
) -> Dora:
    """The four keys for ``deployments`` requested in ``window``."""
    out = failed = 0  # deployments that went out, and those of them that failed
    deploy_times: list[datetime] = []
    lead: list[float] = []
    for d in deployments:
        r = results[d.id]
        deployed_at = r.deployed_at
        if r.failures:
            failed += 1
        elif deployed_at is None:
            continue
        out += 1
        if deployed_at is not None:
            deploy_times.append(deployed_at)
            if (s := _seconds(deployed_at, d.first_commit_at)) is not None:
                lead.append(s)
    deploy_times.sort()
    restored, unrestored = restore_times(outcomes, window.since, window.until)
    return Dora(
        repository=repository, environment=environment, days=round(window.days, 3),
        successful_deployments=len(deploy_times), deployments_per_day=len(deploy_times) / window.days,
        deployments_per_week=len(deploy_times) / window.days * 7, deployment_days=len({t.date() for t in deploy_times}),
        frequency_category=frequency_category(deploy_times, window), lead_time_seconds_median=_median(lead),
        lead_time_seconds_p90=_percentile(lead, 90), lead_time_samples=len(lead), deployments_with_outcome=out,
        failed_deployments=failed, change_failure_rate=_share(failed, out), restores=len(restored),
        time_to_restore_seconds_median=_median(restored), unrestored_failures=unrestored,
    )  # fmt: skip


# --- the whole report ---------------------------------------------------------------------------


@dataclass
class WeekPoint:
    week: date
    verdicts: dict[str, int]
    change_failure_rate: float | None
    lead_time_seconds_median: float | None


@dataclass
class Report:
    window: Window
    generated_at: datetime
    gate: GateQuality
    dora: Dora
    groups: list[tuple[GateQuality, Dora]]
    weeks: list[WeekPoint]
    answer_times: dict[str, list[int]]  # automatic / human: counts per ANSWER_BUCKETS

    def to_json(self) -> dict[str, Any]:
        """The report with stable field names, ISO-8601 times and durations in seconds."""
        return {
            "window": {"since": self.window.since.isoformat(), "until": self.window.until.isoformat(),
                       "repository": self.window.repository, "environment": self.window.environment},
            "generated_at": self.generated_at.isoformat(),
            "gate_quality": self.gate.to_json(),
            "dora": self.dora.to_json(),
            "groups": [{"repository": g.repository, "environment": g.environment, "gate_quality": g.to_json(),
                        "dora": d.to_json()} for g, d in self.groups],
            "weeks": [{"week": w.week.isoformat(), "verdicts": w.verdicts,
                       "change_failure_rate": w.change_failure_rate,
                       "lead_time_seconds_median": w.lead_time_seconds_median} for w in self.weeks],
            "answer_time_buckets": [label for label, _ in ANSWER_BUCKETS],
            "answer_times": self.answer_times,
        }  # fmt: skip


_BUCKET_LIMITS = [limit for _, limit in ANSWER_BUCKETS]


def _bucket(seconds: float) -> int:
    return bisect.bisect_right(_BUCKET_LIMITS, seconds)  # the first bucket whose limit is above ``seconds``


def window_weeks(window: Window) -> list[date]:
    """The Mondays of the weeks the window touches."""
    weeks: list[date] = []
    week = _week(window.since)
    while week <= _week(window.until - timedelta(microseconds=1)):
        weeks.append(week)
        week += timedelta(days=7)
    return weeks


def weekly(deployments: Sequence[DeploymentFact], results: dict[int, Result], window: Window) -> list[WeekPoint]:
    """Per week of the window (Monday to Sunday, UTC): verdicts, change failure rate, median lead time."""
    weeks = window_weeks(window)
    grouped: dict[date, list[DeploymentFact]] = defaultdict(list)
    for d in deployments:
        grouped[_week(d.created_at)].append(d)
    points = []
    for w in weeks:
        ds = grouped.get(w, [])
        verdicts = {v: 0 for v in VERDICTS}
        for d in ds:
            verdicts[d.verdict if d.verdict in VERDICTS else "none"] += 1
        out = [d for d in ds if results[d.id].known]
        lead = [s for d in out if (s := _seconds(results[d.id].deployed_at, d.first_commit_at)) is not None]
        points.append(WeekPoint(week=w, verdicts=verdicts,
                                change_failure_rate=_share(sum(1 for d in out if results[d.id].failed), len(out)),
                                lead_time_seconds_median=_median(lead)))  # fmt: skip
    return points


def answer_times(deployments: Sequence[DeploymentFact]) -> dict[str, list[int]]:
    """How long answers took, counted per bucket of ANSWER_BUCKETS, automatic and human apart."""
    counts = {"automatic": [0] * len(ANSWER_BUCKETS), "human": [0] * len(ANSWER_BUCKETS)}
    for d in deployments:
        seconds = _seconds(d.answered_at, d.created_at)
        if seconds is None or d.action is None:
            continue
        if _automatic(d):
            counts["automatic"][_bucket(seconds)] += 1
        elif d.answered_by_human:
            counts["human"][_bucket(seconds)] += 1
    return counts


def build(facts: Facts, now: datetime) -> Report:
    """Every figure for the window of ``facts``: overall, per repository and environment, and per week."""
    results = attribute(facts.deployments, facts.outcomes)
    w = facts.window
    groups: dict[tuple[str, str], list[DeploymentFact]] = defaultdict(list)
    for d in facts.deployments:
        groups[(d.repository, d.environment)].append(d)
    per_group = []
    outcomes_of: dict[tuple[str, str], list[OutcomeFact]] = defaultdict(list)
    for o in facts.outcomes:
        outcomes_of[(o.repository, o.environment)].append(o)
    for (repo, env), ds in sorted(groups.items()):
        outcomes = outcomes_of.get((repo, env), [])
        per_group.append((gate_quality(ds, results, now, repository=repo, environment=env),
                          dora(ds, results, outcomes, w, repository=repo, environment=env)))  # fmt: skip
    only = next(iter(groups)) if len(groups) == 1 else None
    if only is not None and len(outcomes_of.get(only, ())) == len(facts.outcomes):
        # one repository and environment: the overall figures are that group's, computed from the same facts
        group_gate, group_dora = per_group[0]
        gate = replace(group_gate, repository=w.repository, environment=w.environment)
        overall = replace(group_dora, repository=w.repository, environment=w.environment)
    else:
        gate = gate_quality(facts.deployments, results, now, repository=w.repository, environment=w.environment)
        overall = dora(facts.deployments, results, facts.outcomes, w, repository=w.repository, environment=w.environment)
    return Report(
        window=w, generated_at=now, gate=gate, dora=overall, groups=per_group,
        weeks=weekly(facts.deployments, results, w), answer_times=answer_times(facts.deployments),
    )


def report(engine: Engine, window: Window, now: datetime | None = None) -> Report:
    """The window's report (what the API, dashboard and CLI show), counted by the database.

    ``github_app.insights_sql`` computes in one statement what ``build(load(engine, window), now)``
    computes in Python from every row of the window; tests/test_insights_sql.py holds them equal.
    """
    from github_app import insights_sql

    return insights_sql.report(engine, window, now or datetime.now(UTC))


@dataclass
class _Entry:
    at: float  # when its computation began (monotonic clock)
    report: Report
    window: Window  # the window it was computed for (a live one is renewed at each refresh)
    used: float  # when a caller last asked for it
    pinned: bool = False  # kept fresh whether anyone asks or not (the dashboard's windows)


class ReportCache:
    """Reports by window, shared by the dashboard and the API, and kept fresh in the background.

    A report over a month of a busy organisation reads thousands of rows (a year of 100,000 deployments
    takes seconds); figures over weeks do not move in a minute. So:

    - a report younger than ``ttl`` seconds is served as it is;
    - once ``start`` has run, a report asked for in the last ``keep`` seconds is recomputed in the
      background when it is ``ttl`` old, and served at once meanwhile (never older than ``keep``); a
      live window ("the last 30 days") is the same report from one minute to the next and is renewed
      to end at the current minute when it is recomputed;
    - the ``pin``-ned windows (the dashboard's menu) are computed at start and kept younger than
      ``keep`` / 2 even when nobody looks, so the first visitor after a quiet spell waits for nothing;
    - anything else (a new filter, a window nobody asked for lately) is computed on the request, once:
      callers asking for the same window meanwhile wait for that one computation.

    ``ttl`` 0 shares nothing (every call computes). ``keep`` 0, or no ``start``, serves nothing older
    than ``ttl``.
    """

    def __init__(self, engine: Engine, ttl: float = 60.0, size: int = 64, *, keep: float = 0.0,
                 compute: Callable[[Engine, Window], Report] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.engine, self.ttl, self.size, self.keep = engine, ttl, size, keep
        self._compute_report = compute or report
        self._clock = clock
        self._entries: dict[Any, _Entry] = {}
        self._flights: dict[Any, Future[Report]] = {}
        self._pins: dict[Any, Window] = {}
        self._choices: tuple[float, tuple[list[str], list[str]]] | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def key(window: Window) -> Any:
        """What identifies a report: a live window by how it was asked for, any other by its bounds."""
        if window.live:
            return ("live", window.age if window.age is not None else window.since, window.repository,
                    window.environment)  # fmt: skip
        return window

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def _forget_after(self) -> float:
        """How long a report nobody pinned stays once nobody asks for it."""
        return max(self.ttl, self.keep)

    def choices(self) -> tuple[list[str], list[str]]:
        """The repositories and environments for the filter menus (a scan of every deployment, so kept a while)."""
        from github_app.browse import choices

        clock = self._clock()
        cached = self._choices
        if cached is not None and clock - cached[0] < self.ttl:
            return cached[1]
        fresh = choices(self.engine)
        self._choices = (clock, fresh)
        return fresh

    def get(self, window: Window) -> Report:
        """The window's report: a shared one if it is fresh enough (see the class), else computed now."""
        if self.ttl <= 0:
            return self._compute_report(self.engine, window)
        key = self.key(window)
        clock = self._clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                entry.used = clock
                age = clock - entry.at
                if age < self.ttl:
                    return entry.report
                if age < self.keep and self.running:  # recomputed in the background; this one meanwhile
                    self._wake.set()
                    return entry.report
            flight = self._flights.get(key)
            owner = flight is None
            if flight is None:
                flight = self._flights[key] = Future()
        if not owner:
            return flight.result()
        return self._fill(key, window, flight)

    def pin(self, windows: Iterable[Window]) -> None:
        """Keep these windows' reports fresh from now on (computed by the background thread)."""
        with self._lock:
            for window in windows:
                self._pins[self.key(window)] = window
                entry = self._entries.get(self.key(window))
                if entry is not None:
                    entry.pinned = True
        self._wake.set()

    def _fill(self, key: Any, window: Window, flight: Future[Report]) -> Report:
        """Compute ``window``'s report for ``key`` and hand it to whoever waits on ``flight``."""
        began = self._clock()
        try:
            fresh = self._compute_report(self.engine, window)
        except BaseException as exc:
            with self._lock:
                self._flights.pop(key, None)
            flight.set_exception(exc)
            raise
        with self._lock:
            old = self._entries.get(key)
            self._entries[key] = _Entry(at=began, report=fresh, window=window, used=old.used if old else began,
                                        pinned=key in self._pins)  # fmt: skip
            self._evict(began)
            self._flights.pop(key, None)
        flight.set_result(fresh)
        return fresh

    def _evict(self, clock: float) -> None:
        """Drop what nobody asked for lately, then the least recently asked for, down to ``size`` (lock held)."""
        if len(self._entries) <= self.size:
            return
        self._entries = {k: e for k, e in self._entries.items() if e.pinned or clock - e.used < self._forget_after}
        while len(self._entries) > self.size:
            unpinned = [(e.used, k) for k, e in self._entries.items() if not e.pinned]
            if not unpinned:
                break
            del self._entries[min(unpinned, key=lambda u: u[0])[1]]

    def due(self) -> list[tuple[Any, Window]]:
        """The windows to recompute now, most recently asked for first (and forget the abandoned ones)."""
        clock = self._clock()
        now = datetime.now(UTC)
        found: list[tuple[float, Any, Window]] = []
        with self._lock:
            for key, window in self._pins.items():
                if key not in self._entries and key not in self._flights:
                    found.append((clock, key, window.renewed(now)))
            for key, entry in list(self._entries.items()):
                age, idle = clock - entry.at, clock - entry.used
                if key in self._flights or age < self.ttl:
                    continue
                if idle < self.keep or (entry.pinned and age >= self.keep / 2):
                    found.append((entry.used, key, entry.window.renewed(now)))
                elif not entry.pinned and idle >= self._forget_after:
                    del self._entries[key]  # nobody asked for it lately: computed again on the next request
        return [(key, window) for _, key, window in sorted(found, key=lambda f: -f[0])]

    def refresh_due(self) -> int:
        """Recompute every report that is due, one after another; how many were recomputed."""
        done = 0
        for key, window in self.due():
            with self._lock:
                if key in self._flights:
                    continue
                flight = self._flights[key] = Future()
            try:
                self._fill(key, window, flight)
                done += 1
            except Exception as exc:  # noqa: BLE001 - the report stays as it was; the next round tries again
                log.warning("insights.refresh_failed", extra={"window": str(key), "error": type(exc).__name__})
            if self._stopping.is_set():
                break
        return done

    def start(self) -> None:
        """Run the background refresh (a daemon thread) until ``stop``; nothing to do if ``keep`` is 0."""
        if self.keep <= 0 or self.ttl <= 0 or self.running:
            return
        self._stopping.clear()
        tick = max(0.5, min(self.ttl, self.keep) / 4)

        def loop() -> None:
            while not self._stopping.is_set():
                self.refresh_due()
                self._wake.wait(tick)
                self._wake.clear()

        self._thread = threading.Thread(target=loop, name="gonogo-insights", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the background refresh (a report being computed is finished first, within ``timeout``)."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None


__all__ = [
    "ANSWER_BUCKETS", "CalibrationBin", "DeploymentFact", "Dora", "Facts", "GateQuality", "OutcomeFact", "Report",
    "ReportCache", "Result", "WeekPoint", "Window", "WindowError", "attribute", "build", "calibration", "dora", "frequency_category",
    "gate_quality", "load", "parse_moment", "report", "restore_times", "window_from",
]  # fmt: skip
