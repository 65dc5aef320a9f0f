"""Benchmark gonogo's streaming artifact parsers against a DOM parse of the same files.

Generates a ~100 MB JUnit file (pytest-like: 1% failing, 0.5% skipped, every test id distinct) and a
~50 MB SARIF file in a temporary folder, then runs each probe in its own fresh interpreter, so one
measurement's memory does not inflate the next. Prints a table; exits 0 whatever the figures (this
is a report, not a test).

What is compared, on the same file:
- gonogo junit: ``parse_test_report(...).to_part([])``, the full work gonogo does in production
  (totals, durations, failing cases with file/line/message, rerun bookkeeping for flaky detection).
- etree DOM junit: ``xml.etree.ElementTree.parse`` of the whole file, then a walk counting total,
  failed and skipped cases. It does less than gonogo (no messages, no rerun bookkeeping), so the
  ratio flatters the DOM side, not ours.
- junitparser DOM junit: ``JUnitXml.fromfile`` and the same count (runs only if junitparser is
  installed; it is not a gonogo dependency).
- gonogo sarif: ``parse_sarif`` (1 MiB chunks, results decoded in msgspec batches: counts by
  severity, deduplication, rule lookup, findings) against ``json.load`` of the whole SARIF file and a
  deduplication of the results by rule and location.

Figures: wall seconds and CPU seconds (user + system) of the parse alone, median over the rounds;
peak RSS of the probe's process, which includes about 115 MiB of imports (numpy, scipy, pydantic:
gonogo loads them anyway) that every probe loads before it starts; growth = peak RSS minus the RSS
before the parse. Each round runs every probe once, interleaved, and the speed-up is the median of
the per-round ratios, so load from other processes on the machine hits both sides of a ratio alike.
The target lines check issue #4's targets for each file: under 5 s, peak RSS under 150 MiB, at least
3x faster than the DOM parse (etree for JUnit, json.load for SARIF).

    .venv/bin/python benchmarks/parse.py [--junit-mb 100] [--sarif-mb 50] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

GONOGO_JUNIT, ETREE_JUNIT, JUNITPARSER = (
    "gonogo junit (expat stream)", "etree DOM junit (ET.parse + walk)", "junitparser DOM junit")
GONOGO_SARIF, JSON_SARIF = "gonogo sarif (msgspec batches)", "json.load DOM sarif"
TARGET_SECONDS, TARGET_PEAK_MIB, TARGET_SPEEDUP = 5.0, 150.0, 3.0

PROBES = {
    GONOGO_JUNIT: """
from scorer.parsers.junit import parse_test_report
with open(PATH, "rb") as fh:
    part = parse_test_report(fh, "bench").to_part([])
result = (part.total, part.failed, part.skipped)
""",
    ETREE_JUNIT: """
import xml.etree.ElementTree as ET
root = ET.parse(PATH).getroot()
failed = skipped = total = 0
for case in root.iter("testcase"):
    total += 1
    if case.find("failure") is not None or case.find("error") is not None:
        failed += 1
    elif case.find("skipped") is not None:
        skipped += 1
result = (total, failed, skipped)
""",
    JUNITPARSER: """
from junitparser import JUnitXml, Failure, Error, Skipped
xml = JUnitXml.fromfile(PATH)
failed = skipped = total = 0
for suite in xml:
    for case in suite:
        total += 1
        kinds = {type(r) for r in case.result}
        if Failure in kinds or Error in kinds:
            failed += 1
        elif Skipped in kinds:
            skipped += 1
result = (total, failed, skipped)
""",
    GONOGO_SARIF: """
from scorer.parsers.security import parse_sarif
tally = parse_sarif(lambda: open(PATH, "rb"), "bench")
result = (tally.seen, sum(tally.counts.values()))
""",
    JSON_SARIF: """
import json
with open(PATH, "rb") as fh:
    doc = json.load(fh)
seen = sum(len(run.get("results") or []) for run in doc["runs"])
keys = {(r.get("ruleId"), r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
         r["locations"][0]["physicalLocation"]["region"]["startLine"]) for run in doc["runs"] for r in run["results"]}
result = (seen, len(keys))
""",
}

RUNNER = """
import json, resource, sys, time
import xml.etree.ElementTree
import scorer.parsers  # imports (numpy, scipy, pydantic) are not the parser's memory: load them first
try:
    import junitparser
except ImportError:
    pass
PATH = sys.argv[1]
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start, cpu_start = time.perf_counter(), time.process_time()
{body}
seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"seconds": seconds, "cpu": cpu, "peak_mib": peak / 1024, "growth_mib": (peak - base) / 1024,
                  "result": list(result)}}))
"""


def write_junit(path: Path, target_mb: int) -> None:
    """Write a pytest-like JUnit file: 1% failing, 0.5% skipped test cases."""
    with path.open("w", encoding="utf-8") as fh:
        fh.write('<?xml version="1.0" encoding="utf-8"?>\n<testsuites>\n')
        suite = 0
        while fh.tell() < target_mb * 1024 * 1024:
            fh.write(f'<testsuite name="suite{suite}" tests="1000" failures="10" skipped="5" time="12.5">\n')
            for i in range(1000):
                attrs = f'classname="pkg.mod{suite}.TestClass" name="test_case_{i}" file="tests/test_mod{suite}.py" line="{i}" time="0.0123"'
                if i % 100 == 0:
                    fh.write(f'  <testcase {attrs}><failure message="assert 1 == 2">Traceback\nassert 1 == 2</failure></testcase>\n')
                elif i % 200 == 5:
                    fh.write(f'  <testcase {attrs}><skipped message="not today"/></testcase>\n')
                else:
                    fh.write(f"  <testcase {attrs}/>\n")
            fh.write("</testsuite>\n")
            suite += 1
        fh.write("</testsuites>\n")


def write_sarif(path: Path, target_mb: int) -> None:
    """Write a CodeQL-like SARIF 2.1.0 log with one run and many results."""
    rules = [{"id": f"py/rule-{r}", "shortDescription": {"text": f"Rule {r}"},
              "properties": {"security-severity": str(2.0 + r % 8)}} for r in range(50)]
    with path.open("w", encoding="utf-8") as fh:
        fh.write('{"$schema": "https://json.schemastore.org/sarif-2.1.0.json", "version": "2.1.0", "runs": [')
        fh.write('{"tool": {"driver": {"name": "bench", "rules": ' + json.dumps(rules) + '}}, "results": [')
        i = 0
        while fh.tell() < target_mb * 1024 * 1024:
            result = {"ruleId": f"py/rule-{i % 50}", "ruleIndex": i % 50, "level": "warning",
                      "message": {"text": f"Possible problem number {i} in this file"},
                      "locations": [{"physicalLocation": {"artifactLocation": {"uri": f"src/module_{i % 997}.py"},
                                                          "region": {"startLine": i % 5000 + 1, "startColumn": 5}}}],
                      "partialFingerprints": {"primaryLocationLineHash": f"{i:016x}:1"}}
            fh.write(("," if i else "") + json.dumps(result))
            i += 1
        fh.write("]}]}")


def measure(name: str, path: Path) -> dict[str, object]:
    """Run one probe in a fresh interpreter and return its figures."""
    code = RUNNER.format(body=PROBES[name])
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, cwd=ROOT,
                          check=False)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
    figures: dict[str, object] = json.loads(proc.stdout)
    return figures


def _ratio(runs: dict[str, list[dict[str, object]]], slow: str, fast: str, key: str) -> float | None:
    """Median over the rounds of slow/fast for ``key``: both sides of each ratio ran back to back."""
    if slow not in runs or fast not in runs:
        return None
    return statistics.median(float(s[key]) / float(f[key])  # type: ignore[arg-type]
                             for s, f in zip(runs[slow], runs[fast], strict=True))


def main() -> None:
    """Generate the inputs, run the probes interleaved round by round, and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--junit-mb", type=int, default=100)
    ap.add_argument("--sarif-mb", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=3, help="rounds; medians over the rounds are reported")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        junit, sarif = Path(tmp) / "TEST-bench.xml", Path(tmp) / "bench.sarif"
        write_junit(junit, args.junit_mb)
        write_sarif(sarif, args.sarif_mb)
        print(f"inputs: JUnit {junit.stat().st_size / 2**20:.0f} MiB, SARIF {sarif.stat().st_size / 2**20:.0f} MiB; "
              f"{args.repeat} rounds, every probe once per round in a fresh interpreter")
        runs: dict[str, list[dict[str, object]]] = {name: [] for name in PROBES}
        errors: dict[str, str] = {}
        for _ in range(args.repeat):
            for name in PROBES:
                if name in errors:
                    continue
                figures = measure(name, junit if "junit" in name else sarif)
                if "error" in figures:
                    errors[name] = str(figures["error"])
                    del runs[name]
                else:
                    runs[name].append(figures)
        print(f"{'parser':36} {'wall s':>7} {'CPU s':>6} {'peak RSS MiB':>13} {'growth MiB':>11}  result")
        for name in PROBES:
            if name in errors:
                print(f"{name:36} skipped: {errors[name]}")
                continue
            wall = statistics.median(float(r["seconds"]) for r in runs[name])  # type: ignore[arg-type]
            cpu = statistics.median(float(r["cpu"]) for r in runs[name])  # type: ignore[arg-type]
            peak = max(float(r["peak_mib"]) for r in runs[name])  # type: ignore[arg-type]
            growth = max(float(r["growth_mib"]) for r in runs[name])  # type: ignore[arg-type]
            print(f"{name:36} {wall:7.2f} {cpu:6.2f} {peak:13.0f} {growth:11.0f}  {runs[name][0]['result']}")
        print("medians over rounds; peak and growth: the largest over rounds")
        for slow, fast, label in ((ETREE_JUNIT, GONOGO_JUNIT, "JUnit speed-up vs etree DOM"),
                                  (JUNITPARSER, GONOGO_JUNIT, "JUnit speed-up vs junitparser"),
                                  (JSON_SARIF, GONOGO_SARIF, "SARIF time ratio json.load / gonogo")):
            wall_ratio, cpu_ratio = _ratio(runs, slow, fast, "seconds"), _ratio(runs, slow, fast, "cpu")
            if wall_ratio is not None and cpu_ratio is not None:
                same = runs[slow][0]["result"] == runs[fast][0]["result"]
                print(f"{label}: {wall_ratio:.1f}x wall, {cpu_ratio:.1f}x CPU "
                      f"(results {'agree' if same else 'DIFFER'})")
        for label, ours, dom, dom_name in (("JUnit", GONOGO_JUNIT, ETREE_JUNIT, "etree DOM"),
                                           ("SARIF", GONOGO_SARIF, JSON_SARIF, "json.load")):
            if ours not in runs or dom not in runs:
                continue
            wall = statistics.median(float(r["seconds"]) for r in runs[ours])  # type: ignore[arg-type]
            peak = max(float(r["peak_mib"]) for r in runs[ours])  # type: ignore[arg-type]
            speedup = _ratio(runs, dom, ours, "seconds") or 0.0
            checks = [(wall < TARGET_SECONDS, f"under {TARGET_SECONDS:g} s ({wall:.2f} s)"),
                      (peak < TARGET_PEAK_MIB, f"peak RSS under {TARGET_PEAK_MIB:g} MiB ({peak:.0f} MiB)"),
                      (speedup >= TARGET_SPEEDUP, f"at least {TARGET_SPEEDUP:g}x faster than {dom_name} ({speedup:.1f}x)")]
            print(f"{label} target (issue #4): " + "; ".join(f"{text} {'met' if ok else 'NOT MET'}" for ok, text in checks))


if __name__ == "__main__":
    main()
