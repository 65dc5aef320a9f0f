"""Test reports beyond JUnit XML: mocha, Jest, go test, RSpec, dart/flutter, TAP and pytest-json-report.

Every reader turns one file into a ``TestTally`` (the same merge as JUnit, so reruns across formats
still show up as flaky), streams its input, checks the parse deadline as it goes, and refuses a file
it cannot read to the end: a JSON document cut short, an event stream whose run never finished, a
TAP stream that stops before its plan. A refusal is an ``ArtifactRejected`` with a one-line reason.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

import ijson
import orjson

from scorer.parsers.junit import ERRORED, FAILED, PASSED, SKIPPED, TestTally, parse_test_report
from scorer.parsers.limits import ArtifactLimits, ArtifactRejected, CappedReader, Deadline, read_lines

Stream = BinaryIO | CappedReader
TestParser = Callable[[Stream, str, ArtifactLimits, Deadline], TestTally]

_MESSAGE_CHARS = 500
_CHECK_EVERY = 1024  # items between two deadline checks


def _text(value: object, limit: int = _MESSAGE_CHARS) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    return text[:limit]


def _seconds(value: object, scale: float = 1.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    number = float(value) * scale
    return number if 0 <= number < 7 * 24 * 3600 else 0.0


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _tally(limits: ArtifactLimits, fmt: str) -> TestTally:
    tally = TestTally(limits=limits)
    tally.files = 1
    tally.formats.add(fmt)
    return tally


class _JsonBudget:
    """A read-only stream that refuses a JSON report past ``limits.max_json_report_bytes``."""

    def __init__(self, raw: Stream, cap: int, what: str) -> None:
        self._raw, self._cap, self._what, self.count = raw, cap, what, 0

    def read(self, size: int = -1) -> bytes:
        """Read at most ``size`` bytes, refusing the file once it passes the cap."""
        data = self._raw.read(size if size is not None and size >= 0 else 1 << 20)
        self.count += len(data)
        if self.count > self._cap:
            raise ArtifactRejected(
                f"{self._what} is larger than {self._cap // (1 << 20)} MiB, more than a JSON test report plausibly "
                "holds; split it or raise ArtifactLimits.max_json_report_bytes"
            )
        return data


_MAX_JSON_DEPTH = 256  # far deeper than any test report nests; deeper is an attack on the parser


def _json_items(stream: Stream, what: str, fmt: str, prefixes: frozenset[str], limits: ArtifactLimits,
                deadline: Deadline) -> Iterator[tuple[str, Any]]:
    """Yield (prefix, value) for every value found at one of ``prefixes`` (ijson notation), in one pass.

    Only the values asked for are built, one at a time, so memory follows the largest single item,
    not the document; the document is capped in size and nesting. A document cut short or not JSON
    is refused.
    """
    names: list[str] = []  # per open container: the current key of a map, "item" for an array
    building: list[Any] = []  # [prefix, builder, depth] while a wanted value is being built
    wanted_depth = max(p.count(".") + 1 for p in prefixes)
    count = 0
    budget = _JsonBudget(stream, limits.max_json_report_bytes, what)
    try:
        for event, value in ijson.basic_parse(budget, use_float=True):
            if event == "map_key":
                if building:
                    building[1].event(event, value)
                else:
                    names[-1] = value
                continue
            if event in ("start_map", "start_array"):
                if len(names) >= _MAX_JSON_DEPTH:
                    raise ArtifactRejected(f"{what} nests deeper than {_MAX_JSON_DEPTH} levels; not a {fmt} report")
                if building:
                    building[1].event(event, value)
                elif len(names) <= wanted_depth and ".".join(names) in prefixes:
                    building[:] = [".".join(names), ijson.ObjectBuilder(), len(names)]
                    building[1].event(event, value)
                names.append("item" if event == "start_array" else "")
                continue
            if event in ("end_map", "end_array"):
                names.pop()
                if building:
                    building[1].event(event, value)
                    if len(names) == building[2]:
                        prefix, builder, _ = building
                        building.clear()
                        count += 1
                        if count % _CHECK_EVERY == 0:
                            deadline.check()
                        yield prefix, builder.value
                continue
            if building:
                building[1].event(event, value)
            elif len(names) <= wanted_depth and ".".join(names) in prefixes:
                yield ".".join(names), value
    except ijson.JSONError as exc:
        raise ArtifactRejected(
            f"{what} is not a complete {fmt} JSON document ({_text(exc, 120)}); it may be cut short: "
            "re-run the job or upload the whole file"
        ) from None


def _ndjson(stream: Stream, what: str, fmt: str, limits: ArtifactLimits, deadline: Deadline) -> Iterator[dict[str, Any]]:
    """Yield the JSON objects of a one-object-per-line stream; refuse a line that is not one."""
    for number, line in enumerate(read_lines(stream, limits, what, deadline), 1):
        text = line.strip()
        if not text:
            continue
        try:
            event = orjson.loads(text)
        except orjson.JSONDecodeError:
            raise ArtifactRejected(
                f"{what} line {number} is not a JSON object of {fmt} output (cut short, or other output mixed "
                "into the file): write the report with the tool's own file option, or redirect only its stdout"
            ) from None
        if not isinstance(event, dict):
            raise ArtifactRejected(f"{what} line {number} is not a JSON object; not {fmt} output")
        yield event


# --- mocha --reporter json -----------------------------------------------------------------------


def parse_mocha(stream: Stream, what: str, limits: ArtifactLimits, deadline: Deadline) -> TestTally:
    """Read mocha's JSON reporter output (``mocha --reporter json``): passes, failures and pending lists."""
    tally = _tally(limits, "mocha")
    outcome_of = {"passes.item": PASSED, "failures.item": FAILED, "pending.item": SKIPPED}
    seen_stats = False
    for prefix, item in _json_items(stream, what, "mocha", frozenset({"stats", *outcome_of}), limits, deadline):
        if prefix == "stats":
            seen_stats = isinstance(item, dict)
            if seen_stats:
                tally.duration_s = _seconds(item.get("duration"), 0.001)
            continue
        if not isinstance(item, dict):
            raise ArtifactRejected(f"{what}: an entry of '{prefix.split('.')[0]}' is not an object; not mocha JSON")
        full = _text(item.get("fullTitle") or item.get("title"), 1000)
        title = _text(item.get("title"), 1000)
        classname = full[: -len(title)].strip() if title and full.endswith(title) else ""
        err = _dict(item.get("err"))
        tally.add(classname, title or full, outcome_of[prefix], _text(item.get("file"), 1000) or None, None,
                  _text(err.get("message")))  # fmt: skip
    if not seen_stats:
        raise ArtifactRejected(f"{what} has no 'stats' object; not the output of mocha --reporter json")
    return tally


# --- jest --json ---------------------------------------------------------------------------------

_JEST_OUTCOME = {"passed": PASSED, "failed": FAILED, "pending": SKIPPED, "skipped": SKIPPED, "todo": SKIPPED,
                 "disabled": SKIPPED, "focused": PASSED}  # fmt: skip


def parse_jest(stream: Stream, what: str, limits: ArtifactLimits, deadline: Deadline) -> TestTally:
    """Read Jest's ``--json`` results: one entry per test file, each with its assertion results."""
    tally = _tally(limits, "jest")
    declared: int | None = None
    verdict: dict[str, Any] = {}  # what Jest says of the run as a whole: success, wasInterrupted
    wanted = frozenset({"numTotalTests", "testResults.item", "success", "wasInterrupted"})
    for prefix, item in _json_items(stream, what, "Jest", wanted, limits, deadline):
        if prefix == "numTotalTests":
            declared = _int(item)
            continue
        if prefix in ("success", "wasInterrupted"):
            verdict[prefix] = item
            continue
        if not isinstance(item, dict):
            raise ArtifactRejected(f"{what}: an entry of 'testResults' is not an object; not Jest JSON")
        file = _text(item.get("name") or item.get("testFilePath"), 1000) or None
        results = item.get("assertionResults") or []
        if not isinstance(results, list):
            raise ArtifactRejected(f"{what}: 'assertionResults' of {file} is not a list; not Jest JSON")
        if item.get("status") == "failed" and not any(
                isinstance(case, dict) and _JEST_OUTCOME.get(str(case.get("status")), ERRORED) in (FAILED, ERRORED)
                for case in results):
            # the file failed outside its tests: before any ran (syntax error, failing import) or around them (a
            # beforeAll or afterAll hook that threw): one error for the file
            tally.add("", file or "test file", ERRORED, file, None, _text(item.get("message")))
        for case in results:
            if not isinstance(case, dict):
                continue
            outcome = _JEST_OUTCOME.get(str(case.get("status")), ERRORED)
            location = _dict(case.get("location"))
            ancestors = _list(case.get("ancestorTitles"))
            messages = _list(case.get("failureMessages"))
            tally.add(" > ".join(_text(a, 200) for a in ancestors), _text(case.get("title"), 1000), outcome, file,
                      _int(location.get("line")), _text(messages[0] if messages else ""))  # fmt: skip
            tally.duration_s += _seconds(case.get("duration"), 0.001)
    if declared is None:
        raise ArtifactRejected(f"{what} has no 'numTotalTests'; not the output of jest --json")
    failed_run = verdict.get("success") is False or verdict.get("wasInterrupted") is True
    if failed_run and not tally.failed and not tally.errored:
        said = "was interrupted" if verdict.get("wasInterrupted") is True else "did not succeed"
        tally.add("", f"(jest: the run {said})", ERRORED, None, None,
                  f"{what}: Jest says the run {said} (interrupted, a snapshot or threshold failure) and no listed "
                  "test failed")
    return tally


# --- go test -json -------------------------------------------------------------------------------


_GO_FRAMING = re.compile(r"\s*(?:=== (?:RUN|PAUSE|CONT|NAME)|--- (?:PASS|FAIL|SKIP))\b")


def parse_go_test(stream: Stream, what: str, limits: ArtifactLimits, deadline: Deadline) -> TestTally:
    """Read ``go test -json`` events; subtests count, their parents only when they fail on their own."""
    tally = _tally(limits, "go")
    results: dict[tuple[str, str], list[Any]] = {}  # (package, test) -> [action, elapsed, output tail]
    packages: dict[str, str | None] = {}  # package -> its final action, None while running
    for event in _ndjson(stream, what, "go test -json", limits, deadline):
        action = event.get("Action")
        package = _text(event.get("Package") or event.get("ImportPath"), 1000)
        test = event.get("Test")
        if not isinstance(action, str):
            raise ArtifactRejected(f"{what} holds an event without an Action; not go test -json output")
        if package:
            packages.setdefault(package, None)  # running until its own pass, fail or skip arrives
        if action == "build-fail":
            packages[package] = "fail"
            results[(package, "[build failed]")] = ["fail", 0.0, "the package did not build"]
            continue
        if not test:
            if action in ("pass", "fail", "skip"):
                packages[package] = action
            continue
        key = (package, _text(test, 1000))
        entry = results.get(key)
        if entry is None:
            if len(results) >= limits.max_tracked_tests:
                raise ArtifactRejected(f"{what} holds more than {limits.max_tracked_tests} tests; "
                                       "split the report or raise ArtifactLimits.max_tracked_tests")
            entry = results[key] = [None, 0.0, ""]
        if action in ("pass", "fail", "skip"):
            entry[0], entry[1] = action, _seconds(event.get("Elapsed"))
        elif action == "output" and entry[0] is None:
            # keep the end of what a running test logs (its failure message), without go's own
            # "=== RUN" / "--- FAIL" framing lines
            output = _text(event.get("Output"), 4000)
            if not _GO_FRAMING.match(output):
                entry[2] = (entry[2] + output)[-_MESSAGE_CHARS:]
    unfinished = sorted(p for p, final in packages.items() if final is None)
    if unfinished:
        raise ArtifactRejected(f"{what} ends before package {unfinished[0]} finished ({len(unfinished)} unfinished); "
                               "the run was cut short or the file truncated")
    if not packages and not results:
        raise ArtifactRejected(f"{what} holds no go test events")
    parents = {name.rsplit("/", 1)[0] for _, name in results if "/" in name}
    failing_children = {name.rsplit("/", 1)[0] for (_, name), e in results.items() if "/" in name and e[0] == "fail"}
    for (package, name), (action, elapsed, output) in results.items():
        if name in parents and (action != "fail" or name in failing_children):
            continue  # a parent is its subtests; it counts only when it failed on its own
        if action is None:
            action = "fail" if packages.get(package) == "fail" else None
            if action is None:
                raise ArtifactRejected(f"{what}: test {name} in {package} never finished; the file is cut short")
            output = output or "the test never finished (panic or timeout in the package)"
        outcome = {"pass": PASSED, "fail": FAILED, "skip": SKIPPED}[action]
        tally.add(package, name, outcome, None, None, output.strip() if outcome == FAILED else "")
        tally.duration_s += elapsed if "/" not in name else 0.0
    for package, final in packages.items():
        if final == "fail" and not any(p == package and e[0] != "pass" for (p, _), e in results.items()):
            # the package failed with no failing test: TestMain, init or a panic outside a test
            tally.add(package, "[package]", ERRORED, None, None, "the package failed outside any test")
    return tally


# --- RSpec --format json -------------------------------------------------------------------------


def parse_rspec(stream: Stream, what: str, limits: ArtifactLimits, deadline: Deadline) -> TestTally:
    """Read RSpec's JSON formatter output (``rspec --format json``)."""
    tally = _tally(limits, "rspec")
    summary: dict[str, Any] | None = None
    outcome_of = {"passed": PASSED, "failed": FAILED, "pending": SKIPPED}
    for prefix, item in _json_items(stream, what, "RSpec", frozenset({"examples.item", "summary"}), limits, deadline):
        if not isinstance(item, dict):
            raise ArtifactRejected(f"{what}: '{prefix.split('.')[0]}' holds a value that is not an object; not RSpec JSON")
        if prefix == "summary":
            summary = item
            continue
        full = _text(item.get("full_description"), 1000)
        short = _text(item.get("description"), 1000)
        classname = full[: -len(short)].strip() if short and full.endswith(short) else ""
        exception = _dict(item.get("exception"))
        file = _text(item.get("file_path"), 1000).removeprefix("./") or None
        tally.add(classname, short or full, outcome_of.get(str(item.get("status")), ERRORED), file,
                  _int(item.get("line_number")), _text(exception.get("message")))  # fmt: skip
        tally.duration_s += _seconds(item.get("run_time"))
    if summary is None:
        raise ArtifactRejected(f"{what} has no 'summary'; not the complete output of rspec --format json")
    outside = _int(summary.get("errors_outside_of_examples_count")) or 0
    for i in range(min(outside, limits.max_findings)):
        # a spec file that failed to load: no example of it ran
        tally.add("", f"error outside of examples #{i + 1}", ERRORED, None, None, "an error occurred outside of examples (e.g. a spec file failed to load)")
    return tally


# --- dart test / flutter test --reporter json ----------------------------------------------------


def parse_dart(stream: Stream, what: str, limits: ArtifactLimits, deadline: Deadline) -> TestTally:
    """Read the JSON reporter events of ``dart test`` / ``flutter test`` (``--reporter json``)."""
    tally = _tally(limits, "dart")
    suites: dict[int, str] = {}
    tests: dict[int, list[Any]] = {}  # id -> [name, suite path, line, result, hidden, skipped, message]
    done: bool | None = None
    started = False
    for event in _ndjson(stream, what, "dart test --reporter json", limits, deadline):
        kind = event.get("type")
        if kind == "start":
            started = True
        elif kind == "suite" and isinstance(event.get("suite"), dict):
            suite = event["suite"]
            if _int(suite.get("id")) is not None:
                suites[suite["id"]] = _text(suite.get("path"), 1000)
        elif kind == "testStart" and isinstance(event.get("test"), dict):
            test = event["test"]
            test_id = _int(test.get("id"))
            if test_id is None:
                continue
            if len(tests) >= limits.max_tracked_tests:
                raise ArtifactRejected(f"{what} holds more than {limits.max_tracked_tests} tests; "
                                       "split the report or raise ArtifactLimits.max_tracked_tests")
            suite_id = _int(test.get("suiteID"))
            tests[test_id] = [_text(test.get("name"), 1000), suites.get(suite_id, "") if suite_id is not None else "",
                              _int(test.get("root_line")) or _int(test.get("line")), None, False, False, ""]
        elif kind == "error":
            entry = tests.get(_int(event.get("testID")) or -1)
            if entry is not None:
                if not entry[6]:
                    entry[6] = _text(event.get("error"))
                if entry[3] is not None:
                    # an error after the test completed still fails it, and shows it even if hidden
                    entry[3] = "failure" if event.get("isFailure") else "error"
                    entry[4] = False
        elif kind == "testDone":
            entry = tests.get(_int(event.get("testID")) or -1)
            if entry is not None:
                result = str(event.get("result"))
                entry[3] = "failure" if entry[3] == "failure" and result == "success" else result
                entry[4] = bool(event.get("hidden")) and result == "success"
                entry[5] = bool(event.get("skipped"))
        elif kind == "done":
            # false: a test failed; null: the runner closed before every test had run
            done = event.get("success") is True
    if not started:
        raise ArtifactRejected(f"{what} has no start event; not the output of dart test --reporter json")
    if done is None:
        raise ArtifactRejected(f"{what} has no done event: the test run did not finish or the file is cut short")
    for name, path, line, result, hidden, skipped, message in tests.values():
        if hidden:
            continue  # loading a suite, setUpAll and tearDownAll are not tests
        if result is None:
            raise ArtifactRejected(f"{what}: test {name!r} never finished although the run did; the report is inconsistent")
        outcome = SKIPPED if skipped and result == "success" else {"success": PASSED, "failure": FAILED}.get(result, ERRORED)
        tally.add(path, name, outcome, path or None, line, message)
    if not done and not tally.failed and not tally.errored:
        tally.add("", "(dart test: the run did not succeed)", ERRORED, None, None,
                  f"{what}: the done event says the run did not succeed, or that the runner closed before every "
                  "test had run, and no listed test failed")
    return tally


# --- TAP -----------------------------------------------------------------------------------------

_TAP_PLAN = re.compile(r"^1\.\.(\d+)(?:\s*#\s*(.*))?$")
_TAP_POINT = re.compile(r"^(not ok|ok)\b\s*(\d+)?\s*(?:-\s*)?([^#]*)(?:#\s*(.*))?$")
_TAP_DIRECTIVE = re.compile(r"^(skip|todo)\b\s*(.*)$", re.IGNORECASE)


def parse_tap(stream: Stream, what: str, limits: ArtifactLimits, deadline: Deadline) -> TestTally:
    """Read a TAP stream (versions 12 to 14, with indented subtests) against its top-level plan.

    A point with subtests is their container: the subtests count, the container only when it failed
    with none of them failing. A failing point's YAML ``message`` or ``error`` becomes its message.
    A stream without a plan, or that stops short of it, is refused.
    """
    tally = _tally(limits, "tap")
    planned: int | None = None
    top_points = 0
    bailed = ""
    seen: dict[int, list[int]] = {}  # depth -> [points, failing points] since the last point one level up
    failing: list[Any] = []  # [name, message] of the last counted failing point, until its YAML ends
    yaml_indent: int | None = None  # indentation of the open YAML block's "---"
    block: list[Any] = []  # [indent of the key, lines] while reading a multi-line message

    def flush() -> None:
        if failing:
            tally.add("", failing[0], FAILED, None, None, failing[1][:_MESSAGE_CHARS])
            failing.clear()

    whole_line = True
    for raw in read_lines(stream, limits, what, deadline):
        whole_line = raw.endswith("\n")
        line = raw.rstrip("\r\n")
        stripped = line.lstrip(" ")
        indent = len(line) - len(stripped)
        if yaml_indent is not None:
            if stripped == "..." and indent <= yaml_indent:
                yaml_indent = None
                block.clear()
            elif failing and not failing[1]:
                if block and stripped:
                    if indent > block[0]:
                        block[1].append(stripped)
                        if len(block[1]) == 3:
                            failing[1] = " ".join(block[1])
                    else:
                        failing[1] = " ".join(block[1]) or "(no message)"
                if not block and stripped.startswith(("message:", "error:")):
                    value = stripped.split(":", 1)[1].strip()
                    if value[:1] in ("|", ">"):
                        block[:] = [indent, []]
                    else:
                        failing[1] = value.strip("'\"")
            continue
        if not stripped:
            continue
        if stripped == "---" or stripped.startswith("--- "):  # a YAML diagnostic block of the point above
            yaml_indent = indent
            continue
        if stripped.startswith("Bail out!"):
            bailed = stripped[len("Bail out!"):].strip() or "no reason given"
            break
        depth = indent // 4
        plan = _TAP_PLAN.match(stripped)
        if plan:
            if depth == 0:
                planned = int(plan.group(1))
            continue
        point = _TAP_POINT.match(stripped)
        if not point:
            continue  # comments, "TAP version", pragmas and anything else a harness may print
        flush()
        if depth == 0:
            top_points += 1
        ok, _, description, directive = point.groups()
        name = description.strip() or f"test {top_points}"
        found = _TAP_DIRECTIVE.match(directive.strip()) if directive else None
        children, failing_children = seen.pop(depth + 1, [0, 0])
        mine = seen.setdefault(depth, [0, 0])
        mine[0] += 1
        bad = ok == "not ok" and not found
        mine[1] += bad
        if children and not (bad and not failing_children):
            continue  # a container of subtests: they were counted
        if found:
            # a skipped test did not run; a TODO test is expected to fail and never counts as a failure
            skip = found.group(1).lower() == "skip" or ok == "not ok"
            tally.add("", name, SKIPPED if skip else PASSED, None, None, found.group(2))
        elif ok == "ok":
            tally.add("", name, PASSED, None, None, "")
        else:
            failing[:] = [name, ""]
    if not whole_line and not bailed:
        # producers end every line; a last line without its end is where the file was cut
        raise ArtifactRejected(f"{what} ends in the middle of a line; the TAP stream is cut short")
    flush()
    if bailed:
        tally.add("", "Bail out!", ERRORED, None, None, bailed)
        return tally
    if planned is None:
        raise ArtifactRejected(f"{what} has no top-level plan line (1..N); the TAP stream is cut short or not TAP")
    if top_points != planned:
        raise ArtifactRejected(f"{what} planned {planned} tests but holds {top_points}; the TAP stream is cut short")
    return tally


# --- pytest-json-report --------------------------------------------------------------------------

_PYTEST_OUTCOME = {"passed": PASSED, "failed": FAILED, "error": ERRORED, "skipped": SKIPPED, "xfailed": SKIPPED,
                   "xpassed": PASSED, "rerun": None}  # fmt: skip
# what pytest's exit code says when it is not 0 (passed) or 5 (no tests collected)
_PYTEST_EXIT = {1: "tests failed", 2: "the run was interrupted", 3: "an internal error", 4: "a usage error"}


def _pytest_message(test: dict[str, Any]) -> tuple[str, int | None]:
    for stage in ("call", "setup", "teardown"):
        info = test.get(stage)
        if isinstance(info, dict) and info.get("outcome") in ("failed", "error"):
            crash = _dict(info.get("crash"))
            return _text(crash.get("message") or info.get("longrepr")), _int(crash.get("lineno"))
    return "", None


def parse_pytest_json(stream: Stream, what: str, limits: ArtifactLimits, deadline: Deadline) -> TestTally:
    """Read a pytest-json-report file (``pytest --json-report``): tests and failed collectors."""
    tally = _tally(limits, "pytest-json")
    summary: dict[str, Any] | None = None
    wanted = frozenset({"summary", "tests.item", "collectors.item", "duration", "exitcode"})
    seen_tests = False
    exitcode: int | None = None
    for prefix, item in _json_items(stream, what, "pytest-json-report", wanted, limits, deadline):
        if prefix == "duration":
            tally.duration_s = _seconds(item)
            continue
        if prefix == "exitcode":
            exitcode = _int(item)
            continue
        if not isinstance(item, dict):
            raise ArtifactRejected(f"{what}: '{prefix.split('.')[0]}' holds a value that is not an object; "
                                   "not a pytest-json-report file")  # fmt: skip
        if prefix == "summary":
            summary = item
        elif prefix == "collectors.item":
            if item.get("outcome") == "failed":
                node = _text(item.get("nodeid"), 1000)
                tally.add("", node or "collection", ERRORED, node.split("::")[0] or None, None,
                          _text(item.get("longrepr")))  # fmt: skip
        else:
            seen_tests = True
            node = _text(item.get("nodeid"), 1000)
            outcome = _PYTEST_OUTCOME.get(str(item.get("outcome")), ERRORED)
            if outcome is None:
                continue  # an attempt pytest-rerunfailures repeated; the final one follows
            file, _, name = node.partition("::")
            message, crash_line = _pytest_message(item) if outcome in (FAILED, ERRORED) else ("", None)
            line = _int(item.get("lineno"))
            tally.add(file.removesuffix(".py").replace("/", "."), name or node, outcome, file or None,
                      crash_line or (line + 1 if line is not None else None), message)  # fmt: skip
    if summary is None:
        raise ArtifactRejected(f"{what} has no 'summary'; not a complete pytest-json-report file")
    if not seen_tests and tally.cases == 0:
        # written with --json-report-summary: only totals, like a JUnit file without test cases
        tally.passed = (_int(summary.get("passed")) or 0) + (_int(summary.get("xpassed")) or 0)
        tally.failed = _int(summary.get("failed")) or 0
        tally.errored = _int(summary.get("error")) or 0
        tally.skipped = (_int(summary.get("skipped")) or 0) + (_int(summary.get("xfailed")) or 0)
        tally.cases = tally.passed + tally.failed + tally.errored + tally.skipped
    said = _PYTEST_EXIT.get(exitcode) if exitcode is not None else None
    if said is not None and not tally.failed and not tally.errored:
        # pytest says the run failed though no listed test did: it stopped or crashed, and what it lists is not
        # the whole suite (5, no tests collected, is an empty report, judged as one)
        tally.add("", f"(pytest: {said})", ERRORED, None, None, f"{what}: pytest ended with exit code {exitcode} "
                  f"({said}) and no listed test failed")
    return tally



TEST_PARSERS: dict[str, TestParser] = {
    "junit": parse_test_report,
    "trx": parse_test_report,
    "mocha": parse_mocha,
    "jest": parse_jest,
    "gotest": parse_go_test,
    "rspec": parse_rspec,
    "dart": parse_dart,
    "tap": parse_tap,
    "pytest_json": parse_pytest_json,
}
