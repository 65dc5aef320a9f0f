"""Formats with no corpus sample (k6, Locust, coverage.py), merging rules, availability and baselines."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

from scorer.evidence import Availability, Evidence
from scorer.parsers import ArtifactFile, PerfBaseline, classify, compare_performance, parse_artifacts
from scorer.parsers.performance import TransactionBaseline

# k6 --summary-export layout (numbers on the metric) and handleSummary layout (numbers under "values"),
# written after the k6 documentation's examples
K6_EXPORT = {
    "root_group": {"name": "", "groups": [], "checks": []},
    "metrics": {
        "http_req_duration": {"avg": 120.5, "min": 20, "med": 100.0, "max": 900, "p(90)": 200.0, "p(95)": 250.0},
        "http_req_duration{name:login}": {"avg": 300, "min": 50, "med": 280, "max": 900, "p(90)": 400, "p(95)": 450},
        "http_reqs": {"count": 1000, "rate": 33.3},
        "http_req_failed": {"passes": 20, "fails": 980, "value": 0.02},
        "iterations": {"count": 500, "rate": 16.6},
    },
}
K6_SUMMARY = {
    "state": {"testRunDurationMs": 30000},
    "metrics": {
        "http_req_duration": {"type": "trend", "contains": "time",
                              "values": {"avg": 50.0, "med": 40.0, "p(95)": 90.0, "p(99)": 140.0, "max": 300}},
        "http_reqs": {"type": "counter", "values": {"count": 3000, "rate": 100.0}},
        "http_req_failed": {"type": "rate", "values": {"rate": 0.001, "passes": 3, "fails": 2997}},
    },
    "root_group": {"name": ""},
}
LOCUST = (
    "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,Min Response Time,"
    "Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%\n"
    "GET,/,500,5,30,35.2,5,400,1200,16.6,0.16,30,35,40,45,60,80,120,200,380,400,400\n"
    "POST,/login,100,0,90,95.0,40,600,300,3.3,0,90,100,110,120,150,180,250,300,590,600,600\n"
    ",Aggregated,600,5,35,45.1,5,600,1050,19.9,0.16,35,40,50,60,90,120,180,220,500,600,600\n"
)


def test_k6_both_layouts() -> None:
    export = json.dumps(K6_EXPORT).encode()
    summary = json.dumps(K6_SUMMARY).encode()
    assert classify("out.json", export) == "k6" and classify("summary.json", summary) == "k6"
    part = parse_artifacts([ArtifactFile.from_bytes("k6-summary-export.json", export)]).performance
    assert part.ok and part.tool == "k6"
    assert (part.overall.p50_ms, part.overall.p95_ms, part.overall.samples) == (100.0, 250.0, 1000)
    assert part.overall.error_rate == 0.02 and part.overall.throughput_rps == 33.3
    assert [(t.name, t.p95_ms) for t in part.transactions] == [("login", 450.0)]
    part = parse_artifacts([ArtifactFile.from_bytes("summary.json", summary)]).performance
    assert (part.overall.p95_ms, part.overall.p99_ms, part.overall.error_rate) == (90.0, 140.0, 0.001)


def test_locust_stats_csv() -> None:
    assert classify("run_stats.csv", LOCUST.encode()) == "locust"
    part = parse_artifacts([ArtifactFile.from_bytes("run_stats.csv", LOCUST.encode())]).performance
    assert part.ok and part.tool == "locust"
    assert (part.overall.samples, part.overall.p95_ms, part.overall.p99_ms) == (600, 120.0, 220.0)
    assert part.overall.error_rate == 5 / 600
    assert [t.name for t in part.transactions] == ["/", "/login"]


def test_coverage_py_json_from_the_real_tool(tmp_path: Path) -> None:
    (tmp_path / "mod.py").write_text("def f(x):\n    if x:\n        return 1\n    return 2\n\nf(1)\n")
    subprocess.run([sys.executable, "-m", "coverage", "run", "--branch", "mod.py"], cwd=tmp_path, check=True)
    subprocess.run([sys.executable, "-m", "coverage", "json", "-o", "coverage.json"], cwd=tmp_path, check=True,
                   capture_output=True)
    data = (tmp_path / "coverage.json").read_bytes()
    totals = json.loads(data)["totals"]
    assert classify("coverage.json", data) == "coveragepy"
    part = parse_artifacts([ArtifactFile.from_bytes("coverage.json", data)]).coverage
    assert part.ok and part.format == "coverage.py"
    assert (part.lines_valid, part.lines_covered) == (totals["num_statements"], totals["covered_lines"])
    assert part.branch_rate == totals["covered_branches"] / totals["num_branches"]


_ATTEMPT1 = (b'<testsuite name="s"><testcase classname="c" name="a"><failure message="boom"/></testcase>'
             b'<testcase classname="c" name="b"/><testcase classname="c" name="x"><error message="e"/></testcase>'
             b"</testsuite>")
_ATTEMPT2 = b'<testsuite name="s"><testcase classname="c" name="a"/><testcase classname="c" name="s"><skipped/></testcase></testsuite>'


def test_flaky_across_attempts_and_merged_totals() -> None:
    part = parse_artifacts([ArtifactFile.from_bytes("junit.xml", _ATTEMPT1),
                            ArtifactFile.from_bytes("junit-rerun.xml", _ATTEMPT2)]).tests
    assert (part.total, part.passed, part.failed, part.errored, part.skipped) == (4, 2, 0, 1, 1)
    assert [c.name for c in part.flaky] == ["a"] and [c.name for c in part.failures] == ["x"]
    assert part.flaky[0].where == "fails in junit.xml, passes on a retry in junit-rerun.xml"
    assert part.files == 2 and [p.detail for p in part.provenance] == ["junit.xml", "junit-rerun.xml"]


def test_a_pass_in_another_job_does_not_excuse_a_failure() -> None:
    # two jobs (two matrix legs): the test fails in one and passes in the other, so it fails
    part = parse_artifacts([ArtifactFile.from_bytes("job1/junit.xml", _ATTEMPT1),
                            ArtifactFile.from_bytes("job2/junit.xml", _ATTEMPT2)]).tests
    assert (part.total, part.passed, part.failed, part.errored, part.skipped) == (5, 2, 1, 1, 1)
    assert part.flaky == [] and [(c.name, c.where) for c in part.failures] == [
        ("a", "fails on job1/junit.xml, passes on job2/junit.xml"), ("x", "")]


def test_availability_rules() -> None:
    nothing = parse_artifacts([ArtifactFile.from_bytes("README.md", b"# hello")])
    assert nothing.tests.availability is Availability.NOT_CONFIGURED
    assert nothing.tests.reason == "no test reports (JUnit / xUnit / TRX, mocha, Jest, go test, RSpec, dart, TAP, pytest-json-report) found in artifacts"
    assert nothing.security.availability is Availability.NOT_CONFIGURED and nothing.problems == []
    broken = parse_artifacts([ArtifactFile.from_bytes("TEST-a.xml", b"<testsuite><testcase name='t'>")])
    assert broken.tests.availability is Availability.UNAVAILABLE
    assert broken.tests.reason.startswith("all 1 test reports (JUnit / xUnit / TRX, mocha, Jest, go test, RSpec, dart, TAP, pytest-json-report) were rejected: TEST-a.xml is not")
    assert broken.coverage.availability is Availability.NOT_CONFIGURED
    mixed = parse_artifacts([ArtifactFile.from_bytes("TEST-a.xml", b"<testsuite><testcase name='t'>"),
                             ArtifactFile.from_bytes("TEST-b.xml", b"<testsuite><testcase name='t'/></testsuite>")])
    # a refused file beside a readable one leaves the part incomplete: its figures are only a lower bound
    assert mixed.tests.availability is Availability.INCOMPLETE and not mixed.tests.ok and mixed.tests.total == 1
    assert [r.path for r in mixed.tests.refused] == ["TEST-a.xml"] and "TEST-a.xml" in mixed.tests.reason
    assert [(f.path, f.detail) for f in nothing.not_understood] == [("README.md", "text file of a format gonogo does not read")]


def test_parts_fit_into_evidence_and_round_trip() -> None:
    results = parse_artifacts([ArtifactFile.from_bytes("run_stats.csv", LOCUST.encode())])
    ev = Evidence.model_validate({"deployment_id": "1", "repository": "o/r", "environment": "prod", "sha": "a" * 40,
                                  "created_at": "2024-01-01T00:00:00Z", "tests": results.tests,
                                  "performance": results.performance, "security": results.security})
    assert Evidence.from_json(ev.to_json()) == ev
    assert ev.to_history_row()["p95_latency_ms"] == 120.0


def _run(seed: int, scale: float, n: int = 3000) -> PerfBaseline:
    rng = random.Random(seed)
    lines = ["timeStamp,elapsed,label,responseCode,success"]
    for i in range(n):
        lines.append(f"{1_700_000_000_000 + i * 10},{int(rng.lognormvariate(4, 0.5) * scale)},GET /,200,true")
    data = ("\n".join(lines) + "\n").encode()
    samples = parse_artifacts([ArtifactFile.from_bytes("run.jtl", data)]).perf_samples
    assert samples is not None
    return samples


def test_baseline_form_is_compact_and_round_trips() -> None:
    run = _run(1, 1.0)
    assert run.overall is not None and len(run.overall.points_ms) == 1000
    stored = run.model_dump_json()
    assert len(stored) < 40_000
    assert PerfBaseline.model_validate_json(stored) == run


def test_compare_mann_whitney_on_sketches() -> None:
    base, same, slower = _run(1, 1.0), _run(2, 1.0), _run(3, 1.3)
    part = compare_performance(same, base, threshold_pct=10)
    assert part.method == "mann-whitney" and part.overall.significant is False
    part = compare_performance(slower, base, threshold_pct=10, baseline_sha="abc")
    assert part.method == "mann-whitney" and part.overall.significant is True and part.baseline_sha == "abc"
    assert 20 < part.overall.regression_pct < 40
    assert part.overall.baseline_p95_ms == base.overall.p95_ms


def test_compare_relative_threshold_on_aggregates() -> None:
    def agg(p95: float) -> PerfBaseline:
        return PerfBaseline(tool="k6", overall=TransactionBaseline(name="Total", samples=100, p95_ms=p95),
                            transactions=[TransactionBaseline(name="login", samples=10, p95_ms=p95 * 2)])
    part = compare_performance(agg(115.0), agg(100.0).to_part(), threshold_pct=10)
    assert part.method == "relative-threshold"
    assert part.overall.regression_pct == 15.0 and part.overall.significant is True
    assert part.transactions[0].regression_pct == 15.0
    part = compare_performance(agg(105.0).to_part(), agg(100.0), threshold_pct=10)
    assert part.overall.significant is False
