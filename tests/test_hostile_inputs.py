"""Hostile artifacts become problems with reasons, never crashes, leaks or exhausted memory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from scorer.evidence import Availability
from scorer.parsers import ArtifactFile, ArtifactLimits, iter_dir_files, parse_artifacts

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<testsuites><testsuite name="s"><testcase classname="c" name="&lol9;"/></testsuite></testsuites>
"""


def test_billion_laughs_is_refused() -> None:
    results = parse_artifacts([ArtifactFile.from_bytes("TEST-lol.xml", BILLION_LAUGHS)])
    assert results.tests.availability is Availability.UNAVAILABLE
    assert "entity declarations are refused" in results.tests.reason
    assert results.problems == [
        ("TEST-lol.xml declares the XML entity 'lol'; entity declarations are refused for safety "
         "(billion-laughs / external-entity attacks)")
    ]


def test_external_entity_never_reads_the_local_file(tmp_path: Path) -> None:
    token = "TOP-SECRET-7f3a91"
    secret = tmp_path / "secret.txt"
    secret.write_text(token)
    dtd = tmp_path / "evil.dtd"
    dtd.write_text(f'<!ENTITY leak SYSTEM "file://{secret}">')
    xxe = (f'<?xml version="1.0"?><!DOCTYPE testsuites [<!ENTITY xxe SYSTEM "file://{secret}">]>'
           '<testsuites><testsuite><testcase classname="c" name="&xxe;"><failure message="&xxe;"/></testcase>'
           "</testsuite></testsuites>").encode()
    external_dtd = (f'<?xml version="1.0"?><!DOCTYPE testsuites SYSTEM "file://{dtd}">'
                    '<testsuites><testsuite><testcase classname="c" name="t"><failure message="&leak;"/>'
                    "</testcase></testsuite></testsuites>").encode()
    results = parse_artifacts([ArtifactFile.from_bytes("junit-a.xml", xxe),
                               ArtifactFile.from_bytes("junit-b.xml", external_dtd)])
    everything = json.dumps([results.tests.model_dump(mode="json"), results.problems])
    assert token not in everything
    assert any("junit-a.xml declares the XML entity 'xxe'" in p for p in results.problems)
    # the external DTD is never fetched, so &leak; is either undefined (rejected) or skipped
    assert len(results.problems) == 2 or results.tests.failures[0].message == ""


_MEMORY_PROBE = r"""
import json, resource, sys, time
from scorer.parsers import iter_dir_files, parse_artifacts
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
results = parse_artifacts(iter_dir_files(sys.argv[1]))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"growth_kib": after - before, "seconds": time.perf_counter() - start,
                  "total": results.tests.total, "failed": results.tests.failed,
                  "failures": len(results.tests.failures), "problems": results.problems}))
"""


def _write_big_junit(path: Path, target_bytes: int) -> int:
    """Write a JUnit file of about ``target_bytes``; return the number of test cases (1% failing)."""
    cases = 0
    with path.open("w", encoding="utf-8") as fh:
        fh.write('<?xml version="1.0" encoding="utf-8"?>\n<testsuites>\n')
        suite = 0
        while fh.tell() < target_bytes:
            fh.write(f'<testsuite name="suite{suite}" tests="1000" time="10.0">\n')
            for i in range(1000):
                if i % 100 == 0:
                    fh.write(f'<testcase classname="pkg.m{suite}.T" name="test_{i}" file="t/m{suite}.py" line="{i}" '
                             f'time="0.01"><failure message="assert {i} == 0">trace</failure></testcase>\n')
                else:
                    fh.write(f'<testcase classname="pkg.m{suite}.T" name="test_{i}" file="t/m{suite}.py" line="{i}" '
                             'time="0.01"/>\n')
            cases += 1000
            suite += 1
            fh.write("</testsuite>\n")
        fh.write("</testsuites>\n")
    return cases


def test_200mb_junit_is_streamed_in_bounded_memory(tmp_path: Path) -> None:
    folder = tmp_path / "artifacts"
    folder.mkdir()
    report = folder / "TEST-huge.xml"
    cases = _write_big_junit(report, 200 * 1024 * 1024)
    assert report.stat().st_size >= 200 * 1024 * 1024
    out = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, str(folder)], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[1])
    figures = json.loads(out.stdout)
    assert figures["problems"] == []
    assert figures["total"] == cases and figures["failed"] == cases // 100
    assert figures["failures"] == ArtifactLimits().max_findings
    assert figures["growth_kib"] < 150 * 1024, figures  # peak RSS growth while parsing, not a timing


def test_sarif_with_100k_results(tmp_path: Path) -> None:
    path = tmp_path / "huge.sarif"
    with path.open("w") as fh:
        fh.write('{"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "gen", "rules": ['
                 '{"id": "R1", "properties": {"security-severity": "9.8"}}, {"id": "R2"}]}}, "results": [')
        for i in range(100_000):
            rule = "R1" if i % 10 == 0 else "R2"
            fh.write(("," if i else "") + json.dumps({
                "ruleId": rule, "level": "warning", "message": {"text": f"finding {i}"},
                "locations": [{"physicalLocation": {"artifactLocation": {"uri": f"src/f{i % 500}.py"},
                                                    "region": {"startLine": i}}}]}))
        fh.write("]}]}")
    results = parse_artifacts(iter_dir_files(tmp_path))
    assert results.problems == []
    assert results.security.counts == {"critical": 10_000, "medium": 90_000}
    assert len(results.security_findings) == 1000
    assert results.security_findings[0].severity == "critical"


def test_sarif_duplicates_are_counted_once(tmp_path: Path) -> None:
    result = {"ruleId": "R", "locations": [{"physicalLocation": {"artifactLocation": {"uri": "a.py"},
                                                                  "region": {"startLine": 3}}}]}
    doc = {"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "x"}}, "results": [result, result]}]}
    (tmp_path / "a.sarif").write_text(json.dumps(doc))
    (tmp_path / "b.sarif").write_text(json.dumps(doc))
    results = parse_artifacts(iter_dir_files(tmp_path))
    assert results.security.counts == {"medium": 1}


def test_csv_with_a_10mb_line_is_rejected(tmp_path: Path) -> None:
    header = "timeStamp,elapsed,label,responseCode,success\n"
    (tmp_path / "results.jtl").write_text(header + "1,2,login,200,true\n" + "1,2," + "x" * (10 * 1024 * 1024) + ",200,true\n")
    (tmp_path / "run_stats.csv").write_text(
        "Type,Name,Request Count,Failure Count\n" + "GET," + "y" * (10 * 1024 * 1024) + ",1,0\n")
    results = parse_artifacts(iter_dir_files(tmp_path))
    assert results.performance.availability is Availability.UNAVAILABLE
    assert len(results.problems) == 2
    assert sorted(p.split(" ")[:3] for p in results.problems) == [["results.jtl", "line", "3"], ["run_stats.csv", "line", "2"]]
    assert all("is longer than 1024 KiB" in p for p in results.problems), results.problems


def test_time_budget_per_file() -> None:
    big = b"<testsuites>" + b'<testsuite><testcase classname="c" name="t"/></testsuite>' * 200_000 + b"</testsuites>"
    results = parse_artifacts([ArtifactFile.from_bytes("junit.xml", big)], ArtifactLimits(max_seconds_per_file=0.0))
    assert results.problems and "took longer than 0 s" in results.problems[0]


def test_garbage_never_raises() -> None:
    junk = [
        ArtifactFile.from_bytes("junit.xml", b"\x00\xff" * 1000),
        ArtifactFile.from_bytes("x.sarif", b'{"version": "2.1.0", "runs": [{"results": [1, "a", null'),
        ArtifactFile.from_bytes("trivy.json", b'{"SchemaVersion": 2, "Results": [{"Vulnerabilities": [7]}]}'),
        ArtifactFile.from_bytes("coverage.xml", b'<coverage line-rate="2" lines-valid="1" lines-covered="9"/>'),
        ArtifactFile.from_bytes("k6.json", b'{"metrics": {"http_req_duration": "fast"}}'),
        ArtifactFile.from_bytes("statistics.json", b'{"Total": {"transaction": "Total", "sampleCount": "lots", "pct1ResTime": 1}}'),
        ArtifactFile.from_bytes("lcov.info", b"SF:a\nDA:x,y\nend_of_record\n"),
    ]
    results = parse_artifacts(junk)
    assert results.tests.availability is Availability.UNAVAILABLE
    # the lcov file is readable, coverage.xml is not: what was read stands, marked incomplete
    assert results.coverage.availability is Availability.INCOMPLETE
    assert [r.path for r in results.coverage.refused] == ["coverage.xml"]
    assert len(results.problems) >= 3
