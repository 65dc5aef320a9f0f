"""Read SARIF 2.1.0 and Trivy JSON reports into deduplicated security findings counted by severity.

SARIF is read in bounded chunks: the outline (runs, tool, invocations) is walked key by key, and the
results arrays are cut into batches of about ``_BATCH`` bytes that msgspec decodes into structs
declaring only the fields gonogo reads (everything else is skipped in C). Values nested deeper than
msgspec's recursion limit send the file to the streaming ijson reader, which has no such limit.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import ijson
import msgspec

from scorer.evidence import SecurityFinding, Severity
from scorer.parsers.limits import ArtifactLimits, ArtifactRejected, CappedReader, Deadline

Stream = BinaryIO | CappedReader
Opener = Callable[[], Stream]
SEVERITIES: tuple[Severity, ...] = ("critical", "high", "medium", "low", "note")
_LEVELS: dict[str, Severity] = {"error": "high", "warning": "medium", "note": "note", "none": "note"}
_TRIVY: dict[str, Severity] = {"CRITICAL": "critical", "HIGH": "high", "MEDIUM": "medium", "LOW": "low"}
# results of these kinds are not problems (SARIF 3.27.9): a passed check, an inapplicable rule, a remark
_NOT_A_PROBLEM = frozenset({"pass", "notApplicable", "informational"})
TITLE_CHARS = 200
Key = tuple[str, str | None, int | None, str | None]


def cvss_severity(score: float) -> Severity:
    """Map a CVSS-style security-severity score to a severity bucket."""
    if score >= 9.0:
        return "critical"
    if score >= 7.0:
        return "high"
    if score >= 4.0:
        return "medium"
    if score > 0.0:
        return "low"
    return "note"


class FindingKeys:
    """Distinct finding keys, each packed into one int, with the severity it was first counted at.

    A dict of (rule, path, line, package) tuples costs about 250 bytes a key (a 150,000-result
    SARIF log held 39 MiB of them); here each string is stored once and given a code, and a key is
    one int made of its codes and its line, about 80 bytes with its dict slot. Exact: distinct keys
    never share an int. At most ``cap`` keys are remembered.
    """

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._bits = max(20, (3 * cap + 1).bit_length())  # room for the codes of 3 strings a key
        self._codes: dict[object, int] = {}  # string -> code; None is 0
        self._strings: list[object] = [None]  # code -> string
        self._severity: dict[int, Severity] = {}  # packed key -> severity, in the order first seen

    def __len__(self) -> int:
        return len(self._severity)

    def _code(self, value: object) -> int:
        code = self._codes.get(value)
        if code is None:
            code = self._codes[value] = len(self._strings)
            self._strings.append(value)
        return code

    def add(self, key: Key, severity: Severity) -> int:
        """Return 0 if ``key`` was seen, else 1 and remember it, or 2 when ``cap`` keys are kept already."""
        rule_id, path, line, package = key
        codes = self._codes
        rule = 0 if rule_id is None else codes.get(rule_id)
        where = 0 if path is None else codes.get(path)
        pkg = 0 if package is None else codes.get(package)
        known = rule is not None and where is not None and pkg is not None
        if not known:
            if len(self._severity) >= self.cap:
                return 2  # a string never kept: the key is new
            rule = self._code(rule_id) if rule is None else rule
            where = self._code(path) if where is None else where
            pkg = self._code(package) if pkg is None else pkg
        # line None -> 0, n >= 0 -> 2n + 1, n < 0 -> -2n: every int line has its own code
        line_code = 0 if line is None else 2 * line + 1 if line >= 0 else -2 * line
        bits = self._bits
        packed = (((line_code << bits | pkg) << bits | where) << bits) | rule  # type: ignore[operator]
        if known:
            if packed in self._severity:
                return 0
            if len(self._severity) >= self.cap:
                return 2
        self._severity[packed] = severity
        return 1

    def values(self) -> Iterator[Severity]:
        """Severities of the kept keys, in the order they were first seen."""
        return iter(self._severity.values())

    def items(self) -> Iterator[tuple[Key, Severity]]:
        """Kept keys and their severities, in the order they were first seen."""
        bits, strings = self._bits, self._strings
        mask = (1 << bits) - 1
        for packed, severity in self._severity.items():
            line_code = packed >> 3 * bits
            line = None if line_code == 0 else (line_code - 1) // 2 if line_code % 2 else -(line_code // 2)
            key = (strings[packed & mask], strings[packed >> bits & mask], line, strings[packed >> 2 * bits & mask])
            yield key, severity  # type: ignore[misc]


@dataclass
class SecurityTally:
    """Findings of one or more reports, deduplicated by rule and location (or package)."""

    limits: ArtifactLimits = field(default_factory=ArtifactLimits)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SEVERITIES, 0))
    findings: list[SecurityFinding] = field(default_factory=list)  # first max_findings, worst first at the end
    keys: FindingKeys = field(init=False, repr=False, compare=False)
    seen: int = 0  # results read
    excluded: int = 0  # not problems: passed, suppressed, fixed (baseline absent), PASS misconfigurations
    duplicates: int = 0
    untracked: int = 0  # beyond max_tracked_findings: counted without deduplication
    files: int = 0

    def __post_init__(self) -> None:
        self.keys = FindingKeys(self.limits.max_tracked_findings)

    def count(self, key: Key, severity: Severity) -> bool:
        """Count a finding unless its key was counted before; return whether it was new."""
        added = self.keys.add(key, severity)
        if not added:
            self.duplicates += 1
            return False
        if added == 2:
            self.untracked += 1
        self.counts[severity] += 1
        return True

    def add(self, finding: tuple[str, Severity, str, str | None, int | None, str | None, str | None, str]) -> None:
        """Count one finding given as (rule_id, severity, title, path, line, url, package, source)."""
        rule_id, severity, title, path, line, url, package, source = finding
        if self.count((rule_id, path, line, package), severity) and len(self.findings) < self.limits.max_findings:
            self.findings.append(SecurityFinding(
                source=source,  # type: ignore[arg-type]
                rule_id=rule_id, severity=severity, title=title[:TITLE_CHARS], path=path, line=line,
                url=url, package=package))

    def merge(self, other: SecurityTally) -> None:
        """Fold another file's findings into this one, deduplicating across files."""
        self.seen += other.seen
        self.excluded += other.excluded
        self.duplicates += other.duplicates
        self.untracked += other.untracked
        self.files += other.files
        kept = {f.key: f for f in other.findings}
        for key, severity in other.keys.items():
            if not self.keys.add(key, severity):
                self.duplicates += 1
                continue
            self.counts[severity] += 1
            found = kept.get(key)
            if found is not None and len(self.findings) < self.limits.max_findings:
                self.findings.append(found)
        for bucket, n in other.counts.items():
            # findings the other file could not track are counted as they are
            tracked = sum(1 for s in other.keys.values() if s == bucket) if other.untracked else n
            self.counts[bucket] += n - tracked

    def sorted_findings(self) -> list[SecurityFinding]:
        """Kept findings, most severe first."""
        order = {s: i for i, s in enumerate(SEVERITIES)}
        return sorted(self.findings, key=lambda f: order[f.severity])


def _text(obj: Any) -> str:
    if isinstance(obj, dict):
        text = obj.get("text") or obj.get("markdown") or ""
        return text if isinstance(text, str) else ""
    return ""


def _score(props: Any) -> float | None:
    return _score_value(props.get("security-severity")) if isinstance(props, dict) else None


def _score_value(raw: object) -> float | None:
    if raw is None:
        return None
    try:
        return float(str(raw))
    except ValueError:
        return None


class _Rules:
    """Rule metadata of one run, by id and by index into the driver's rules."""

    def __init__(self, tool: Any) -> None:
        self.by_id: dict[str, dict[str, Any]] = {}
        self.by_index: list[dict[str, Any]] = []
        # what a result needs from its rule, per (ruleId, ruleIndex) of results without a "rule" reference
        self.facts: dict[tuple[object, object], _RuleFacts] = {}
        if not isinstance(tool, dict):
            return
        components = [tool.get("driver")] + list(tool.get("extensions") or [])
        for n, component in enumerate(components):
            if not isinstance(component, dict):
                continue
            for rule in component.get("rules") or []:
                if not isinstance(rule, dict):
                    continue
                if n == 0:
                    self.by_index.append(rule)
                rule_id = rule.get("id")
                if isinstance(rule_id, str):
                    self.by_id.setdefault(rule_id, rule)

    def find(self, rule_id: object, index: object, rule_ref: object) -> tuple[str, dict[str, Any]]:
        """Return the result's rule id and rule (empty when unknown); ``index`` is _MISSING when absent."""
        ref: dict[str, Any] = rule_ref if isinstance(rule_ref, dict) else {}
        rule_id = rule_id or ref.get("id")
        if index is _MISSING:
            index = ref.get("index")
        rule: dict[str, Any] | None = None
        if isinstance(rule_id, str):
            rule = self.by_id.get(rule_id) or self.by_id.get(rule_id.split("/")[0])
        if rule is None and isinstance(index, int) and 0 <= index < len(self.by_index):
            rule = self.by_index[index]
        if not isinstance(rule_id, str):
            rule_id = rule["id"] if rule and isinstance(rule.get("id"), str) else "unknown"
        return str(rule_id), rule or {}

    def facts_of(self, rule_id: object, index: object, rule_ref: object) -> _RuleFacts:
        """Return what a result with these rule references takes from its rule (cached when hashable)."""
        cacheable = rule_ref is None and (rule_id is None or type(rule_id) is str) and (
            index is _MISSING or index is None or type(index) is int)  # not bool or float: True == 1 == 1.0
        if cacheable:
            known = self.facts.get((rule_id, index))
            if known is not None:
                return known
        found_id, rule = self.find(rule_id, index, rule_ref)
        config = rule.get("defaultConfiguration")
        level = config.get("level") if isinstance(config, dict) else None
        name = rule.get("name")
        facts = _RuleFacts(
            rule_id=found_id, score=_score(rule.get("properties")), level=level if isinstance(level, str) else None,
            title=_text(rule.get("shortDescription")) or (name if isinstance(name, str) else ""),
            url=rule.get("helpUri") if isinstance(rule.get("helpUri"), str) else None)
        if cacheable:
            self.facts[(rule_id, index)] = facts
        return facts


@dataclass(frozen=True, slots=True)
class _RuleFacts:
    rule_id: str
    score: float | None  # the rule's security-severity
    level: str | None  # the rule's defaultConfiguration.level, when a string
    title: str  # shortDescription or name; empty: the result's message is the title
    url: str | None


class _Missing:
    """The marker of a key absent from a result (``ruleIndex`` absent and ``null`` differ)."""

    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Any = _Missing()


def _severity(score: float | None, level: object, facts: _RuleFacts) -> Severity:
    if score is None:
        score = facts.score
    if score is not None:
        return cvss_severity(score)
    if not isinstance(level, str):
        level = facts.level
    return _LEVELS.get(level if isinstance(level, str) else "warning", "medium")


def _sarif_finding(result: Any, rules: _Rules, tally: SecurityTally) -> None:
    """Count one result given as decoded JSON (any shape); _tally_results is the fast form of this."""
    tally.seen += 1
    if not isinstance(result, dict):
        tally.excluded += 1
        return
    kind = result.get("kind", "fail")
    if (isinstance(kind, str) and kind in _NOT_A_PROBLEM) or result.get("baselineState") == "absent":
        tally.excluded += 1
        return
    if _suppressed(result.get("suppressions")):
        tally.excluded += 1
        return
    facts = rules.facts_of(result.get("ruleId"), result.get("ruleIndex", _MISSING), result.get("rule"))
    severity = _severity(_score(result.get("properties")), result.get("level"), facts)
    path: str | None = None
    line: int | None = None
    locations = result.get("locations")
    if isinstance(locations, list) and locations and isinstance(locations[0], dict):
        physical = locations[0].get("physicalLocation")
        if isinstance(physical, dict):
            artifact = physical.get("artifactLocation")
            if isinstance(artifact, dict) and isinstance(artifact.get("uri"), str):
                path = artifact["uri"]
            region = physical.get("region")
            if isinstance(region, dict) and isinstance(region.get("startLine"), int):
                line = region["startLine"]
    if tally.count((facts.rule_id, path, line, None), severity) and len(tally.findings) < tally.limits.max_findings:
        title = facts.title or _text(result.get("message"))
        tally.findings.append(SecurityFinding(source="sarif", rule_id=facts.rule_id, severity=severity,
                                              title=title[:TITLE_CHARS], path=path, line=line, url=facts.url))


def _suppressed(suppressions: object) -> bool:
    return isinstance(suppressions, list) and any(
        isinstance(s, dict) and s.get("status", "accepted") == "accepted" for s in suppressions)


# The fields of a result that gonogo reads, typed only where the type is an object gonogo descends
# into: a scalar field is `object`, so any JSON value decodes and the checks below treat it as the
# dict reading above does. A value of the wrong shape where a struct is declared (a string for a
# location, say) fails validation, and that batch is read result by result with _sarif_finding.
class _ArtifactLocation(msgspec.Struct, gc=False):
    uri: object = None


class _Region(msgspec.Struct, gc=False):
    startLine: object = None


class _PhysicalLocation(msgspec.Struct, gc=False):
    artifactLocation: _ArtifactLocation | None = None
    region: _Region | None = None


class _Location(msgspec.Struct, gc=False):
    physicalLocation: _PhysicalLocation | None = None


class _Properties(msgspec.Struct, gc=False):
    security_severity: object = msgspec.field(default=None, name="security-severity")


class _Result(msgspec.Struct, gc=False):
    ruleId: object = None
    ruleIndex: object = _MISSING
    rule: object = None
    kind: object = "fail"
    level: object = None
    baselineState: object = None
    suppressions: object = None
    properties: _Properties | None = None
    locations: list[_Location] | None = None
    message: msgspec.Raw = msgspec.Raw()  # decoded only for a kept finding whose rule has no title


_RESULTS = msgspec.json.Decoder(list[_Result])
_RESULT = msgspec.json.Decoder(_Result)
_RAWS = msgspec.json.Decoder(list[msgspec.Raw])
_RAW = msgspec.json.Decoder(msgspec.Raw)
_ANY = msgspec.json.Decoder()


def _tally_results(results: list[_Result], rules: _Rules, tally: SecurityTally) -> None:
    """Count decoded results exactly as _sarif_finding counts the same results given as dicts."""
    max_findings = tally.limits.max_findings
    findings = tally.findings
    count = tally.count
    facts_of = rules.facts_of
    excluded = 0
    for result in results:
        kind = result.kind
        if (kind.__class__ is str and kind in _NOT_A_PROBLEM) or result.baselineState == "absent" or (
                result.suppressions is not None and _suppressed(result.suppressions)):
            excluded += 1
            continue
        facts = facts_of(result.ruleId, result.ruleIndex, result.rule)
        props = result.properties
        severity = _severity(None if props is None else _score_value(props.security_severity), result.level, facts)
        path: str | None = None
        line: int | None = None
        locations = result.locations
        if locations:
            physical = locations[0].physicalLocation
            if physical is not None:
                artifact = physical.artifactLocation
                if artifact is not None and isinstance(artifact.uri, str):
                    path = artifact.uri
                region = physical.region
                if region is not None and isinstance(region.startLine, int):
                    line = region.startLine
        if count((facts.rule_id, path, line, None), severity) and len(findings) < max_findings:
            title = facts.title or (_text(_ANY.decode(result.message)) if result.message else "")
            findings.append(SecurityFinding(source="sarif", rule_id=facts.rule_id, severity=severity,
                                            title=title[:TITLE_CHARS], path=path, line=line, url=facts.url))
    tally.seen += len(results)
    tally.excluded += excluded


# --- reading JSON in bounded chunks -----------------------------------------------------------

_CHUNK = 1024 * 1024  # bytes read at a time
_BATCH = 1024 * 1024  # bytes of array elements decoded at a time
_NON_SPACE = re.compile(rb"[^ \t\n\r]")
_MALFORMED = re.compile(r"JSON is malformed: (.*) \(byte (\d+)\)")
_TRAILING = "trailing characters"


class _Failed:
    """A batch whose elements did not all fit the decoder's types: its bytes, to read element by element."""

    def __init__(self, chunk: bytes) -> None:
        self.chunk = chunk


class _JsonReader:
    """A cursor over one JSON document read in chunks: punctuation is read here, values by msgspec.

    Only the bytes from the cursor on are kept (from ``pin`` on while a batch is being delimited),
    plus what the value under the cursor needs. Every byte read is checked to be UTF-8, because
    msgspec does not check the strings it skips.
    """

    def __init__(self, stream: Stream, what: str, deadline: Deadline) -> None:
        self.stream = stream
        self.what = what
        self.deadline = deadline
        self.buf = b""
        self.pos = 0  # the cursor, an index into buf
        self.offset = 0  # file offset of buf[0]
        self.pin: int | None = None  # file offset of the first byte to keep, if before the cursor
        self.eof = False
        self._utf8 = codecs.getincrementaldecoder("utf-8")()

    def invalid(self, reason: str) -> ArtifactRejected:
        """The error for a file that is not JSON."""
        return ArtifactRejected(f"{self.what} is not valid JSON ({reason})")

    def more(self, at_least: int = _CHUNK) -> bool:
        """Read at least ``at_least`` more bytes (fewer at the end); return False at the end of the file."""
        if self.eof:
            return False
        self.deadline.check()
        data = self.stream.read(max(at_least, _CHUNK))
        try:
            if not data:
                self.eof = True
                self._utf8.decode(b"", final=True)
                return False
            if not data.isascii():
                self._utf8.decode(data)
        except UnicodeDecodeError as exc:
            raise self.invalid(f"invalid UTF-8 near byte {self.offset + len(self.buf) + exc.start}") from exc
        drop = self.pos if self.pin is None else min(self.pos, self.pin - self.offset)
        self.buf = self.buf[drop:] + data
        self.offset += drop
        self.pos -= drop
        return True

    def peek(self) -> int | None:
        """Skip whitespace and return the next byte, or None at the end of the file."""
        while True:
            found = _NON_SPACE.search(self.buf, self.pos)
            if found is not None:
                self.pos = found.start()
                return self.buf[self.pos]
            self.pos = len(self.buf)
            if not self.more():
                return None

    def expect(self, chars: bytes) -> int:
        """Consume one of ``chars`` (after whitespace) and return it."""
        char = self.peek()
        if char is None:
            raise self.invalid("the file ends too early")
        if char not in chars:
            raise self.invalid(f"unexpected {chr(char)!r} at byte {self.offset + self.pos}")
        self.pos += 1
        return char

    def value_end(self) -> int:
        """Return the index just past the value at the cursor, having checked it is valid JSON.

        msgspec reads one value and reports the first character after it as trailing; a value
        that runs past the buffer is read again with twice the bytes.
        """
        self.peek()
        while True:
            try:
                _RAW.decode(memoryview(self.buf)[self.pos:])
            except msgspec.DecodeError as exc:
                message = str(exc)
                found = _MALFORMED.match(message)
                if found is not None and found.group(1) == _TRAILING:
                    return self.pos + int(found.group(2)) - 1
                if found is None and "truncated" in message and self.more(len(self.buf) - self.pos):
                    continue
                if found is not None:
                    message = f"{found.group(1)} at byte {self.offset + self.pos + int(found.group(2))}"
                elif "truncated" in message:
                    message = "the file ends too early"
                raise self.invalid(message) from exc
            # the value runs to the end of the buffer and may go on (a number): read on, if there is more
            if not self.more(len(self.buf) - self.pos):
                return len(self.buf)

    def take(self) -> memoryview:
        """Consume the value at the cursor and return its bytes."""
        end = self.value_end()
        value = memoryview(self.buf)[self.pos:end]
        self.pos = end
        return value

    def decode(self) -> Any:
        """Consume the value at the cursor and return it as Python objects."""
        try:
            return _ANY.decode(self.take())
        except msgspec.DecodeError as exc:  # valid JSON syntax, so: a number out of range
            raise self.invalid(f"a number out of range near byte {self.offset + self.pos}") from exc

    def skip(self) -> None:
        """Consume the value at the cursor; an array goes in batches, so a long one is never held whole."""
        if self.peek() == ord("["):
            for _batch in self.batches(_RAWS):
                pass
        else:
            self.take()

    def end(self) -> None:
        """Check that nothing but whitespace follows the document."""
        if self.peek() is not None:
            raise self.invalid(f"more data after the document at byte {self.offset + self.pos}")

    def members(self) -> Iterator[str]:
        """Consume the object at the cursor, yielding each key with the cursor on its value.

        The caller consumes each value before asking for the next key.
        """
        self.expect(b"{")
        if self.peek() == ord("}"):
            self.pos += 1
            return
        while True:
            if self.peek() != ord('"'):
                raise self.invalid(f"expected a key at byte {self.offset + self.pos}")
            key = self.decode()
            self.expect(b":")
            yield key
            if self.expect(b",}") == ord("}"):
                return

    def elements(self) -> Iterator[None]:
        """Consume the array at the cursor, yielding once per element with the cursor on it."""
        self.expect(b"[")
        if self.peek() == ord("]"):
            self.pos += 1
            return
        while True:
            yield
            if self.expect(b",]") == ord("]"):
                return

    def batches(self, decoder: msgspec.json.Decoder[Any]) -> Iterator[Any]:
        """Consume the array at the cursor, yielding its elements decoded in batches of about _BATCH bytes.

        A batch ends at a comma found by searching for the bytes that separated the first two
        elements (for objects: the comma, the spacing and the first key). Decoding the batch as an
        array proves the cut: an array cannot close properly at a comma inside an element or a
        string. When two guesses fail, the batch is delimited element by element. A batch whose
        elements do not fit the decoder's types comes as a _Failed.
        """
        self.expect(b"[")
        if self.peek() == ord("]"):
            self.pos += 1
            return
        separator = b""
        while True:
            self.deadline.check()
            if len(self.buf) - self.pos < _BATCH:
                self.more(_BATCH)
            start = self.pos
            batch: Any = None
            cut = -1
            if separator:
                search_end = min(len(self.buf), start + _BATCH + len(separator))
                for _attempt in range(2):
                    cut = self.buf.rfind(separator, start + 1, search_end)
                    if cut < 0:
                        break
                    batch = self._decode_batch(decoder, start, cut)
                    if batch is not None:
                        break
                    search_end = cut + len(separator) - 1
            if batch is None:
                separator = self._walk_batch(separator)
                cut = self.pos
                assert self.pin is not None
                start = self.pin - self.offset
                self.pin = None
                batch = self._decode_batch(decoder, start, cut)
                if batch is None:  # each element was checked on the way: a bug, not the file
                    raise self.invalid(f"a malformed array element near byte {self.offset + start}")
            self.pos = cut
            closing = self.expect(b",]")
            yield batch
            if closing == ord("]"):
                return

    def _decode_batch(self, decoder: msgspec.json.Decoder[Any], start: int, cut: int) -> Any:
        """Decode buf[start:cut] as an array's elements; None when the cut is not between elements."""
        chunk = b"".join((b"[", memoryview(self.buf)[start:cut], b"]"))
        try:
            return decoder.decode(chunk)
        except msgspec.ValidationError:
            try:
                _RAWS.decode(chunk)
            except msgspec.DecodeError:
                return None  # not between elements, or not JSON: the type error proves nothing
            return _Failed(chunk)
        except msgspec.DecodeError:
            return None

    def _walk_batch(self, separator: bytes) -> bytes:
        """Delimit a batch from the cursor element by element: at least one element, then up to _BATCH bytes.

        Leaves ``pin`` on the batch's start and the cursor on the ',' or ']' after it; returns the
        separator, learned from the first comma if not known yet.
        """
        self.pin = start = self.offset + self.pos
        while True:
            self.pos = self.value_end()
            if self.peek() != ord(","):
                return separator  # the array's end, or an error for the caller's expect
            comma = self.offset + self.pos
            if not separator:
                separator = self._separator()
                self.pos = comma - self.offset
            if comma - start >= _BATCH:
                return separator
            self.pos += 1

    def _separator(self) -> bytes:
        """Return the bytes from the comma at the cursor to the first key of the next element (if an object)."""
        comma = self.offset + self.pos
        self.pos += 1
        first = self.peek()
        if first is None or first not in b"{[":
            return b","
        self.pos += 1
        if first == ord("{") and self.peek() == ord('"'):
            self.pos = self.value_end()
        return bytes(self.buf[comma - self.offset:self.pos])


# --- SARIF ----------------------------------------------------------------------------------------


@dataclass
class _Outline:
    """What a pass over a SARIF log learned besides its results."""

    tools: list[Any] = field(default_factory=list)  # every run's "tool" value, in document order
    crashed: bool = False  # an invocation has executionSuccessful=false
    runs: str | None = None  # "array" or "null": the first root "runs" value that is either
    objects: int = 0  # runs that are objects
    # runs that are objects without a results array: SARIF 2.1.0 (3.14.23) gives a run whose tool failed to
    # start or to analyse a null or absent results, and one that ran and found nothing an empty array
    resultless: int = 0


class _ToolsLater(Exception):
    """A run's results come before the tool they are read with: the log is read again, tools first."""


def _walk_sarif(opener: Opener, what: str, deadline: Deadline, tally: SecurityTally | None,
                tools: list[Any] | None) -> _Outline:
    """Read a SARIF log once, counting results into ``tally`` (unless None).

    The n-th run that is an object is read with the n-th tool of the log, or with the only one when
    the log has one (so the first streaming parser read them). With ``tools`` None, results are
    read with the tools seen so far, and _ToolsLater is raised when theirs is not among them.
    """
    outline = _Outline()
    known: dict[int, _Rules] = {}

    def rules_for(run: int) -> _Rules:
        if run not in known:
            if tools is None:
                if run >= len(outline.tools):
                    raise _ToolsLater
                known[run] = _Rules(outline.tools[run])
            elif len(tools) == 1:
                known[run] = known.get(-1) or _Rules(tools[0])
                known[-1] = known[run]
            else:
                known[run] = _Rules(tools[run] if run < len(tools) else None)
        return known[run]

    with opener() as stream:
        reader = _JsonReader(stream, what, deadline)
        if reader.peek() != ord("{"):
            reader.skip()
        else:
            for key in reader.members():
                first = reader.peek()
                if key != "runs" or first != ord("["):
                    if key == "runs" and first == ord("n") and outline.runs is None:
                        outline.runs = "null"
                    reader.skip()
                    continue
                outline.runs = outline.runs or "array"
                for _run in reader.elements():
                    if reader.peek() != ord("{"):
                        reader.skip()
                        continue
                    run = outline.objects
                    outline.objects += 1
                    listed = False
                    for run_key in reader.members():
                        if run_key == "results" and reader.peek() == ord("["):
                            listed = True
                        if run_key == "tool":
                            outline.tools.append(reader.decode())
                        elif run_key == "invocations":
                            invocations = reader.decode()
                            outline.crashed |= isinstance(invocations, list) and any(
                                isinstance(i, dict) and i.get("executionSuccessful") is False for i in invocations)
                        elif run_key == "results" and tally is not None and reader.peek() == ord("["):
                            _read_results(reader, rules_for(run), tally)
                        else:
                            reader.skip()
                    outline.resultless += not listed
        reader.end()
    return outline


def _read_results(reader: _JsonReader, rules: _Rules, tally: SecurityTally) -> None:
    for batch in reader.batches(_RESULTS):
        if not isinstance(batch, _Failed):
            _tally_results(batch, rules, tally)
            continue
        for raw in _RAWS.decode(batch.chunk):
            try:
                result = _RESULT.decode(raw)
            except msgspec.ValidationError:
                try:
                    value = _ANY.decode(raw)
                except msgspec.DecodeError as exc:  # valid JSON syntax, so: a number out of range
                    raise reader.invalid("a number out of range in a result") from exc
                _sarif_finding(value, rules, tally)
            else:
                _tally_results([result], rules, tally)


def _no_results(what: str, runs: int) -> ArtifactRejected:
    return ArtifactRejected(
        f"{what} has {runs} run(s) whose results are null or absent, meaning the analysis tool failed to start or "
        "to analyse (a tool that ran and found nothing writes an empty results array); re-run the scan"
    )


def parse_sarif(opener: Opener, what: str, limits: ArtifactLimits | None = None,
                deadline: Deadline | None = None) -> SecurityTally:
    """Parse a SARIF 2.1.0 log in bounded memory: once, or twice when a run's tool follows its results."""
    lim = limits or ArtifactLimits()
    dl = deadline or Deadline(lim.max_seconds_per_file, what)
    try:
        tally = SecurityTally(limits=lim, files=1)
        try:
            outline = _walk_sarif(opener, what, dl, tally, None)
        except _ToolsLater:
            outline = _walk_sarif(opener, what, dl, None, None)
            tally = SecurityTally(limits=lim, files=1)
            if outline.tools and not outline.crashed:
                _walk_sarif(opener, what, dl, tally, outline.tools)
    except RecursionError:
        # nested deeper than msgspec decodes: the streaming parser has no depth limit
        return _parse_sarif_streaming(opener, what, lim, dl)
    if outline.crashed:
        # a crashed analysis is not a clean one: its findings are incomplete
        raise ArtifactRejected(
            f"{what} records a tool invocation with executionSuccessful=false; the analysis did not complete"
        )
    if outline.resultless:
        raise _no_results(what, outline.resultless)
    if not outline.tools:
        if outline.runs == "null":
            raise ArtifactRejected(f"{what} has \"runs\": null, meaning the analysis tool failed before it could run")
        if outline.runs is None:
            raise ArtifactRejected(f"{what} has no 'runs' array; not a SARIF 2.1.0 log")
        return SecurityTally(limits=lim, files=1)  # runs without a tool: nothing to report
    return tally


# --- streaming (ijson): deeply nested SARIF, and Trivy ---------------------------------------


def _items(opener: Opener, prefix: str, what: str, deadline: Deadline) -> Iterator[Any]:
    with opener() as stream:
        try:
            for n, item in enumerate(ijson.items(stream, prefix, use_float=True)):
                if n % 2048 == 0:
                    deadline.check()
                yield item
        except ijson.JSONError as exc:
            raise ArtifactRejected(f"{what} is not valid JSON ({exc})") from exc


def _has_runs(opener: Opener, what: str, deadline: Deadline) -> bool:
    with opener() as stream:
        try:
            for n, (prefix, event, _value) in enumerate(ijson.parse(stream)):
                if prefix == "runs" and event == "start_array":
                    return True
                if prefix == "runs" and event == "null":
                    raise ArtifactRejected(
                        f"{what} has \"runs\": null, meaning the analysis tool failed before it could run"
                    )
                if n % 65536 == 0:
                    deadline.check()
        except ijson.JSONError as exc:
            raise ArtifactRejected(f"{what} is not valid JSON ({exc})") from exc
    return False


def _resultless_runs(opener: Opener, what: str, deadline: Deadline) -> int:
    """Count the runs that are objects without a results array (see ``_Outline.resultless``)."""
    objects = listed = 0
    with opener() as stream:
        try:
            for n, (prefix, event, _value) in enumerate(ijson.parse(stream)):
                if prefix == "runs.item" and event == "start_map":
                    objects += 1
                elif prefix == "runs.item.results" and event == "start_array":
                    listed += 1
                if n % 65536 == 0:
                    deadline.check()
        except ijson.JSONError as exc:
            raise ArtifactRejected(f"{what} is not valid JSON ({exc})") from exc
    return objects - listed


def _parse_sarif_streaming(opener: Opener, what: str, lim: ArtifactLimits, dl: Deadline) -> SecurityTally:
    """Parse a SARIF 2.1.0 log with ijson in streaming passes (tools, invocations, results)."""
    tally = SecurityTally(limits=lim, files=1)
    tools = list(_items(opener, "runs.item.tool", what, dl))
    for ok in _items(opener, "runs.item.invocations.item.executionSuccessful", what, dl):
        if ok is False:
            # a crashed analysis is not a clean one: its findings are incomplete
            raise ArtifactRejected(
                f"{what} records a tool invocation with executionSuccessful=false; the analysis did not complete"
            )
    resultless = _resultless_runs(opener, what, dl)
    if resultless:
        raise _no_results(what, resultless)
    if not tools:
        if not _has_runs(opener, what, dl):
            raise ArtifactRejected(f"{what} has no 'runs' array; not a SARIF 2.1.0 log")
        return tally  # runs without a tool and without results: nothing to report
    if len(tools) == 1:
        rules = _Rules(tools[0])
        for result in _items(opener, "runs.item.results.item", what, dl):
            _sarif_finding(result, rules, tally)
        return tally
    # several runs: follow run boundaries in the event stream so each result meets its own rules
    all_rules = [_Rules(t) for t in tools]
    run = [-1]
    with opener() as stream:
        def events() -> Iterator[tuple[str, str, Any]]:
            for n, event in enumerate(ijson.parse(stream, use_float=True)):
                if event[0] == "runs.item" and event[1] == "start_map":
                    run[0] += 1
                if n % 65536 == 0:
                    dl.check()
                yield event

        try:
            for result in ijson.items(events(), "runs.item.results.item"):
                index = run[0]
                _sarif_finding(result, all_rules[index] if 0 <= index < len(all_rules) else _Rules(None), tally)
        except ijson.JSONError as exc:
            raise ArtifactRejected(f"{what} is not valid JSON ({exc})") from exc
    return tally


def parse_trivy(opener: Opener, what: str, limits: ArtifactLimits | None = None,
                deadline: Deadline | None = None) -> SecurityTally:
    """Parse a Trivy JSON report (SchemaVersion 2): vulnerabilities, failed misconfigurations, secrets."""
    lim = limits or ArtifactLimits()
    dl = deadline or Deadline(lim.max_seconds_per_file, what)
    version = next(_items(opener, "SchemaVersion", what, dl), None)
    if version != 2:
        raise ArtifactRejected(f"{what} has SchemaVersion {version!r}; only Trivy JSON SchemaVersion 2 is supported")
    tally = SecurityTally(limits=lim, files=1)
    for result in _items(opener, "Results.item", what, dl):
        if not isinstance(result, dict):
            continue
        target = result.get("Target") if isinstance(result.get("Target"), str) else None
        for vuln in result.get("Vulnerabilities") or []:
            if not isinstance(vuln, dict):
                continue
            tally.seen += 1
            package = vuln.get("PkgName")
            if package and vuln.get("InstalledVersion"):
                package = f"{package}@{vuln['InstalledVersion']}"
            tally.add((str(vuln.get("VulnerabilityID") or "unknown"), _trivy_severity(vuln.get("Severity")),
                       str(vuln.get("Title") or ""), vuln.get("PkgPath") or target, None,
                       vuln.get("PrimaryURL") if isinstance(vuln.get("PrimaryURL"), str) else None,
                       package if isinstance(package, str) else None, "trivy"))
        for misconf in result.get("Misconfigurations") or []:
            if not isinstance(misconf, dict):
                continue
            tally.seen += 1
            if misconf.get("Status", "FAIL") != "FAIL":
                tally.excluded += 1
                continue
            cause: dict[str, Any] = misconf["CauseMetadata"] if isinstance(misconf.get("CauseMetadata"), dict) else {}
            line = cause.get("StartLine") if isinstance(cause.get("StartLine"), int) else None
            tally.add((str(misconf.get("AVDID") or misconf.get("ID") or "unknown"),
                       _trivy_severity(misconf.get("Severity")), str(misconf.get("Title") or ""), target, line,
                       misconf.get("PrimaryURL") if isinstance(misconf.get("PrimaryURL"), str) else None,
                       None, "trivy"))
        for secret in result.get("Secrets") or []:
            if not isinstance(secret, dict):
                continue
            tally.seen += 1
            line = secret.get("StartLine") if isinstance(secret.get("StartLine"), int) else None
            tally.add((str(secret.get("RuleID") or "secret"), _trivy_severity(secret.get("Severity")),
                       str(secret.get("Title") or "secret"), target, line, None, None, "trivy"))
    return tally


def _trivy_severity(value: Any) -> Severity:
    # UNKNOWN means the database has no score yet: still a vulnerability, so it is not dropped to "note"
    return _TRIVY.get(str(value).upper(), "low")
