"""Measure the JSON and line-based test-report readers on large generated reports: time and memory.

Generates a Jest ``--json`` report (one test file entry per 200 tests, 1 % failing) and a
``go test -json`` stream of about the same number of tests, each of ``--mb`` megabytes, then reads
each through ``parse_artifacts`` in a fresh interpreter and prints wall and CPU seconds and the peak
RSS growth of the parse (imports excluded). It shows that memory follows the largest single entry,
not the file: the figures are a report, not a test, and the script exits 0 whatever they are.

    .venv/bin/python benchmarks/parse_testformats.py [--mb 50]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

RUNNER = """
import json, resource, sys, time
from scorer.parsers import ArtifactFile, parse_artifacts
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start, cpu_start = time.perf_counter(), time.process_time()
results = parse_artifacts([ArtifactFile.from_path(sys.argv[1])])
seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = results.tests
print(json.dumps({"seconds": seconds, "cpu": cpu, "growth_mib": (peak - base) / 1024,
                  "kind": results.kinds, "total": t.total, "failed": t.failed, "problems": results.problems}))
"""


def write_jest(path: Path, target_mb: int) -> None:
    """Write a Jest --json report of many test files, 1 % of tests failing."""
    with path.open("w", encoding="utf-8") as fh:
        fh.write('{"numFailedTests": 0, "numTotalTests": 0, "success": false, "testResults": [')
        n = 0
        while fh.tell() < target_mb * 1024 * 1024:
            cases = []
            for i in range(200):
                failing = i % 100 == 0
                cases.append({"ancestorTitles": [f"module {n}"], "fullName": f"module {n} case {i}", "title": f"case {i}",
                              "status": "failed" if failing else "passed", "duration": 3,
                              "failureMessages": ["Error: expect(received).toBe(expected)\n    at Object.<anonymous>"] if failing else []})  # fmt: skip
            fh.write(("," if n else "") + json.dumps({"name": f"/src/app/module{n}.test.js", "status": "passed",
                                                      "message": "", "assertionResults": cases}))  # fmt: skip
            n += 1
        fh.write("]}")


def write_go(path: Path, target_mb: int) -> None:
    """Write a go test -json stream: per test run, output, pass or fail, and a final event per package."""
    with path.open("w", encoding="utf-8") as fh:
        pkg = 0
        while fh.tell() < target_mb * 1024 * 1024:
            name = f"example.com/app/pkg{pkg}"
            for i in range(200):
                test = f"TestCase{i}"
                fh.write(json.dumps({"Action": "run", "Package": name, "Test": test}) + "\n")
                fh.write(json.dumps({"Action": "output", "Package": name, "Test": test, "Output": f"=== RUN   {test}\n"}) + "\n")
                action = "fail" if i % 100 == 0 else "pass"
                if action == "fail":
                    fh.write(json.dumps({"Action": "output", "Package": name, "Test": test,
                                         "Output": "    x_test.go:12: got 1, want 2\n"}) + "\n")  # fmt: skip
                fh.write(json.dumps({"Action": action, "Package": name, "Test": test, "Elapsed": 0.01}) + "\n")
            fh.write(json.dumps({"Action": "fail", "Package": name, "Elapsed": 2.0}) + "\n")
            pkg += 1


def main() -> None:
    """Generate the two reports and measure each in a fresh interpreter."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=50)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        jest, go = Path(tmp) / "jest-results.json", Path(tmp) / "go-test.json"
        write_jest(jest, args.mb)
        write_go(go, args.mb)
        print(f"{'report':22} {'MiB':>5} {'wall s':>7} {'CPU s':>6} {'growth MiB':>11} {'tests':>9} {'failed':>7}")
        for path in (jest, go):
            proc = subprocess.run([sys.executable, "-c", RUNNER, str(path)], capture_output=True, text=True, cwd=ROOT,
                                  check=False)  # fmt: skip
            if proc.returncode != 0:
                print(f"{path.name:22} failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr else '?'}")
                continue
            f = json.loads(proc.stdout)
            print(f"{path.name:22} {path.stat().st_size / 2**20:5.0f} {f['seconds']:7.2f} {f['cpu']:6.2f} "
                  f"{f['growth_mib']:11.1f} {f['total']:9d} {f['failed']:7d}" + (f"  {f['problems']}" if f["problems"] else ""))


if __name__ == "__main__":
    main()
