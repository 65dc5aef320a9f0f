"""Property tests over generated evidence: worse evidence never decides better, less evidence never knows more."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rules.pipeline import evaluate
from rules.policy import default_policy, load_policy_text
from rules.types import Decision
from scorer.completeness import first_deployment
from scorer.evidence import PART_NAMES, Evidence
from scorer.heuristic import estimate_risk

NOW = datetime(2025, 6, 4, 10, 0, tzinfo=UTC)
VERDICT_RANK = {"go": 0, "escalate": 1, "no-go": 2}
POLICIES = {
    "default": default_policy(),
    "strict": load_policy_text("extends: strict\n"),
    "relaxed": load_policy_text("extends: relaxed\n"),
}
# 60 examples keep the suite fast; GONOGO_PROPERTY_EXAMPLES=400 searches harder (it passed at 400).
PROPERTY = settings(max_examples=int(os.environ.get("GONOGO_PROPERTY_EXAMPLES", "60")), deadline=None, suppress_health_check=[HealthCheck.too_slow])
SEVERITIES = ("critical", "high", "medium", "low")
CONCLUSIONS = ("success", "success", "success", "failure", "neutral", "skipped", "cancelled")

missing = st.sampled_from(["not_configured", "unavailable"])
small = st.integers(min_value=0, max_value=30)


def _absent(draw: st.DrawFn) -> dict[str, Any]:
    return {"availability": draw(missing), "reason": "generated"}


@st.composite
def checks_parts(draw: st.DrawFn) -> dict[str, Any]:
    if draw(st.booleans()) and draw(st.booleans()):
        return _absent(draw)
    names = draw(st.lists(st.sampled_from(["build", "lint", "test", "ci / unit", "pytest", "e2e", "docs", "deploy"]),
                          unique=True, max_size=6))  # fmt: skip
    checks = []
    for name in names:
        if draw(st.integers(0, 9)) == 0:
            checks.append({"name": name, "status": "in_progress"})
        else:
            checks.append({"name": name, "status": "completed", "conclusion": draw(st.sampled_from(CONCLUSIONS)),
                           "attempts": draw(st.integers(1, 2))})  # fmt: skip
    required = draw(st.lists(st.sampled_from(names), unique=True, max_size=2)) if names else []
    return {"availability": "ok", "reason": "generated", "checks": checks, "required": required}


@st.composite
def report_parts(draw: st.DrawFn) -> dict[str, Any]:
    if draw(st.integers(0, 3)) == 0:
        return _absent(draw)
    passed, failed, errored, skipped = draw(st.integers(0, 400)), draw(small), draw(st.integers(0, 3)), draw(small)
    flaky = [{"name": f"flaky_{i}", "outcome": "flaky"} for i in range(draw(st.integers(0, 3)))]
    failures = [{"name": f"test_{i}", "file": "tests/test_x.py", "line": i + 1} for i in range(min(failed + errored, 10))]
    return {"availability": "ok", "reason": "generated", "total": passed + failed + errored + skipped, "passed": passed,
            "failed": failed, "errored": errored, "skipped": skipped, "failures": failures, "flaky": flaky}  # fmt: skip


@st.composite
def coverage_parts(draw: st.DrawFn) -> dict[str, Any]:
    if draw(st.integers(0, 2)) == 0:
        return _absent(draw)
    rate = draw(st.floats(0.0, 1.0))
    baseline = draw(st.none() | st.floats(0.0, 1.0))
    return {"availability": "ok", "reason": "generated", "line_rate": rate, "baseline_line_rate": baseline,
            "branch_rate": draw(st.none() | st.floats(0.0, 1.0))}  # fmt: skip


@st.composite
def security_parts(draw: st.DrawFn) -> dict[str, Any]:
    if draw(st.integers(0, 2)) == 0:
        return _absent(draw)
    counts = {s: draw(st.integers(0, 25)) for s in SEVERITIES}
    return {"availability": "ok", "reason": "generated", "counts": {k: v for k, v in counts.items() if v},
            "secrets_open": draw(st.integers(0, 2)), "sources": {"dependabot": "ok"}}  # fmt: skip


@st.composite
def transactions(draw: st.DrawFn, name: str) -> dict[str, Any]:
    p95 = draw(st.floats(5.0, 4000.0))
    regression = draw(st.none() | st.floats(-50.0, 200.0))
    return {"name": name, "samples": draw(st.integers(1, 5000)), "p95_ms": p95, "p99_ms": p95 * 1.5,
            "error_rate": draw(st.floats(0.0, 1.0)), "regression_pct": regression,
            "baseline_p95_ms": None if regression is None else p95 / (1 + regression / 100),
            "significant": draw(st.sampled_from([None, True, False]))}  # fmt: skip


@st.composite
def performance_parts(draw: st.DrawFn) -> dict[str, Any]:
    if draw(st.integers(0, 2)) == 0:
        return _absent(draw)
    overall = draw(st.none() | transactions("Total"))
    txs = [draw(transactions(f"tx {i}")) for i in range(draw(st.integers(0, 4)))]
    return {"availability": "ok", "reason": "generated", "tool": "jmeter", "overall": overall, "transactions": txs}


@st.composite
def change_parts(draw: st.DrawFn) -> dict[str, Any]:
    if draw(st.integers(0, 3)) == 0:
        return _absent(draw)
    files = draw(st.lists(st.sampled_from(["src/a.py", "src/b.py", "api/c.go", "tests/test_a.py", "db/migrations/1.sql",
                                           "README.md"]), unique=True, max_size=5))  # fmt: skip
    return {"availability": "ok", "reason": "generated", "commits": draw(st.integers(1, 80)),
            "files_changed": draw(st.integers(1, 120)), "additions": draw(st.integers(0, 5000)),
            "deletions": draw(st.integers(0, 3000)), "subsystems": draw(st.integers(1, 9)),
            "entropy": draw(st.floats(0.0, 1.0)), "authors": draw(st.integers(1, 5)),
            "author_experience": draw(st.none() | st.integers(0, 300)),
            "has_migration": draw(st.none() | st.booleans()),
            "hotspots": [f"src/h{i}.py" for i in range(draw(st.integers(0, 5)))],
            "files": [{"path": p} for p in files]}  # fmt: skip


@st.composite
def operational_parts(draw: st.DrawFn) -> dict[str, Any]:
    if draw(st.integers(0, 3)) == 0:
        return _absent(draw)
    return {"availability": "ok", "reason": "generated",
            "hours_since_last_deploy": draw(st.none() | st.floats(0.0, 2000.0)),
            "deploys_last_24h": draw(st.none() | st.integers(0, 20)),
            "env_failure_rate_30d": draw(st.none() | st.floats(0.0, 1.0))}  # fmt: skip


@st.composite
def evidence(draw: st.DrawFn) -> Evidence:
    created = NOW + timedelta(hours=draw(st.integers(0, 24 * 7)))
    return Evidence.model_validate({
        "deployment_id": "1", "repository": "octo/shop", "environment": "production", "sha": "c" * 40,
        "created_at": created, "checks": draw(checks_parts()), "tests": draw(report_parts()),
        "coverage": draw(coverage_parts()), "security": draw(security_parts()),
        "performance": draw(performance_parts()), "change": draw(change_parts()),
        "operational": draw(operational_parts()),
    })  # fmt: skip


# --- ways to make the evidence worse ---------------------------------------------------------------


def _with(ev: Evidence, part: str, **changes: Any) -> Evidence:
    data = ev.model_dump(mode="json")
    data[part].update(changes)
    return Evidence.model_validate(data)


def add_failing_test(ev: Evidence) -> Evidence | None:
    t = ev.tests
    if not t.ok:
        return None
    case = {"name": "test_new_failure", "file": "tests/test_new.py", "line": 3, "message": "boom"}
    return _with(ev, "tests", total=t.total + 1, failed=t.failed + 1,
                 failures=[*t.model_dump(mode="json")["failures"], case][:10])  # fmt: skip


def add_failed_check(ev: Evidence) -> Evidence | None:
    if not ev.checks.ok:
        return None
    checks = [*ev.checks.model_dump(mode="json")["checks"], {"name": "new-check", "status": "completed",
                                                              "conclusion": "failure"}]  # fmt: skip
    return _with(ev, "checks", checks=checks)


def add_finding(severity: str) -> Any:
    def worsen(ev: Evidence) -> Evidence | None:
        s = ev.security
        if not s.ok:
            return None
        return _with(ev, "security", counts={**s.counts, severity: s.count(severity) + 1})

    worsen.__name__ = f"add_{severity}_finding"
    return worsen


def add_secret(ev: Evidence) -> Evidence | None:
    return _with(ev, "security", secrets_open=ev.security.secrets_open + 1) if ev.security.ok else None


def add_regression(ev: Evidence) -> Evidence | None:
    p = ev.performance
    if not p.ok or p.overall is None:
        return None
    o = p.overall
    worse = {"regression_pct": max(o.regression_pct or 0.0, 0.0) + 25.0, "significant": True,
             "p95_ms": (o.p95_ms or 100.0) * 1.25, "p99_ms": (o.p99_ms or 150.0) * 1.25,
             "error_rate": min(1.0, (o.error_rate or 0.0) + 0.02)}  # fmt: skip
    if o.baseline_p95_ms is None:
        worse["baseline_p95_ms"] = (o.p95_ms or 100.0) / 1.25
    return _with(ev, "performance", overall={**o.model_dump(mode="json"), **worse})


def grow_change(ev: Evidence) -> Evidence | None:
    ch = ev.change
    if not ch.ok or ch.additions is None:
        return None
    return _with(ev, "change", additions=ch.additions + 800)


WORSEN = [add_failing_test, add_failed_check, add_finding("critical"), add_finding("high"), add_finding("medium"),
          add_finding("low"), add_secret, add_regression, grow_change]  # fmt: skip


def _decide(ev: Evidence, pack: str) -> Decision:
    return evaluate(ev, POLICIES[pack], "production", ev.created_at)


@PROPERTY
@given(ev=evidence(), worsen=st.sampled_from(WORSEN), pack=st.sampled_from(sorted(POLICIES)))
def test_worse_evidence_never_decides_better(ev: Evidence, worsen: Any, pack: str) -> None:
    worse = worsen(ev)
    if worse is None:
        return
    before, after = _decide(ev, pack), _decide(worse, pack)
    assert VERDICT_RANK[after.verdict] >= VERDICT_RANK[before.verdict], (worsen.__name__, before.reasons, after.reasons)
    assert after.risk.probability >= before.risk.probability
    for name, dim in before.dimensions.items():
        if dim.score is not None:
            later = after.dimensions[name].score
            assert later is not None and later <= dim.score, (worsen.__name__, name, dim.score, later)
    if before.readiness_score is not None:
        assert after.readiness_score is not None and after.readiness_score <= before.readiness_score
    assert after.confidence == before.confidence  # the same sources were read


@PROPERTY
@given(ev=evidence(), worsen=st.sampled_from(WORSEN))
def test_worse_evidence_never_lowers_the_rule_based_risk(ev: Evidence, worsen: Any) -> None:
    worse = worsen(ev)
    if worse is not None:
        assert estimate_risk(worse).probability >= estimate_risk(ev).probability


@PROPERTY
@given(ev=evidence(), part=st.sampled_from(PART_NAMES), to=missing, pack=st.sampled_from(sorted(POLICIES)))
def test_removing_evidence_never_raises_confidence(ev: Evidence, part: str, to: str, pack: str) -> None:
    if not getattr(ev, part).ok:
        return
    less = ev.model_copy(update={part: type(getattr(ev, part))(availability=to, reason="removed")})
    assert _decide(less, pack).confidence <= _decide(ev, pack).confidence


@PROPERTY
@given(ev=evidence(), pack=st.sampled_from(sorted(POLICIES)))
def test_confidence_is_a_share_and_full_only_when_everything_was_read(ev: Evidence, pack: str) -> None:
    d = _decide(ev, pack)
    assert 0.0 <= d.confidence <= 1.0
    if d.confidence == 1.0:
        # A change with no earlier release to compare with is missing history, not evidence.
        exempt = {"change"} if first_deployment(ev) else set()
        assert all(p.ok for name, p in ev.parts().items() if name not in exempt)
    if not any(p.ok for p in ev.parts().values()):
        assert d.confidence == 0.0
