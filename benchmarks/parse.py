"""Benchmark gonogo's streaming artifact parsers against a DOM parse of the same files.

Generates a ~100 MB JUnit file and a ~50 MB SARIF file in a temporary folder, then measures wall
time and peak RSS of each parser in its own subprocess (so one measurement's memory does not
inflate the next). Prints a table; exits 0 whatever the figures (this is a report, not a test).

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

PROBES = {
    "gonogo junit (expat stream)": """
from scorer.parsers.junit import parse_test_report
with open(PATH, "rb") as fh:
    part = parse_test_report(fh, "bench").to_part([])
result = (part.total, part.failed, part.skipped)
""",
    "etree DOM junit (ET.parse + walk)": """
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
    "junitparser DOM junit": """
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
    "gonogo sarif (ijson stream)": """
from scorer.parsers.security import parse_sarif
tally = parse_sarif(lambda: open(PATH, "rb"), "bench")
result = (tally.seen, sum(tally.counts.values()))
""",
    "json.load DOM sarif": """
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
start = time.perf_counter()
{body}
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"seconds": seconds, "peak_mib": peak / 1024, "growth_mib": (peak - base) / 1024,
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
    return json.loads(proc.stdout)


def main() -> None:
    """Generate the inputs, run each probe, and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--junit-mb", type=int, default=100)
    ap.add_argument("--sarif-mb", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=3, help="runs per probe; the median time is reported")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        junit, sarif = Path(tmp) / "TEST-bench.xml", Path(tmp) / "bench.sarif"
        write_junit(junit, args.junit_mb)
        write_sarif(sarif, args.sarif_mb)
        print(f"inputs: JUnit {junit.stat().st_size / 2**20:.0f} MiB, SARIF {sarif.stat().st_size / 2**20:.0f} MiB")
        print(f"{'parser':38} {'median s':>9} {'peak RSS MiB':>13} {'growth MiB':>11}  result")
        medians: dict[str, float] = {}
        for name in PROBES:
            path = junit if "junit" in name else sarif
            runs = [measure(name, path) for _ in range(args.repeat)]
            if any("error" in r for r in runs):
                print(f"{name:38} skipped: {runs[0].get('error')}")
                continue
            median = statistics.median(float(r["seconds"]) for r in runs)  # type: ignore[arg-type]
            peak = max(float(r["peak_mib"]) for r in runs)  # type: ignore[arg-type]
            growth = max(float(r["growth_mib"]) for r in runs)  # type: ignore[arg-type]
            medians[name] = median
            print(f"{name:38} {median:9.2f} {peak:13.0f} {growth:11.0f}  {runs[0]['result']}")
        ours, dom = medians.get("gonogo junit (expat stream)"), medians.get("etree DOM junit (ET.parse + walk)")
        if ours and dom:
            print(f"JUnit speed-up vs etree DOM: {dom / ours:.1f}x")
        jp = medians.get("junitparser DOM junit")
        if ours and jp:
            print(f"JUnit speed-up vs junitparser: {jp / ours:.1f}x")
        s_ours, s_dom = medians.get("gonogo sarif (ijson stream)"), medians.get("json.load DOM sarif")
        if s_ours and s_dom:
            print(f"SARIF time ratio json.load / gonogo: {s_dom / s_ours:.2f}x")


if __name__ == "__main__":
    main()
