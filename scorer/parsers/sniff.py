"""Tell which kind of report a file is, from its first bytes first and its name second."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field

KINDS = (
    "junit", "trx", "mocha", "jest", "gotest", "rspec", "dart", "tap", "pytest_json", "cobertura", "jacoco", "clover", "opencover", "lcov", "coveragepy",
    "sarif", "trivy", "jtl", "jmeter_stats", "k6", "locust",
)  # fmt: skip

TEST_KINDS = frozenset({"junit", "trx", "mocha", "jest", "gotest", "rspec", "dart", "tap", "pytest_json"})
COVERAGE_KINDS = frozenset({"cobertura", "jacoco", "clover", "opencover", "lcov", "coveragepy"})
SECURITY_KINDS = frozenset({"sarif", "trivy"})
PERFORMANCE_KINDS = frozenset({"jtl", "jmeter_stats", "k6", "locust"})


def _default_globs() -> dict[str, tuple[str, ...]]:
    return {
        "junit": ("*TEST-*.xml", "*junit*.xml", "*test-results*.xml", "*test-report*.xml",
                  "*nunit*.xml", "*xunit*.xml", "*/test-results/*.xml", "*/surefire-reports/*.xml"),
        "trx": ("*.trx",),
        "mocha": ("*mocha*.json",),
        "jest": ("*jest*.json",),
        "gotest": ("*go-test*.json", "*gotest*.json", "*go_test*.json", "*.gojson*"),
        "rspec": ("*rspec*.json",),
        "dart": ("*dart*test*.json", "*flutter*test*.json"),
        "tap": ("*.tap",),
        "pytest_json": ("*/.report.json", "*pytest*.json"),
        "cobertura": ("*cobertura*.xml", "*coverage.xml"),
        "jacoco": ("*jacoco*.xml",),
        "clover": ("*clover*.xml",),
        "opencover": ("*opencover*.xml",),
        "lcov": ("*.lcov", "*lcov.info", "*lcov*.info"),
        "coveragepy": ("*coverage.json", "*coverage*.json"),
        "sarif": ("*.sarif", "*.sarif.json"),
        "trivy": ("*trivy*.json",),
        "jtl": ("*.jtl",),
        "jmeter_stats": ("*statistics.json",),
        "k6": ("*k6*.json", "*summary-export*.json"),
        "locust": ("*_stats.csv",),
    }


@dataclass(frozen=True)
class ArtifactGlobs:
    """Name globs per report kind, used as hints when content sniffing is inconclusive.

    A file whose content is not recognised but whose name matches a kind's glob is treated as
    that kind, so a truncated or corrupt report is reported as a problem instead of ignored.
    Globs match the '/'-separated path case-insensitively; ``ignore`` drops files outright.
    """

    kinds: dict[str, tuple[str, ...]] = field(default_factory=_default_globs)
    ignore: tuple[str, ...] = ()

    def ignored(self, name: str) -> bool:
        """Return True if ``name`` matches an ignore glob."""
        low = name.lower()
        return any(fnmatch.fnmatchcase(low, g.lower()) for g in self.ignore)

    def packed_hint(self, name: str) -> str | None:
        """Return what a compressed file's name says it holds: the report kind its name has once its compression
        suffixes are dropped (``junit-unit.xml.gz``: junit), "" for a name that speaks of reports without a kind
        (``test-results.zip``), None for any other name (``dist.tar.gz``)."""
        stem = name
        while _PACKED_SUFFIX.search(stem):
            stem = _PACKED_SUFFIX.sub("", stem)
        if stem != name and (kind := self.hint(stem)) is not None:
            return kind
        return "" if _REPORT_WORDS.search(stem) else None

    def hint(self, name: str) -> str | None:
        """Return the first kind whose globs match ``name``."""
        low = "/" + name.lower().lstrip("/")
        for kind, globs in self.kinds.items():
            if any(fnmatch.fnmatchcase(low, g.lower()) for g in globs):
                return kind
        return None


_PACKED_MAGIC = ((b"\x1f\x8b", "gzip"), (b"PK\x03\x04", "zip"), (b"PK\x05\x06", "zip"), (b"BZh", "bzip2"),
                 (b"\xfd7zXZ\x00", "xz"), (b"\x28\xb5\x2f\xfd", "zstd"), (b"7z\xbc\xaf\x27\x1c", "7z"))
_PACKED_SUFFIX = re.compile(r"\.(?:gz|gzip|tgz|bz2|xz|zst|zip|7z|tar)$", re.IGNORECASE)
# names of archives that hold test or security reports; coverage and load-test archives are often HTML pages
_REPORT_WORDS = re.compile(r"junit|xunit|nunit|test[-_ ]?(?:results?|reports?)|surefire|failsafe|sarif|trivy|codeql",
                           re.IGNORECASE)


def packed_format(head: bytes) -> str | None:
    """Return the compression or archive format of a file from its first bytes (gzip, zip, tar...), else None."""
    for magic, fmt in _PACKED_MAGIC:
        if head.startswith(magic):
            return fmt
    return "tar" if head[257:262] == b"ustar" else None


_XML_SKIP = re.compile(rb"\s*(?:<\?.*?\?>|<!--.*?-->|<!DOCTYPE(?:[^\[>]|\[.*?\])*>)", re.DOTALL)
# the root's name must end (space, ">" or "/") within the head: a file cut inside it is no document at all
_XML_ROOT = re.compile(rb"\s*<([A-Za-z_][\w:.-]*)(?=[\s>/])([^>]*)")
_JSON_KEY = re.compile(rb'"([^"\\]{1,64})"\s*:')
_CONTROL_BYTES = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f]")

_JUNIT_ROOTS = {b"testsuites", b"testsuite", b"test-results", b"test-run", b"assemblies", b"assembly", b"test-suite"}


def _strip_bom(head: bytes) -> bytes:
    if head.startswith(b"\xef\xbb\xbf"):
        return head[3:]
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        try:
            return head.decode("utf-16", errors="ignore").encode("utf-8")
        except UnicodeError:
            return head
    return head


def _xml_root(head: bytes) -> tuple[bytes, bytes] | None:
    pos = 0
    while True:
        m = _XML_SKIP.match(head, pos)
        if not m or m.end() == pos:
            break
        pos = m.end()
    m = _XML_ROOT.match(head, pos)
    if not m:
        return None
    name = m.group(1).split(b":")[-1]
    return name, m.group(2)


def _sniff_xml(head: bytes) -> str | None:
    root = _xml_root(head)
    if root is None:
        return None
    name, attrs = root
    if name in _JUNIT_ROOTS:
        return "junit"
    if name == b"TestRun":
        return "trx"
    if name == b"coverage":
        if b"clover=" in attrs or b"<project" in head:
            return "clover"
        if b"line-rate=" in attrs or b"lines-valid=" in attrs or b"<packages" in head or b"<sources" in head:
            return "cobertura"
        return None  # SonarQube, NCover and mprof also use <coverage>; not supported
    if name == b"report" and (b"jacoco" in head.lower() or b"<sessioninfo" in head):
        return "jacoco"
    if name == b"CoverageSession":
        return "opencover"
    return None


def _sniff_test_json(keys: set[bytes]) -> str | None:
    if b"numTotalTests" in keys and b"testResults" in keys:
        return "jest"
    if b"stats" in keys and (b"passes" in keys or b"pending" in keys or b"failures" in keys or b"fullTitle" in keys):
        return "mocha"
    if b"Action" in keys and (b"Package" in keys or b"ImportPath" in keys):
        return "gotest"
    if b"protocolVersion" in keys and b"runnerVersion" in keys or b"testID" in keys and b"hidden" in keys:
        return "dart"
    if b"examples" in keys and (b"full_description" in keys or b"summary_line" in keys):
        return "rspec"
    if b"exitcode" in keys and b"root" in keys and (b"summary" in keys or b"nodeid" in keys):
        return "pytest_json"
    return None


def _sniff_json(head: bytes) -> str | None:
    keys = set(_JSON_KEY.findall(head[:16384]))
    test_kind = _sniff_test_json(keys)
    if test_kind is not None:
        return test_kind
    if b"$schema" in keys and b"sarif" in head[:2048].lower() or (b"runs" in keys and b'"2.1.0"' in head[:4096]):
        return "sarif"
    if b"SchemaVersion" in keys and (b"ArtifactName" in keys or b"Results" in keys or b"ArtifactType" in keys):
        return "trivy"
    if b"meta" in keys and b"files" in keys and (b"totals" in keys or b"executed_lines" in keys):
        return "coveragepy"
    if b"metrics" in keys and (b"http_req_duration" in keys or b"iterations" in keys or b"root_group" in keys
                               or b"vus" in keys or b"checks" in keys):
        return "k6"
    if b"transaction" in keys and b"sampleCount" in keys and b"pct1ResTime" in keys:
        return "jmeter_stats"
    return None


# "ok 1 - name", "not ok 2", "ok - name": not go test's "ok  <TAB>package" summary lines
_TAP_START = re.compile(rb"(?:TAP version \d+$|1\.\.\d+(?:\s*#.*)?$|(?:not )?ok(?: \d+| -)(?:\s|$))")


def _sniff_text(head: bytes) -> str | None:
    first = head.split(b"\n", 1)[0].strip().lstrip(b"\xef\xbb\xbf")
    if _TAP_START.match(first):
        return "tap"
    cols = [c.strip(b'" ').lower() for c in first.split(b",")]
    if b"timestamp" in cols and b"elapsed" in cols and b"label" in cols:
        return "jtl"
    if b"name" in cols and b"type" in cols and (b"request count" in cols or b"# requests" in cols):
        return "locust"
    if re.match(rb"(TN|SF):", first) or re.search(rb"^SF:.+\n(?:.*\n)*?(DA|FN|LF):", head, re.MULTILINE):
        return "lcov"
    return None


def classify(name: str, head: bytes, globs: ArtifactGlobs | None = None) -> str | None:
    """Return the report kind of a file from its head bytes, else from its name, else None.

    The name is only a hint for content that cannot be read as any document (empty, truncated,
    garbled), so a broken report still surfaces as a problem; a well-formed document of an
    unknown format (say, dotCover XML named coverage.xml) is left alone.
    """
    data = _strip_bom(head).lstrip()
    if _CONTROL_BYTES.search(data):
        # no XML, JSON or CSV document holds raw control bytes: whatever its first tag or key, this is garbled
        return (globs or ArtifactGlobs()).hint(name)
    if data.startswith(b"<"):
        kind = _sniff_xml(data)
        if kind is not None or _xml_root(data) is not None:
            return kind
    elif data.startswith(b"{"):
        kind = _sniff_json(data)
        if kind is not None or _JSON_KEY.search(data[:4096]):
            return kind
    elif data:
        kind = _sniff_text(data)
        if kind is not None:
            return kind
    return (globs or ArtifactGlobs()).hint(name)


def describe(head: bytes) -> str:
    """Say in a few words what a file that no parser reads looks like, from its first bytes."""
    data = _strip_bom(head).lstrip()
    if not data:
        return "empty file"
    if data.startswith(b"<"):
        root = _xml_root(data)
        return f"XML document <{root[0].decode('ascii', 'replace')}> of a format gonogo does not read" if root else "markup"
    if data[:1] in (b"{", b"["):
        keys = sorted({k.decode("utf-8", "replace") for k in _JSON_KEY.findall(data[:4096])})[:5]
        return "JSON document of a format gonogo does not read" + (f" (keys: {', '.join(keys)})" if keys else "")
    if b"\x00" in data[:4096]:
        return "binary file"
    try:
        data[:4096].decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < 4090:  # a multi-byte character cut by the 4 KiB window is still text
            return "binary file"
    return "text file of a format gonogo does not read"
