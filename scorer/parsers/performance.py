"""Load-test results (JMeter, k6, Locust) to latency percentiles, and a noise-aware baseline comparison.

Raw samples never enter the Evidence. What may be stored is ``PerfBaseline``: per transaction the
exact aggregates plus at most ``baseline_points`` evenly spaced order statistics of the raw
latencies (a quantile sketch, a few kilobytes), which is enough for a Mann-Whitney U test against
the next deployment's run.
"""

from __future__ import annotations

import csv
import math
from array import array
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

import ijson
from pydantic import BaseModel, ConfigDict, Field

from scorer.evidence import Availability, PerformancePart, Provenance, Transaction
from scorer.parsers.limits import ArtifactLimits, ArtifactRejected, CappedReader, Deadline, read_lines

if TYPE_CHECKING:
    import numpy as np

Stream = BinaryIO | CappedReader
MIN_POINTS_FOR_TEST = 20  # below this, a rank test says little: fall back to the relative threshold


class TransactionBaseline(BaseModel):
    """Aggregates of one transaction plus a capped quantile sketch of its latencies."""

    model_config = ConfigDict(extra="forbid")

    name: str
    samples: int = 0
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    error_rate: float | None = None
    throughput_rps: float | None = None
    points_ms: list[float] = Field(default_factory=list)  # sorted order statistics, empty for aggregate-only tools

    def to_transaction(self) -> Transaction:
        """Drop the sketch: the Evidence keeps aggregates only."""
        return Transaction(name=self.name, samples=self.samples, p50_ms=self.p50_ms, p95_ms=self.p95_ms,
                           p99_ms=self.p99_ms, mean_ms=self.mean_ms, error_rate=self.error_rate,
                           throughput_rps=self.throughput_rps)


class PerfBaseline(BaseModel):
    """The compact, storable form of one load-test run (JSON, version 1)."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    tool: str | None = None
    overall: TransactionBaseline | None = None
    transactions: list[TransactionBaseline] = Field(default_factory=list)

    def to_part(self, provenance: list[Provenance] | None = None, reason: str = "") -> PerformancePart:
        """Build the Evidence part (aggregates only)."""
        return PerformancePart(
            availability=Availability.OK,
            reason=reason or f"{self.tool or 'load'} results with {len(self.transactions)} transaction(s)",
            provenance=provenance or [], tool=self.tool,
            overall=self.overall.to_transaction() if self.overall else None,
            transactions=[t.to_transaction() for t in self.transactions],
        )

    @classmethod
    def from_part(cls, part: PerformancePart) -> PerfBaseline:
        """Rebuild an aggregate-only baseline from an Evidence part."""
        def conv(t: Transaction) -> TransactionBaseline:
            return TransactionBaseline(**t.model_dump(include=set(TransactionBaseline.model_fields) - {"points_ms"}))
        return cls(tool=part.tool, overall=conv(part.overall) if part.overall else None,
                   transactions=[conv(t) for t in part.transactions])


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _sketch(values: np.ndarray, points: int) -> list[float]:
    import numpy as np  # here, not at the top: only load-test results need numpy

    if values.size == 0:
        return []
    ordered = np.sort(values)
    if ordered.size <= points:
        return [round(float(v), 3) for v in ordered]
    index = np.linspace(0, ordered.size - 1, points).round().astype(np.int64)
    return [round(float(v), 3) for v in ordered[index]]


def _from_samples(name: str, elapsed: np.ndarray, errors: int | None, first_ms: float, last_ms: float,
                  points: int) -> TransactionBaseline:
    import numpy as np

    n = int(elapsed.size)
    p50, p95, p99 = (float(x) for x in np.percentile(elapsed, [50, 95, 99])) if n else (None, None, None)
    span_s = (last_ms - first_ms) / 1000.0
    return TransactionBaseline(
        name=name, samples=n, p50_ms=p50, p95_ms=p95, p99_ms=p99,
        mean_ms=float(elapsed.mean()) if n else None,
        error_rate=errors / n if n and errors is not None else None,
        throughput_rps=n / span_s if span_s > 0 else None,
        points_ms=_sketch(elapsed, points),
    )


# --- JMeter JTL (CSV) ---------------------------------------------------------------------


def parse_jtl(stream: Stream, what: str, limits: ArtifactLimits | None = None,
              deadline: Deadline | None = None) -> PerfBaseline:
    """Parse a JMeter CSV results file (raw samples) into per-label and overall statistics."""
    import numpy as np

    lim = limits or ArtifactLimits()
    dl = deadline or Deadline(lim.max_seconds_per_file, what)
    csv.field_size_limit(lim.max_line_bytes)
    lines = read_lines(stream, lim, what, dl)
    try:
        rows = csv.reader(lines)
        header = next(rows, None)
        if header is None:
            raise ArtifactRejected(f"{what} is empty")
        cols = {name.strip(): i for i, name in enumerate(header)}
        if not {"timeStamp", "elapsed", "label"} <= cols.keys():
            raise ArtifactRejected(f"{what} has no timeStamp/elapsed/label header; not a JMeter CSV result file")
        i_ts, i_el, i_label = cols["timeStamp"], cols["elapsed"], cols["label"]
        i_ok = cols.get("success")
        width = max(i_ts, i_el, i_label, i_ok or 0) + 1
        per: dict[str, list[Any]] = {}  # label -> [elapsed array, errors, first start, last end]
        total = 0
        for row in rows:
            if len(row) < width:
                continue  # JMeter writes partial lines when killed; skip them rather than reject the run
            try:
                start = float(row[i_ts])
                elapsed = float(row[i_el])
            except ValueError:
                continue
            label = row[i_label]
            entry = per.get(label)
            if entry is None:
                if len(per) >= lim.max_transactions:
                    raise ArtifactRejected(f"{what} has more than {lim.max_transactions} distinct labels")
                entry = per[label] = [array("f"), 0, start, start + elapsed]
            entry[0].append(elapsed)
            if i_ok is not None and row[i_ok].strip().lower() == "false":
                entry[1] += 1
            entry[2] = min(entry[2], start)
            entry[3] = max(entry[3], start + elapsed)
            total += 1
            if total > lim.max_samples:
                raise ArtifactRejected(f"{what} has more than {lim.max_samples} samples; raise ArtifactLimits.max_samples")
    except csv.Error as exc:
        raise ArtifactRejected(f"{what} is not readable CSV ({exc})") from exc
    if not per:
        raise ArtifactRejected(f"{what} holds no samples")
    transactions = []
    for label, (values, errors, first, last) in per.items():
        transactions.append(_from_samples(label, np.frombuffer(values, dtype=np.float32).astype(np.float64),
                                          errors if i_ok is not None else None, first, last, lim.baseline_points))
    everything = np.concatenate([np.frombuffer(v[0], dtype=np.float32) for v in per.values()]).astype(np.float64)
    # without the success column the file says nothing of failed samples: the error rate is unknown, not 0
    overall = _from_samples("Total", everything, sum(v[1] for v in per.values()) if i_ok is not None else None,
                            min(v[2] for v in per.values()), max(v[3] for v in per.values()), lim.baseline_points)
    return PerfBaseline(tool="jmeter", overall=overall, transactions=transactions)


# --- JMeter dashboard statistics.json -----------------------------------------------------


def parse_jmeter_stats(stream: Stream, what: str, limits: ArtifactLimits | None = None,
                       deadline: Deadline | None = None) -> PerfBaseline:
    """Parse a JMeter HTML-dashboard statistics.json (pct1/2/3 are the default 90th/95th/99th)."""
    lim = limits or ArtifactLimits()
    dl = deadline or Deadline(lim.max_seconds_per_file, what)
    overall: TransactionBaseline | None = None
    transactions: list[TransactionBaseline] = []
    try:
        for key, item in ijson.kvitems(stream, "", use_float=True):
            dl.check()
            if not isinstance(item, dict) or "sampleCount" not in item:
                raise ArtifactRejected(f"{what} entry {str(key)[:60]!r} has no sampleCount; not a JMeter statistics.json")
            error_pct = _float(item.get("errorPct"))
            t = TransactionBaseline(
                name=str(item.get("transaction") or key), samples=int(_float(item.get("sampleCount")) or 0),
                p50_ms=_float(item.get("medianResTime")), p95_ms=_float(item.get("pct2ResTime")),
                p99_ms=_float(item.get("pct3ResTime")), mean_ms=_float(item.get("meanResTime")),
                error_rate=error_pct / 100.0 if error_pct is not None else None,
                throughput_rps=_float(item.get("throughput")))
            if key == "Total":
                overall = t
            elif len(transactions) < lim.max_transactions:
                transactions.append(t)
    except ijson.JSONError as exc:
        raise ArtifactRejected(f"{what} is not valid JSON ({exc})") from exc
    if overall is None and not transactions:
        raise ArtifactRejected(f"{what} holds no transactions")
    return PerfBaseline(tool="jmeter", overall=overall, transactions=transactions)


# --- k6 -----------------------------------------------------------------------------------


def _k6_values(metric: Any) -> dict[str, Any]:
    # --summary-export puts the numbers on the metric; handleSummary's data nests them in "values"
    if not isinstance(metric, dict):
        return {}
    values = metric.get("values")
    return values if isinstance(values, dict) else metric


def _k6_tag(key: str) -> str:
    inner = key[key.index("{") + 1:-1] if "{" in key and key.endswith("}") else key
    tag, _, value = inner.partition(":")
    return value if tag in ("name", "url", "scenario") and value else inner


def parse_k6(stream: Stream, what: str, limits: ArtifactLimits | None = None,
             deadline: Deadline | None = None) -> PerfBaseline:
    """Parse k6 ``--summary-export`` or ``handleSummary`` JSON (http_req_duration and its tagged sub-metrics)."""
    lim = limits or ArtifactLimits()
    try:
        metrics = next(ijson.items(stream, "metrics", use_float=True), None)
    except ijson.JSONError as exc:
        raise ArtifactRejected(f"{what} is not valid JSON ({exc})") from exc
    if not isinstance(metrics, dict) or "http_req_duration" not in metrics:
        raise ArtifactRejected(f"{what} has no metrics.http_req_duration; not a k6 HTTP summary")

    def build(name: str, suffix: str) -> TransactionBaseline:
        dur = _k6_values(metrics.get("http_req_duration" + suffix))
        reqs = _k6_values(metrics.get("http_reqs" + suffix))
        failed = _k6_values(metrics.get("http_req_failed" + suffix))
        error_rate = _float(failed.get("rate", failed.get("value"))) if failed else None
        return TransactionBaseline(
            name=name, samples=int(_float(reqs.get("count")) or 0),
            p50_ms=_float(dur.get("med", dur.get("p(50)"))), p95_ms=_float(dur.get("p(95)")),
            p99_ms=_float(dur.get("p(99)")), mean_ms=_float(dur.get("avg")),
            error_rate=error_rate, throughput_rps=_float(reqs.get("rate")))

    transactions = [build(_k6_tag(key), key[len("http_req_duration"):])
                    for key in metrics if key.startswith("http_req_duration{")][: lim.max_transactions]
    return PerfBaseline(tool="k6", overall=build("Total", ""), transactions=transactions)


# --- Locust -------------------------------------------------------------------------------

_LOCUST_COLUMNS = {
    "count": ("Request Count", "# requests"),
    "failures": ("Failure Count", "# failures"),
    "median": ("Median Response Time", "Median response time"),
    "mean": ("Average Response Time", "Average response time"),
    "rps": ("Requests/s",),
    "p50": ("50%",),
    "p95": ("95%",),
    "p99": ("99%",),
}


def parse_locust(stream: Stream, what: str, limits: ArtifactLimits | None = None,
                 deadline: Deadline | None = None) -> PerfBaseline:
    """Parse a Locust ``*_stats.csv`` (``--csv``): one row per request name plus an Aggregated row."""
    lim = limits or ArtifactLimits()
    dl = deadline or Deadline(lim.max_seconds_per_file, what)
    csv.field_size_limit(lim.max_line_bytes)
    try:
        rows = csv.DictReader(read_lines(stream, lim, what, dl))
        fields = rows.fieldnames or []
        pick = {k: next((c for c in names if c in fields), None) for k, names in _LOCUST_COLUMNS.items()}
        if "Name" not in fields or pick["count"] is None:
            raise ArtifactRejected(f"{what} has no Name / Request Count columns; not a Locust stats CSV")
        overall: TransactionBaseline | None = None
        transactions: list[TransactionBaseline] = []
        for row in rows:
            def get(key: str, row: dict[str, str] = row) -> float | None:
                column = pick[key]
                return _float(row.get(column)) if column else None
            count = int(get("count") or 0)
            failures = get("failures")
            t = TransactionBaseline(
                name=row.get("Name") or "", samples=count,
                p50_ms=get("p50") if get("p50") is not None else get("median"),
                p95_ms=get("p95"), p99_ms=get("p99"), mean_ms=get("mean"),
                error_rate=(failures / count) if failures is not None and count else None,
                throughput_rps=get("rps"))
            if t.name in ("Aggregated", "Total") and not (row.get("Type") or "").strip():
                overall = t
            elif len(transactions) < lim.max_transactions:
                transactions.append(t)
    except csv.Error as exc:
        raise ArtifactRejected(f"{what} is not readable CSV ({exc})") from exc
    if overall is None and not transactions:
        raise ArtifactRejected(f"{what} holds no request rows")
    return PerfBaseline(tool="locust", overall=overall, transactions=transactions)


PERFORMANCE_PARSERS = {"jtl": parse_jtl, "jmeter_stats": parse_jmeter_stats, "k6": parse_k6, "locust": parse_locust}


def merge_performance(runs: Iterable[tuple[str, PerfBaseline]], limits: ArtifactLimits | None = None) -> tuple[PerfBaseline, str]:
    """Pick one run to report when several were found: the one with the most samples overall."""
    ranked = sorted(runs, key=lambda r: (r[1].overall.samples if r[1].overall else 0), reverse=True)
    chosen_name, chosen = ranked[0]
    note = ""
    if len(ranked) > 1:
        note = f"; {len(ranked)} load-test reports found, using {chosen_name} (most samples)"
    return chosen, note


# --- comparison -----------------------------------------------------------------------------


def _compare(cur: TransactionBaseline, base: TransactionBaseline | None, threshold_pct: float,
             alpha: float) -> tuple[Transaction, str | None]:
    out = cur.to_transaction()
    if base is None or base.p95_ms is None or cur.p95_ms is None or base.p95_ms <= 0:
        return out, None
    regression = (cur.p95_ms - base.p95_ms) / base.p95_ms * 100.0
    out.baseline_p95_ms = base.p95_ms
    out.regression_pct = round(regression, 3)
    if len(cur.points_ms) >= MIN_POINTS_FOR_TEST and len(base.points_ms) >= MIN_POINTS_FOR_TEST:
        # scipy.stats takes ~0.4 s to import: only a comparison with a baseline pays for it
        from scipy.stats import mannwhitneyu

        # one-sided: is the current run stochastically slower than the baseline?
        p_value = float(mannwhitneyu(cur.points_ms, base.points_ms, alternative="greater").pvalue)
        out.significant = bool(p_value < alpha and regression >= threshold_pct)
        return out, "mann-whitney"
    out.significant = regression >= threshold_pct
    return out, "relative-threshold"


def compare_performance(current: PerfBaseline | PerformancePart, baseline: PerfBaseline | PerformancePart,
                        threshold_pct: float = 10.0, alpha: float = 0.05,
                        baseline_sha: str | None = None) -> PerformancePart:
    """Annotate the current run with p95 regression against the baseline and whether it is real.

    ``significant`` is True for a slowdown of at least ``threshold_pct`` in p95 that, when both
    sides carry latency sketches (JMeter JTL), a one-sided Mann-Whitney U test also finds at level
    ``alpha``; otherwise the relative threshold alone decides. ``method`` names what decided the
    overall figure.
    """
    cur = current if isinstance(current, PerfBaseline) else PerfBaseline.from_part(current)
    base = baseline if isinstance(baseline, PerfBaseline) else PerfBaseline.from_part(baseline)
    part = (current.model_copy(deep=True) if isinstance(current, PerformancePart) else cur.to_part())
    by_name = {t.name: t for t in base.transactions}
    part.transactions = [_compare(t, by_name.get(t.name), threshold_pct, alpha)[0] for t in cur.transactions]
    method = None
    if cur.overall is not None:
        part.overall, method = _compare(cur.overall, base.overall, threshold_pct, alpha)
    if method is None:
        methods = {m for t in cur.transactions if (m := _compare(t, by_name.get(t.name), threshold_pct, alpha)[1])}
        method = "mann-whitney" if methods == {"mann-whitney"} else ("relative-threshold" if methods else None)
    part.method = method
    part.baseline_sha = baseline_sha
    return part
