"""SARIF read in msgspec batches: the same findings whatever the layout, odd types read as before,
hostile files refused with a reason, and memory bounded by the batch size, not the file size."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from scorer.parsers import ArtifactFile, ArtifactLimits, parse_artifacts
from scorer.parsers.limits import ArtifactRejected, CappedReader
from scorer.parsers.security import SecurityTally, parse_sarif

RULES: list[dict[str, Any]] = [{"id": "py/crit", "shortDescription": {"text": "Critical rule"}, "properties": {"security-severity": "9.5"}},
         {"id": "py/warn", "name": "WarnRule"},
         {"id": "py/err", "defaultConfiguration": {"level": "error"}, "helpUri": "https://example.test/err"}]
N = 12_000  # about 4 MB compact: several batches


def _result(i: int) -> dict[str, Any]:
    """Result i: rule i % 3, 1 in 4 at result i - 21's rule and place, messages full of JSON punctuation."""
    line = (i - 21 if i % 4 == 3 and i >= 21 else i) % 5000
    return {
        "ruleId": RULES[i % 3]["id"], "ruleIndex": i % 3,
        "message": {"text": f'finding {i}: "}},{{" [x, y] \\ done'},
        "locations": [{"physicalLocation": {"artifactLocation": {"uri": f"src/m{i % 7}.py"},
                                            "region": {"startLine": line, "snippet": {"text": "a},{b"}}}}],
        "codeFlows": [{"threadFlows": [{"locations": [{"location": {"message": {"text": f"step {j}"}}}
                                                      for j in range(3)]}]}],
    }


def _expected(results: list[dict[str, Any]]) -> dict[str, int]:
    """Independent count: distinct (rule, path, line), severity of the rule (no result overrides it)."""
    severity = {"py/crit": "critical", "py/warn": "medium", "py/err": "high"}
    keys: dict[tuple[str, str, int], str] = {}
    for r in results:
        physical = r["locations"][0]["physicalLocation"]
        keys.setdefault((r["ruleId"], physical["artifactLocation"]["uri"], physical["region"]["startLine"]),
                        severity[r["ruleId"]])
    counts: dict[str, int] = {}
    for s in keys.values():
        counts[s] = counts.get(s, 0) + 1
    return counts


def _parse(data: bytes, limits: ArtifactLimits | None = None) -> SecurityTally:
    return parse_sarif(lambda: io.BytesIO(data), "test.sarif", limits)


def _summary(tally: SecurityTally) -> tuple[object, ...]:
    return (tally.seen, tally.excluded, tally.duplicates, {k: v for k, v in tally.counts.items() if v},
            [f.model_dump() for f in tally.findings])


@pytest.mark.parametrize("layout", ["compact", "indented", "tool after results", "two runs"])
def test_same_findings_whatever_the_layout(layout: str) -> None:
    results = [_result(i) for i in range(N)]
    tool = {"driver": {"name": "gen", "rules": RULES}}
    if layout == "tool after results":
        doc: dict[str, Any] = {"version": "2.1.0", "runs": [{"results": results, "tool": tool}]}
    elif layout == "two runs":
        doc = {"version": "2.1.0", "runs": [{"tool": tool, "results": results[:N // 2]},
                                            {"tool": tool, "results": results[N // 2:]}]}
    else:
        doc = {"version": "2.1.0", "runs": [{"tool": tool, "results": results}]}
    data = json.dumps(doc, indent=2 if layout == "indented" else None).encode()
    tally = _parse(data)
    assert tally.seen == N and tally.excluded == 0
    assert {k: v for k, v in tally.counts.items() if v} == _expected(results)
    assert tally.duplicates == N - sum(tally.counts.values()) > 0
    assert len(tally.findings) == 1000
    first = tally.findings[0]
    assert (first.rule_id, first.path, first.line, first.title) == ("py/crit", "src/m0.py", 0, "Critical rule")
    assert tally.findings[1].title == "WarnRule" and tally.findings[2].url == "https://example.test/err"
    assert tally.findings[2].title == _result(2)["message"]["text"]  # no rule title: the message
    compact = _parse(json.dumps({"version": "2.1.0", "runs": [{"tool": tool, "results": results}]}).encode())
    assert _summary(tally) == _summary(compact)


def test_results_with_odd_types_count_as_before() -> None:
    odd: list[Any] = [
        {"ruleId": "py/warn", "properties": "not an object"},  # no score: the rule's level
        {"ruleId": "py/warn", "locations": "nowhere"},  # no location: deduplicated by rule alone
        {"ruleId": "py/warn", "locations": ["junk", {"physicalLocation": {}}]},
        {"ruleId": "py/err", "locations": [{"physicalLocation": {"artifactLocation": "a.py", "region": [1]}}]},
        {"ruleId": "py/err", "level": "note", "locations": [{"physicalLocation": {"artifactLocation": [],
                                                                                  "region": {"startLine": 9}}}]},
        {"ruleId": "py/warn", "kind": ["pass"]},  # an unhashable kind is a problem, like any unknown kind
        {"ruleId": "py/warn", "kind": "pass"},
        {"ruleId": "py/crit", "suppressions": [{"status": "underReview"}, 3]},
        {"ruleId": "py/crit", "suppressions": [{"kind": "inSource"}]},  # accepted when no status
        7, None, "text",
    ]
    results: list[Any] = []
    for i in range(3000):
        results.append(_result(i))
        if i % 250 == 0:  # odd results scattered over several batches
            results.append(odd[(i // 250) % len(odd)])
    doc = {"version": "2.1.0", "runs": [{"tool": {"driver": {"rules": RULES}}, "results": results}]}
    tally = _parse(json.dumps(doc).encode())
    good = [r for r in results if isinstance(r, dict) and "codeFlows" in r]
    expected = _expected(good)
    # the odd ones that count: py/warn without a usable location (4 results, one key), py/err without one,
    # py/err at line 9 (level note), py/crit with a suppression under review
    expected["medium"] += 1
    expected["high"] += 1
    expected["note"] = 1
    expected["critical"] += 1
    assert tally.seen == len(results)
    assert tally.excluded == 1 + 1 + 3  # kind pass, accepted suppression, three non-objects
    assert {k: v for k, v in tally.counts.items() if v} == expected


def test_deeply_nested_sarif_is_read_by_the_streaming_parser() -> None:
    deep = "[" * 3000 + "]" * 3000
    doc = ('{"runs": [{"tool": {"driver": {"rules": [{"id": "A", "properties": {"security-severity": "9"}}]}}, '
           '"results": [{"ruleId": "A", "properties": {"nested": ' + deep + '}}, {"ruleId": "B"}]}]}')
    tally = _parse(doc.encode())
    assert tally.seen == 2
    assert {k: v for k, v in tally.counts.items() if v} == {"critical": 1, "medium": 1}


@pytest.mark.parametrize(("data", "reason"), [
    (b"", "the file ends too early"),
    (b'{"runs": [{"tool": {}, "results": [{"ruleId": "A"}, {"rule', "the file ends too early"),
    (b'{"runs": []} {"runs": []}', "more data after the document"),
    (b'\xef\xbb\xbf{"runs": []}', "invalid character at byte 0"),
    (b'{"version": "2.1\xff", "runs": []}', "invalid UTF-8 near byte 16"),
    (b'{"runs": [{"tool": {"x": 1e999}}]}', "a number out of range"),
    (b'{"runs": [{"tool": {}, "results": [{"ruleId": "A", "rule": {"x": 1e999}}]}]}', "a number out of range"),
    (b'{"runs": [{"tool": {}, "results": [{"ruleId": "A"},, {"ruleId": "B"}]}]}', "invalid character"),
    (b'{"runs" [1]}', "unexpected '['"),
    (b'{"runs": [{"tool": {}} {"tool": {}}]}', "unexpected '{'"),
])
def test_malformed_json_is_refused_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(ArtifactRejected, match="test.sarif is not valid JSON") as caught:
        _parse(data)
    assert reason in str(caught.value)


def test_malformed_result_deep_in_a_large_log_is_refused() -> None:
    results = [_result(i) for i in range(N)]
    text = json.dumps({"runs": [{"tool": {"driver": {"rules": RULES}}, "results": results}]})
    broken = text.replace('"finding 9000:', '"finding 9000" "', 1).encode()
    with pytest.raises(ArtifactRejected, match="not valid JSON"):
        _parse(broken)


def test_oversized_sarif_is_refused_before_it_is_read_whole() -> None:
    results = [_result(i) for i in range(N)]
    data = json.dumps({"$schema": "https://json.schemastore.org/sarif-2.1.0.json", "version": "2.1.0",
                       "runs": [{"tool": {"driver": {"rules": RULES}}, "results": results}]}).encode()
    reads: list[int] = []

    class CountingStream(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            chunk = super().read(size)
            reads.append(len(chunk))
            return chunk

    cap = 2 * 1024 * 1024
    with pytest.raises(ArtifactRejected, match="larger than 2 MiB once decompressed"):
        parse_sarif(lambda: CappedReader(CountingStream(data), cap, "big.sarif"), "big.sarif")
    assert sum(reads) <= cap + 1024 * 1024 + 1 < len(data)
    limits = ArtifactLimits(max_member_bytes=cap)
    found = parse_artifacts([ArtifactFile.from_bytes("big.sarif", data, limits)], limits)
    assert found.problems == [("big.sarif is larger than 2 MiB once decompressed; "
                               "raise ArtifactLimits.max_member_bytes if it is genuine")]


def test_time_budget_applies_to_sarif() -> None:
    data = json.dumps({"version": "2.1.0", "runs": [{"tool": {}, "results": [_result(i) for i in range(10)]}]}).encode()
    found = parse_artifacts([ArtifactFile.from_bytes("slow.sarif", data)], ArtifactLimits(max_seconds_per_file=0.0))
    assert len(found.problems) == 1 and "took longer than 0 s to parse" in found.problems[0]


def test_finding_keys_round_trip_through_merge() -> None:
    lines = [None, 0, 1, -1, -7, 2**70, -(2**70)]
    results = [{"ruleId": "R", "locations": [{"physicalLocation": {"artifactLocation": {"uri": "a.py"},
                                                                  "region": {"startLine": n}}}]}
               for n in lines]
    results[0]["locations"] = []
    data = json.dumps({"runs": [{"tool": {}, "results": results + results}]}).encode()
    one = _parse(data)
    assert one.counts["medium"] == len(lines) and one.duplicates == len(lines)
    assert [key for key, _severity in one.keys.items()] == [("R", None if n is None else "a.py", n, None)
                                                            for n in lines]
    merged = SecurityTally()
    merged.merge(one)
    merged.merge(_parse(data))
    assert merged.counts["medium"] == len(lines)
    assert merged.duplicates == 3 * len(lines)
    capped = _parse(data, ArtifactLimits(max_tracked_findings=3))
    assert len(capped.keys) == 3 and capped.untracked == 2 * len(lines) - 3 - 3
    assert capped.counts["medium"] == 3 + capped.untracked


_MEMORY_PROBE = r"""
import json, resource, sys
from scorer.parsers.security import parse_sarif
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
tally = parse_sarif(lambda: open(sys.argv[1], "rb"), "big.sarif")
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"growth_kib": after - before, "seen": tally.seen, "counted": sum(tally.counts.values())}))
"""


def test_large_sarif_is_read_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "big.sarif"
    n = 0
    with path.open("w") as fh:
        fh.write('{"version": "2.1.0", "runs": [{"tool": {"driver": {"rules": [{"id": "R"}]}}, "results": [')
        while fh.tell() < 60 * 1024 * 1024:
            fh.write(("," if n else "") + json.dumps({
                "ruleId": "R", "message": {"text": f"finding {n} " + "x" * 300},
                "locations": [{"physicalLocation": {"artifactLocation": {"uri": f"src/f{n % 100}.py"},
                                                    "region": {"startLine": n % 100_000}}}]}))
            n += 1
        fh.write("]}]}")
    out = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, str(path)], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    figures = json.loads(out.stdout)
    assert figures["seen"] == n > 100_000 and figures["counted"] == 100_000
    # the file is 60 MiB; batches of 1 MiB and 100,000 finding keys stay far below it
    assert figures["growth_kib"] < 40 * 1024, figures


CRIT_A = {"driver": {"rules": [{"id": "A", "properties": {"security-severity": "9"}}]}}


@pytest.mark.parametrize(("doc", "counts"), [
    ({"runs": [{"results": [{"ruleId": "A"}]}]}, {}),  # no tool in the log: nothing to report
    ({"runs": [1, None, {"tool": {}, "results": [{"ruleId": "A"}]}, {"tool": CRIT_A, "results": [{"ruleId": "A", "level": "note"}]}]},
     {"medium": 1}),  # each run with its own tool: the second run's A is a duplicate of the first's
    ({"runs": [{"results": [{"ruleId": "A", "kind": "open"}]}, {"tool": CRIT_A, "results": [{"ruleId": "A", "ruleIndex": 0,
                                                                                        "locations": []}]}]},
     {"critical": 1}),  # a log's only tool applies to every run, even one before it
    ({"runs": [{"tool": CRIT_A, "graphs": [[1, [2]], [3], []], "artifacts": [{"uri": "a"}, {"uri": "b"}],
                "results": [{"ruleId": "A"}, {"ruleId": "B"}], "invocations": [{"executionSuccessful": True}]}],
      "inlineExternalProperties": [{"x": 1}, {"y": 2}]},
     {"critical": 1, "medium": 1}),
])
def test_runs_tools_and_other_members(doc: dict[str, Any], counts: dict[str, int]) -> None:
    assert {k: v for k, v in _parse(json.dumps(doc).encode()).counts.items() if v} == counts


@pytest.mark.parametrize(("data", "reason"), [
    (b"{}", "has no 'runs' array"),
    (b'[{"runs": []}]', "has no 'runs' array"),
    (b'{"runs": {"results": []}}', "has no 'runs' array"),
    (b'{"runs": null}', '"runs": null, meaning the analysis tool failed'),
    (b'{"runs": [{"results": [], "invocations": [{"executionSuccessful": false}], "tool": {}}]}',
     "executionSuccessful=false"),
    (b'{5: 1}', "expected a key at byte 1"),
])
def test_logs_that_are_not_usable_sarif_are_refused(data: bytes, reason: str) -> None:
    with pytest.raises(ArtifactRejected, match="test.sarif") as caught:
        _parse(data)
    assert reason in str(caught.value)
