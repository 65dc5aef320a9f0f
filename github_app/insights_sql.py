"""The insights report counted by the database: one statement per report, a few dozen rows back.

``insights.load`` + ``insights.build`` read every deployment and outcome of the window and compute the
figures in Python; they stay the reference definitions (docs/insights.md) and tests/test_insights_sql.py
checks that this module gives the same report. Here one SQL statement (SQLAlchemy Core, the same on
SQLite and PostgreSQL) does the attribution, the counting, the medians and the percentiles, and returns
only what the figures need: counts per repository, environment and risk bin, counts per week, answer-time
buckets, deployment days, restore runs, and the values of each distribution gathered with those counts.
A 30-day report over 8,000 deployments then moves some hundred rows instead of 17,000.

What costs is sorting and grouping every deployment of the window (100,000 in a busy year): only the
attribution's narrow columns are sorted, on the sha first and in byte order on PostgreSQL, outcomes are
grouped by the deployment's id alone, and the figures that can share a grouping come from one pass over
the deployments (the distributions ride on the counts per risk bin and per week).

Times are compared and subtracted as integer microseconds since the epoch, so durations are exactly
the ``timedelta.total_seconds()`` of the Python definitions.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    DateTime,
    Engine,
    Float,
    Integer,
    Select,
    String,
    and_,
    bindparam,
    case,
    cast,
    collate,
    extract,
    func,
    literal,
    null,
    or_,
    select,
    type_coerce,
    union_all,
)  # fmt: skip

from github_app import insights as ins
from github_app.db import read_only
from github_app.db.models import Deployment, Outcome

US = 1_000_000  # microseconds per second
DAY_US = 86400 * US
MONTH_US = 30 * DAY_US  # frequency_category's 30-day periods
INTS = 16  # integer value columns of the combined result
FLOATS = 3  # floating-point value columns
TEXTS = 4  # text columns: lists of values


def _us(column: Any, dialect: str) -> ColumnElement[Any]:
    """A stored time as integer microseconds since the epoch (SQLite keeps 'YYYY-MM-DD HH:MM:SS.ffffff' UTC text)."""
    if dialect == "postgresql":
        return cast(extract("epoch", column) * US, BigInteger)
    raw = type_coerce(column, String)
    return cast(func.strftime("%s", raw), Integer) * US + cast(func.substr(raw, 21, 6), Integer)


def _nonneg(value: ColumnElement[Any]) -> ColumnElement[Any]:
    return case((value < 0, 0), else_=value)


def _int(value: Any) -> ColumnElement[Any]:
    return cast(value, BigInteger)


def _count(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    return _int(func.sum(case((condition, 1), else_=0)))


def _ladder(value: ColumnElement[Any], limits: Sequence[Any]) -> ColumnElement[Any]:
    """The index of the first limit above ``value`` (what ``bisect.bisect_right`` gives)."""
    return case(*[(value < limit, i) for i, limit in enumerate(limits)], else_=len(limits))


def _part(name: str, repo: Any = None, env: Any = None, key: Any = None, ints: Sequence[Any] = (),
          floats: Sequence[Any] = (), texts: Sequence[Any] = ()) -> list[Any]:  # fmt: skip
    """The columns of one part of the combined result, padded with typed NULLs to the common layout.

    ``part`` names the part; ``repo``, ``env`` and ``k`` (a risk bin, a week, a day or an answer bucket)
    key its rows; ``i*``, ``f*`` and ``t*`` carry its counts, sums and gathered values.
    """
    return [
        literal(name, String).label("part"), cast(repo if repo is not None else null(), String).label("repo"),
        cast(env if env is not None else null(), String).label("env"), _int(key if key is not None else null()).label("k"),
        *[_int(ints[i] if i < len(ints) else null()).label(f"i{i}") for i in range(INTS)],
        *[cast(floats[i] if i < len(floats) else null(), Float).label(f"f{i}") for i in range(FLOATS)],
        *[cast(texts[i] if i < len(texts) else null(), String).label(f"t{i}") for i in range(TEXTS)],
    ]  # fmt: skip


def statement(window: ins.Window, dialect: str, only: Sequence[str] = ()) -> tuple[Select[Any], dict[str, Any]]:
    """The statement of ``window``'s report and its parameters (``only``: some parts, to study their cost)."""
    params = {"since": window.since, "until": window.until, "since_us": _epoch_us(window.since)}
    params |= {name: value for name, value in (("repository", window.repository), ("environment", window.environment))
               if value}  # fmt: skip
    return _statement(dialect, bool(window.repository), bool(window.environment), tuple(only)), params


@functools.lru_cache(maxsize=16)
def _statement(dialect: str, by_repository: bool, by_environment: bool, only: tuple[str, ...]) -> Select[Any]:
    """The one statement of a report: a union of parts, each a handful of rows (see ``report``).

    Built once per dialect and filter (the window comes as parameters): building and keying a statement
    this size costs more than 10 ms a time.
    """
    def us(column: Any) -> ColumnElement[Any]:
        return _us(column, dialect)

    since, until = bindparam("since", type_=DateTime(timezone=True)), bindparam("until", type_=DateTime(timezone=True))

    def key(column: Any) -> ColumnElement[Any]:
        # a text column sorted on, in byte order on PostgreSQL: the database's collation compares through
        # the C library, several times slower, and orders nothing the figures read (partitions need only
        # equality, the same in every deterministic collation)
        return collate(column, "C") if dialect == "postgresql" else column

    # the window's requests, and the outcomes observed from its start on
    deployments_where = [Deployment.created_at >= since, Deployment.created_at < until, ins.counted_attempt()]
    outcomes_where = [Outcome.observed_at >= since]
    for column, o_column, name, wanted in ((Deployment.repository, Outcome.repository, "repository", by_repository),
                                           (Deployment.environment, Outcome.environment, "environment", by_environment)):  # fmt: skip
        if wanted:
            deployments_where.append(column == bindparam(name))
            outcomes_where.append(o_column == bindparam(name))
    failed_outcome = Outcome.outcome.in_(sorted(ins.FAILED))
    is_success = Outcome.outcome == "success"

    # attribution: an outcome belongs to the newest deployment of its target requested at or before it,
    # that is to the deployment whose interval [created_at, next request of the same target) holds it.
    # Only what the attribution needs is sorted (no row of the report's columns) and the outcomes are
    # grouped by the deployment's id alone: the report's columns join back by id, no grouping on them.
    # the sha first: it tells targets apart on its own, so sorting rarely compares the other two
    target = (key(Deployment.sha), key(Deployment.repository), key(Deployment.environment))
    in_target: dict[str, Any] = {"partition_by": target, "order_by": (Deployment.created_at, Deployment.id)}
    requests = (
        select(Deployment.id, Deployment.repository, Deployment.environment, Deployment.sha, Deployment.created_at,
               func.lead(Deployment.created_at).over(**in_target).label("next_at"),
               func.min(Deployment.created_at).over(**in_target).label("first_at"))
        .where(*deployments_where, Deployment.state != ins.ABANDONED)  # never went out: takes no outcome
        .subquery("requests")
    )  # fmt: skip
    r = requests.c
    own = and_(Outcome.observed_at >= r.created_at, or_(r.next_at.is_(None), Outcome.observed_at < r.next_at))
    # Each request meets every outcome of its target from the target's first request on: those are exactly
    # the outcomes attributed to some deployment of the target, so the same rows also tell whether any
    # deployment of the target failed and when its last success was, which decides a later success
    # (a success at or after a request always belongs to that request or a later one), without a second
    # pass over the target's deployments.
    att = (
        select(r.id, func.min(case((and_(is_success, own), Outcome.observed_at))).label("deployed_at"),
               _count(and_(failed_outcome, own)).label("fails"),
               func.max(case((failed_outcome, 1), else_=0)).label("t_failed"),
               func.max(case((is_success, Outcome.observed_at))).label("t_success"))
        .select_from(requests)
        .join(Outcome, and_(Outcome.repository == r.repository, Outcome.environment == r.environment,
                            Outcome.sha == r.sha, Outcome.observed_at >= r.first_at, *outcomes_where))
        .group_by(r.id)
        .subquery("att")
    )  # fmt: skip
    a = att.c
    # the window's requests with what the report reads of each (the decision's headline, whether a human
    # answered, the first commit of the change: the row's own columns, migration 0011) and what befell them
    joined = (
        select(Deployment.repository, Deployment.environment, us(Deployment.created_at).label("c_us"),
               Deployment.answer, us(Deployment.answered_at).label("a_us"),
               case((Deployment.human_reviewed.is_(True), 1), else_=0).label("human"), Deployment.verdict,
               case((Deployment.state == ins.ABANDONED, 1), else_=0).label("abandoned"),
               Deployment.decided_action.label("action"), Deployment.risk, us(Deployment.decided_at).label("d_us"),
               us(Deployment.first_commit_at).label("f_us"), us(a.deployed_at).label("dep_us"),
               case((a.fails > 0, 1), else_=0).label("failed"),
               # the target only succeeded, and did at or after this request: a later success
               case((and_(a.t_failed == 0, a.t_success >= Deployment.created_at), 1), else_=0).label("later"))
        .select_from(Deployment)
        .outerjoin(att, a.id == Deployment.id)
        .where(*deployments_where)
        .cte("facts")
        .prefix_with("MATERIALIZED")  # read by every part below: computed once
    )  # fmt: skip
    f = joined.c
    known = or_(f.failed == 1, f.dep_us.is_not(None))
    later_success = f.later == 1
    escalate = f.action == "escalate"
    by_human = and_(escalate, f.human == 1, f.a_us.is_not(None))
    automatic = f.action.in_(("approve", "reject"))  # the gate's answer, stored with its decision
    scored = and_(f.action.is_not(None), known, f.risk.is_not(None))
    risk_bin = case((scored, _ladder(f.risk * ins.CALIBRATION_BINS, range(1, ins.CALIBRATION_BINS))))
    waiting = and_(escalate, f.answer.is_(None), f.abandoned == 0)
    decided_failure = and_(f.action.is_not(None), f.failed == 1)
    answer_us = _nonneg(f.a_us - f.c_us)
    deployed = f.dep_us.is_not(None)
    lead_value, lead_where = f.dep_us - f.f_us, and_(deployed, f.f_us.is_not(None))

    # distributions: the values of each kind gathered (unsorted: no sort on the server), from which
    # ``report`` takes medians and percentiles exactly as the Python definitions do. They ride on the
    # parts grouped as finely or finer (per risk bin, per week): each grouping is one more pass over the
    # facts, and ``report`` joins the lists of a repository and environment's bins
    def gathered(value: Any, where: Any) -> Any:
        return func.aggregate_strings(cast(case((where, _nonneg(value))), String), ",")

    counts = (
        select(*_part("group", f.repository, f.environment, risk_bin, ints=[
            func.count(), func.count(f.action), _count(f.action == "approve"), _count(escalate),
            _count(f.action == "reject"), _count(f.answer == "approved"), _count(and_(f.answer == "approved", f.failed == 1)),
            _count(and_(f.answer == "rejected", f.action.in_(("reject", "escalate")), later_success)),
            _count(and_(escalate, f.answer == "approved", later_success)), _count(waiting),
            func.min(case((waiting, func.coalesce(f.d_us, f.c_us)))), _count(decided_failure),
            _count(and_(decided_failure, f.action != "approve")), func.count(f.dep_us), _count(known),
            _count(f.failed == 1),
        ], floats=[func.sum(f.risk), func.sum(case((f.failed == 1, 1.0), else_=0.0)),
                   func.sum((f.risk - f.failed) * (f.risk - f.failed))], texts=[
            gathered(answer_us, and_(automatic, f.a_us.is_not(None))), gathered(f.a_us - f.c_us, by_human),
            gathered(f.a_us - func.coalesce(f.d_us, f.c_us), by_human), gathered(lead_value, lead_where),
        ]))
        .group_by(f.repository, f.environment, risk_bin)
    )  # fmt: skip
    week = f.c_us // DAY_US - (f.c_us // DAY_US + 3) % 7  # the Monday (days since the epoch, a Thursday)
    verdict = case((f.verdict.in_(ins.VERDICTS[:3]), f.verdict), else_="none")
    weeks = select(*_part("week", key=week, ints=[
        *[_count(verdict == v) for v in ins.VERDICTS], _count(known), _count(f.failed == 1)],
        texts=[gathered(lead_value, lead_where)])).group_by(week)  # fmt: skip
    answered = and_(f.a_us.is_not(None), f.action.is_not(None))
    who = case((automatic, "automatic"), (f.human == 1, "human"))
    bucket = _ladder(answer_us, [literal(int(limit * US), BigInteger) for _, limit in ins.ANSWER_BUCKETS[:-1]])
    answers = (select(*_part("answers", who, key=bucket, ints=[func.count()])).where(answered, who.is_not(None))
               .group_by(who, bucket))  # fmt: skip
    day, month = f.dep_us // DAY_US, (f.dep_us - bindparam("since_us", type_=BigInteger)) // MONTH_US
    days = (select(*_part("days", f.repository, f.environment, day, ints=[month, func.count()])).where(deployed)
            .group_by(f.repository, f.environment, day, month))  # fmt: skip

    # time to restore: per repository and environment, the first failure of each run of failures observed in
    # the window and the next success after it (outcomes from the start of the window on, failures and
    # successes only).
    # One pass over each environment's outcomes from the newest back: there the outcome before a failure
    # is ``lead()`` (a failure opens a run when none or a success came before it) and the next success
    # is the earliest success seen so far. Never a join of the outcomes with themselves (a join on a
    # segment number was planned as a join on the environment alone: quadratic in its outcomes), nor a
    # grouping and a second sort per segment.
    # The environments are numbered first and the outcomes sorted on that number: sorting on the two texts,
    # which take few distinct values, compares whole strings nearly every time (twice as slow).
    restored_kinds = or_(failed_outcome, is_success)
    envs = select(Outcome.repository, Outcome.environment).where(*outcomes_where, restored_kinds).distinct().subquery()
    numbered = select(envs.c.repository, envs.c.environment, func.row_number().over().label("env")).subquery("envs")
    n = numbered.c
    backwards: dict[str, Any] = {"partition_by": n.env, "order_by": (Outcome.observed_at.desc(), Outcome.id.desc()),
                                 "rows": (None, 0)}  # fmt: skip
    fail = case((is_success, 0), else_=1)
    events = (
        select(Outcome.repository, Outcome.environment, Outcome.observed_at, fail.label("fail"),
               func.lead(fail).over(**backwards).label("fail_before"),
               func.min(case((is_success, Outcome.observed_at))).over(**backwards).label("restored_at"))
        .select_from(Outcome)
        .join(numbered, and_(n.repository == Outcome.repository, n.environment == Outcome.environment))
        .where(*outcomes_where, restored_kinds)
        .subquery("events")
    )  # fmt: skip
    e = events.c
    # a run that starts after the window's end is a later window's; its restoring success may come after the end
    runs = select(e.repository, e.environment, us(e.observed_at).label("down"), us(e.restored_at).label("restored")).where(
        e.fail == 1, func.coalesce(e.fail_before, 0) == 0, e.observed_at < until).subquery("runs")  # fmt: skip
    e = runs.c

    # per repository and environment: the runs not restored yet and the times to restore the others
    restores = (select(*_part("restore", e.repository, e.environment, ints=[_count(e.restored.is_(None))],
                              texts=[gathered(e.restored - e.down, e.restored.is_not(None))]))
                .group_by(e.repository, e.environment))  # fmt: skip
    parts = {"counts": [counts], "weeks": [weeks], "answers": [answers], "days": [days], "restores": [restores]}
    return union_all(*[p for k, v in parts.items() if not only or k in only for p in v])  # type: ignore[return-value]


def _epoch_us(moment: datetime) -> int:
    delta = moment.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86400 + delta.seconds) * US + delta.microseconds


@dataclass
class _Counts:
    """The counts of one repository and environment, or of the whole window."""

    ints: list[int]
    risk: float = 0.0
    failed: float = 0.0
    brier: float = 0.0
    oldest_start: int | None = None
    bins: list[tuple[int, float, int]] | None = None  # per risk bin: deployments, sum of risk, failures


_FIELDS = ("deployments", "decided", "auto_go", "escalated", "auto_no", "approved", "escaped", "false_rejections",
           "needless", "waiting", "oldest_start", "failures", "caught", "successful", "out", "failed")  # fmt: skip
_I = {name: i for i, name in enumerate(_FIELDS)}


def _add(into: dict[Any, _Counts], key: Any, row: Any) -> None:
    c = into.get(key)
    if c is None:
        c = into[key] = _Counts(ints=[0] * len(_FIELDS), bins=[(0, 0.0, 0)] * ins.CALIBRATION_BINS)
    for name, i in _I.items():
        value = getattr(row, f"i{i}")
        if name == "oldest_start":
            if value is not None:
                c.oldest_start = value if c.oldest_start is None else min(c.oldest_start, value)
        elif value:
            c.ints[i] += int(value)
    if row.k is not None:  # a risk bin: the deployments of it that went out and had a risk
        n, risk, failed = row.i0, row.f0, row.f1
        assert c.bins is not None
        old = c.bins[row.k]
        c.bins[row.k] = (old[0] + n, old[1] + risk, old[2] + round(failed))
        c.risk += risk
        c.failed += failed
        c.brier += row.f2


Values = dict[tuple[str, str | None, str | None, int | None], list[float]]


def _values(text: str | None) -> list[float]:
    """A gathered list of microseconds, in seconds (``timedelta.total_seconds()`` of the same durations)."""
    return [int(v) / US for v in text.split(",")] if text else []


def _gate(c: _Counts, now_us: int, repository: str | None, environment: str | None,
          dist: Values) -> ins.GateQuality:  # fmt: skip
    v = dict(zip(_FIELDS, c.ints, strict=True))
    n, approved, failures = v["decided"], v["approved"], v["failures"]
    scored = sum(b[0] for b in c.bins or ())

    def stat(kind: str, fn: Any) -> float | None:
        value: float | None = fn(dist.get((kind, repository, environment, None), []))
        return value

    bins = ins.CALIBRATION_BINS
    calibration = [
        ins.CalibrationBin(low=i / bins, high=(i + 1) / bins, deployments=b[0],
                           predicted=b[1] / b[0] if b[0] else None, observed=b[2] / b[0] if b[0] else None)
        for i, b in enumerate(c.bins or [(0, 0.0, 0)] * bins)
    ]  # fmt: skip
    oldest = max(0.0, (now_us - c.oldest_start) / US) if c.oldest_start is not None else None
    return ins.GateQuality(
        repository=repository, environment=environment, deployments=v["deployments"], decided=n,
        approved_automatically=v["auto_go"], escalated=v["escalated"], rejected_automatically=v["auto_no"],
        share_approved_automatically=ins._share(v["auto_go"], n), share_escalated=ins._share(v["escalated"], n),
        share_rejected_automatically=ins._share(v["auto_no"], n), approved=approved, escaped_failures=v["escaped"],
        escaped_failure_rate=ins._share(v["escaped"], approved), false_rejections=v["false_rejections"],
        needless_escalations=v["needless"], false_blocks=v["false_rejections"] + v["needless"],
        answer_seconds_automatic_median=stat("automatic", ins._median),
        answer_seconds_human_median=stat("human", ins._median), reviewer_wait_seconds_median=stat("wait", ins._median),
        reviewer_wait_seconds_p90=stat("wait", lambda v: ins._percentile(v, 90)),
        waiting_now=v["waiting"], oldest_waiting_seconds=oldest, failures_observed=failures, caught=v["caught"],
        catch_rate=ins._share(v["caught"], failures), calibration=calibration,
        brier_score=c.brier / scored if scored else None,
    )  # fmt: skip


def _dora(c: _Counts, window: ins.Window, repository: str | None, environment: str | None,
          dist: Values,
          days: list[tuple[int, int, int]], restore_open: int) -> ins.Dora:  # fmt: skip
    v = dict(zip(_FIELDS, c.ints, strict=True))
    successful, out, failed = v["successful"], v["out"], v["failed"]
    lead = dist.get(("lead", repository, environment, None), [])
    restore = dist.get(("restore", repository, environment, None), [])
    per_week: dict[date, int] = defaultdict(int)
    per_month: dict[int, int] = defaultdict(int)
    distinct_days = set()
    for day, month, count in days:
        if day not in distinct_days:
            distinct_days.add(day)
            per_week[ins._week_of_day(_EPOCH + timedelta(days=day))] += 1
        per_month[month] += count
    return ins.Dora(
        repository=repository, environment=environment, days=round(window.days, 3), successful_deployments=successful,
        deployments_per_day=successful / window.days, deployments_per_week=successful / window.days * 7,
        deployment_days=len(distinct_days),
        frequency_category=ins.frequency_bucket(per_week, per_month, window) if successful else "none",
        lead_time_seconds_median=ins._median(lead), lead_time_seconds_p90=ins._percentile(lead, 90),
        lead_time_samples=len(lead),
        deployments_with_outcome=out, failed_deployments=failed, change_failure_rate=ins._share(failed, out),
        restores=len(restore), time_to_restore_seconds_median=ins._median(restore), unrestored_failures=restore_open,
    )  # fmt: skip


_EPOCH = date(1970, 1, 1)
_KINDS = ("automatic", "human", "wait", "lead")  # the distributions of a "group" row, in order


def report(engine: Engine, window: ins.Window, now: datetime | None = None) -> ins.Report:
    """The window's report (the same as ``insights.build(insights.load(...))``), counted by the database."""
    now = now or datetime.now(UTC)
    dialect = engine.dialect.name
    with read_only(engine) as conn:
        if dialect == "postgresql":  # (times are compared and subtracted as epochs: no session zone needed)
            # the planner may price the statement high enough to compile it to machine code, which takes
            # longer (about 250 ms) than running it
            conn.exec_driver_sql("SET LOCAL jit = off")
            # sorts and groupings of the window's rows in memory, not in files
            conn.exec_driver_sql("SET LOCAL work_mem = '32MB'")
            # thousands of rows: starting parallel workers costs more CPU than it saves
            conn.exec_driver_sql("SET LOCAL max_parallel_workers_per_gather = 0")
        rows = conn.execute(*statement(window, dialect)).all()
    groups: dict[tuple[str, str], _Counts] = {}
    overall: dict[None, _Counts] = {}
    weeks: dict[int, Any] = {}
    answers = {"automatic": [0] * len(ins.ANSWER_BUCKETS), "human": [0] * len(ins.ANSWER_BUCKETS)}
    days: dict[tuple[str | None, str | None], list[tuple[int, int, int]]] = defaultdict(list)
    unrestored: dict[tuple[str | None, str | None], int] = defaultdict(int)
    dist: Values = defaultdict(list)
    for row in rows:
        part = row.part
        if part == "group":  # per risk bin: its counts, and its share of the distributions
            _add(groups, (row.repo, row.env), row)
            _add(overall, None, row)
            for kind, text in zip(_KINDS, (row.t0, row.t1, row.t2, row.t3), strict=True):
                values = _values(text)
                dist[(kind, row.repo, row.env, None)] += values
                dist[(kind, None, None, None)] += values
        elif part == "week":  # its counts and lead times
            weeks[row.k] = row
            dist[("lead_week", None, None, row.k)] = _values(row.t0)
        elif part == "answers":
            answers[row.repo][row.k] += row.i0
        elif part == "days":
            days[(row.repo, row.env)].append((row.k, row.i0, row.i1))
            days[(None, None)].append((row.k, row.i0, row.i1))
        elif part == "restore":  # per repository and environment: runs not restored, times to restore
            unrestored[(row.repo, row.env)] += row.i0
            unrestored[(None, None)] += row.i0
            values = _values(row.t0)
            dist[("restore", row.repo, row.env, None)] = values
            dist[("restore", None, None, None)] += values
    now_us = _epoch_us(now)
    per_group = [
        (_gate(c, now_us, repo, env, dist), _dora(c, window, repo, env, dist, days[(repo, env)], unrestored[(repo, env)]))
        for (repo, env), c in sorted(groups.items())
    ]  # fmt: skip
    total = overall.get(None) or _Counts(ints=[0] * len(_FIELDS))
    gate = _gate(total, now_us, None, None, dist)
    dora = _dora(total, window, None, None, dist, days[(None, None)], unrestored[(None, None)])
    gate.repository, gate.environment = window.repository, window.environment
    dora.repository, dora.environment = window.repository, window.environment
    points = []
    for w in ins.window_weeks(window):
        week_row = weeks.get((w - _EPOCH).days)
        verdicts = {v: (getattr(week_row, f"i{i}") if week_row is not None else 0) for i, v in enumerate(ins.VERDICTS)}
        known, failed = (week_row.i4, week_row.i5) if week_row is not None else (0, 0)
        points.append(ins.WeekPoint(week=w, verdicts=verdicts, change_failure_rate=ins._share(failed, known),
                                    lead_time_seconds_median=ins._median(dist.get(
                                        ("lead_week", None, None, (w - _EPOCH).days), []))))  # fmt: skip
    return ins.Report(window=window, generated_at=now, gate=gate, dora=dora, groups=per_group, weeks=points,
                      answer_times=answers)  # fmt: skip
