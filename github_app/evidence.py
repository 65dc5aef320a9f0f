"""Evidence collection: every source for one deployment, fetched concurrently, each failing on its own."""

from __future__ import annotations

import asyncio
import base64
import fnmatch
import logging
import os
import re
import tempfile
import time
import zipfile
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import PurePosixPath
from typing import Any

import httpx
from githubkit import GitHub
from sqlalchemy import Engine, and_, case, func, select

from github_app.db import read_only
from github_app.db.models import Deployment, EvidenceRecord, Outcome
from github_app.github import (
    FeatureDisabled,
    GitHubError,
    Invalid,
    MissingPermission,
    NotFound,
    RateLimited,
    TooLarge,
    call,
    paginate,
    paginate_capped,
    parsed,
    translate_errors,
)
from rules.types import same_account
from scorer.evidence import (
    FAILED_OUTCOMES,
    Availability,
    ChangedFile,
    ChangePart,
    CheckResult,
    ChecksPart,
    CoveragePart,
    Evidence,
    OperationalPart,
    Part,
    PerformancePart,
    Provenance,
    SecurityFinding,
    SecurityPart,
    TestsPart,
    change_directories,
    change_entropy,
    is_fix_message,
)
from scorer.parsers import ArtifactRejected, ArtifactResults, parse_artifacts
from scorer.parsers.limits import ArtifactLimits
from scorer.parsers.performance import PerfBaseline, compare_performance
from scorer.parsers.safezip import ArtifactFile, iter_zip_members
from scorer.parsers.sniff import ArtifactGlobs

log = logging.getLogger(__name__)

CHECK_RUN_NAME = "gonogo"
SEVERITY_ORDER = ("critical", "high", "medium", "low", "note")
PERF_REGRESSION_RULE = "GNG-PERF-002"


@dataclass(frozen=True)
class Target:
    """The deployment being judged, as the protection-rule webhook described it."""

    repository: str  # owner/name
    environment: str
    sha: str
    ref: str | None
    run_id: int
    installation_id: int
    created_at: datetime
    deployment_key: str
    default_branch: str = "main"
    creator: str | None = None  # the deployer's login
    creator_id: int | None = None  # and account id, which stays when the login changes

    @property
    def owner(self) -> str:
        return self.repository.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.repository.split("/", 1)[1]


@dataclass
class CollectOptions:
    """What to read and how long to wait for it."""

    timeout_seconds: float = 60.0  # per source
    limits: ArtifactLimits = field(default_factory=ArtifactLimits)
    artifact_globs: list[str] = field(default_factory=lambda: ["*"])
    migration_globs: list[str] = field(default_factory=list)
    perf_threshold_pct: float = 10.0  # used when no policy is given
    max_artifacts: int = 50
    policy: Any = None  # rules.policy.Policy: per-environment GNG-PERF-002 threshold

    def for_policy(self, policy: Any) -> CollectOptions:
        """These options with the policy's artifact and migration globs and its GNG-PERF-002 threshold."""
        return replace(
            self, artifact_globs=list(policy.artifacts), migration_globs=list(policy.migrations), policy=policy
        )

    def perf_threshold(self, environment: str) -> float:
        """The p95 regression (%) that counts as real: the policy's GNG-PERF-002 threshold when it has one."""
        if self.policy is None:
            return self.perf_threshold_pct
        from rules.catalog import RULES_BY_ID
        from rules.policy import effective

        override = effective(self.policy, environment).override(PERF_REGRESSION_RULE)
        if override is not None and override.threshold is not None:
            return float(override.threshold)
        default = RULES_BY_ID[PERF_REGRESSION_RULE].threshold
        return float(default) if default is not None else self.perf_threshold_pct


@dataclass
class Collected:
    """Evidence plus what to store for the next deployment's comparisons."""

    evidence: Evidence
    baseline: dict[str, Any]
    timings_ms: dict[str, float]
    github_calls: int = 0


def _unavailable(part: type[Part], reason: str, source: str) -> Any:
    return part(availability=Availability.UNAVAILABLE, reason=reason, provenance=[Provenance(source=source)])


def _not_configured(part: type[Part], reason: str, source: str) -> Any:
    return part(availability=Availability.NOT_CONFIGURED, reason=reason, provenance=[Provenance(source=source)])


# --- checks ---------------------------------------------------------------------------------


CHECKS_READ = 10_000  # check runs, and commit statuses, read per sha


def _own_check_run(run: Any, own_app_id: int | None) -> bool:
    if own_app_id is not None:
        return run.app is not None and run.app.id == own_app_id
    return run.name == CHECK_RUN_NAME and (run.app.slug if run.app else None) in (None, "gonogo")


async def collect_checks(gh: GitHub[Any], t: Target, own_app_id: int | None = None) -> ChecksPart:
    """Check runs (latest per name and app, gonogo's own excluded) and commit statuses (latest per context).

    gonogo's own check runs (its reports on this commit, for this or another environment) are those its app
    posted, ``own_app_id``: a CI job called ``gonogo`` is a check like any other. Without the id (a caller
    outside the app), a run named ``gonogo`` from an app of that slug is taken for gonogo's own.

    A check run is known by its name and the app that reports it, as GitHub's own "latest" is: two apps may
    report checks of the same name, and a later success of one must not hide a failure of the other.
    """
    listed: tuple[tuple[list[Any], bool], tuple[list[Any], bool]] = await asyncio.gather(
        paginate_capped(
            gh, gh.rest.checks.async_list_for_ref, CHECKS_READ, map_func=lambda r: parsed(r).check_runs,
            owner=t.owner, repo=t.name, ref=t.sha, filter_="all",
        ),
        paginate_capped(gh, gh.rest.repos.async_list_commit_statuses_for_ref, CHECKS_READ, owner=t.owner,
                        repo=t.name, ref=t.sha),
    )  # fmt: skip
    (runs, runs_cut), (statuses, statuses_cut) = listed
    cut = [what for what, was_cut in (("check runs", runs_cut), ("commit statuses", statuses_cut)) if was_cut]
    if cut:
        # statuses come newest first: past the cap lie the oldest, such as a CI failure posted before a flood
        part: ChecksPart = _unavailable(ChecksPart, (
            f"more than {CHECKS_READ:,} {' and '.join(cut)} on {t.sha[:7]}; gonogo reads at most {CHECKS_READ:,}, and "
            "one it did not read could be a failure"), "github.checks")  # fmt: skip
        return part
    by_name: dict[tuple[str, int | None], list[Any]] = {}
    for run in runs:
        if _own_check_run(run, own_app_id):
            continue
        by_name.setdefault((run.name, run.app.id if run.app else None), []).append(run)
    checks: list[CheckResult] = []
    for (name, _app), group in by_name.items():
        # The newest attempt is the run GitHub created last, the highest id: a re-run is a new check run and the
        # earlier one stays as it was. Not started_at: it is null until set (the OpenAPI marks it nullable) and
        # the reporting app may set it to any moment, so a queued or in-progress re-run could sort before the
        # attempt it replaces and let that attempt's old success stand for a check that is not finished.
        latest = max(group, key=lambda r: r.id)
        duration = None
        if latest.started_at and latest.completed_at:
            duration = (latest.completed_at - latest.started_at).total_seconds()
        checks.append(
            CheckResult(
                name=name, kind="check_run", status=str(latest.status), conclusion=latest.conclusion,
                url=latest.html_url or latest.details_url, duration_s=duration, attempts=len(group),
                app=latest.app.slug if latest.app else None,
            )
        )  # fmt: skip
    # A status is known by its context and the account that posted it, as a check run by its name and app: anyone
    # who may write to the repository (the deployer, their workflow's token) can post a context, and their later
    # "success" must not hide the failure the CI posted under it. GitHub's combined status keeps the newest only.
    seen_contexts: dict[tuple[str, int | None], Any] = {}
    finished: Counter[tuple[str, int | None]] = Counter()
    for st in statuses:  # newest first, as GitHub lists them
        key = (st.context, st.creator.id if st.creator else None)
        # a CI build posts "pending" then its result: only a second result means it ran again
        if st.state in ("success", "failure", "error"):
            finished[key] += 1
        seen_contexts.setdefault(key, st)
    for key, st in seen_contexts.items():
        done = st.state in ("success", "failure", "error")
        checks.append(
            CheckResult(
                name=st.context, kind="status", status="completed" if done else "pending",
                conclusion=st.state if done else None, url=st.target_url,
                attempts=max(1, finished[key] + (0 if done else 1)), app=st.creator.login if st.creator else None,
            )
        )  # fmt: skip
    checks.sort(key=lambda c: (c.name, c.kind, c.app or ""))
    if not checks:
        return ChecksPart(
            availability=Availability.OK, reason="no check runs or statuses on this commit", checks=[],
            provenance=[Provenance(source="github.checks"), Provenance(source="github.statuses")],
        )  # fmt: skip
    return ChecksPart(
        availability=Availability.OK, reason=f"{len(checks)} checks read", checks=checks,
        provenance=[Provenance(source="github.checks", detail=f"{len(runs)} check runs"),
                    Provenance(source="github.statuses", detail=f"{len(statuses)} statuses")],
    )  # fmt: skip


# --- artifacts ------------------------------------------------------------------------------


async def _download_artifact(gh: GitHub[Any], t: Target, artifact_id: int, max_bytes: int) -> str:
    """Stream one artifact zip to a temporary file, refusing it past ``max_bytes``; return the path.

    Runs in its own task: ``async with gh`` gives the task a client of its own, because outside that
    context githubkit closes its per-request client as soon as the call returns, cutting a streamed
    body off after the first buffered bytes.
    """
    fd, path = tempfile.mkstemp(prefix="gonogo-artifact-", suffix=".zip")
    try:
        async with gh, translate_errors():
            resp = await gh.rest.actions.async_download_artifact(t.owner, t.name, artifact_id, "zip", stream=True)
            raw = resp.raw_response
            try:
                if raw.status_code in (301, 302, 303, 307, 308):
                    location = raw.headers["location"]
                    # the redirect target is a short-lived blob URL that must not get our token
                    async with httpx.AsyncClient(timeout=60, follow_redirects=True) as blob, \
                            blob.stream("GET", location) as r:  # fmt: skip
                        r.raise_for_status()
                        await _spool(r.aiter_bytes(), fd, max_bytes)
                else:
                    await _spool(raw.aiter_bytes(), fd, max_bytes)
            finally:
                await raw.aclose()
        return path
    except BaseException:
        os.unlink(path)
        raise
    finally:
        os.close(fd)


async def _spool(chunks: Any, fd: int, max_bytes: int) -> None:
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > max_bytes:
            raise ArtifactTooLarge(f"artifact exceeds {max_bytes} bytes while downloading")
        os.write(fd, chunk)


class ArtifactTooLarge(Exception):
    pass


RUNS_PER_SHA = 50  # workflow runs on the sha whose artifacts are listed (the newest)
ARTIFACTS_PER_RUN = 200  # artifacts listed per workflow run


# what a hostile or broken archive can raise while its directory is read; anything else is a bug
_ARCHIVE_ERRORS = (ArtifactRejected, zipfile.BadZipFile, zlib.error, EOFError, OSError, UnicodeError, ValueError)


def _parse_zips(
    paths: list[tuple[str, str]], refused: list[tuple[str, str]], limits: ArtifactLimits, globs: ArtifactGlobs,
    runs: dict[str, str] | None = None,
) -> ArtifactResults:
    """Parse every downloaded artifact zip (CPU work, run in a thread).

    An archive that was refused (too large, failed download, unsafe directory) enters the parse as a
    rejected file, so a part it might have held becomes ``unavailable`` rather than ``not_configured``.
    ``runs`` names the workflow run of each downloaded zip (by path): only attempts of one run's artifact
    excuse each other's failing tests (``retry_scope``).
    """
    files: list[ArtifactFile] = [ArtifactFile(name=name, size=0, rejected=f"{name}: {why}") for name, why in refused]
    handles: list[Any] = []
    try:
        for name, path in paths:
            try:
                fh = open(path, "rb")  # noqa: SIM115 - closed below, after parsing
                handles.append(fh)
                run = (runs or {}).get(path, "")
                files.extend(replace(f, run=run) for f in iter_zip_members(fh, limits, origin=name))
            except _ARCHIVE_ERRORS as exc:
                reason = str(exc) if name in str(exc) else f"{name}: {exc}"
                files.append(ArtifactFile(name=name, size=0, rejected=reason))
        return parse_artifacts(files, limits, globs)
    finally:
        for fh in handles:
            fh.close()


async def collect_artifacts(
    gh: GitHub[Any], t: Target, opts: CollectOptions | asyncio.Future[CollectOptions]
) -> tuple[ArtifactResults | None, str, list[Provenance]]:
    """Download and parse the artifacts of every workflow run on the sha.

    ``opts`` may still be on its way (the policy names which artifacts to read): it is awaited only once
    the artifacts are listed.
    """

    def listing(run_id: int) -> Awaitable[tuple[list[Any], bool]]:
        return paginate_capped(
            gh, gh.rest.actions.async_list_workflow_run_artifacts, ARTIFACTS_PER_RUN,
            map_func=lambda r: parsed(r).artifacts, owner=t.owner, repo=t.name, run_id=run_id,
        )  # fmt: skip

    # the deploying run is known already: list its artifacts while the runs on the sha are looked up
    own_run = asyncio.ensure_future(listing(t.run_id))
    try:
        # GitHub lists the newest runs first: a cut listing keeps those, and what it left out is unread
        runs, runs_cut = await paginate_capped(
            gh, gh.rest.actions.async_list_workflow_runs_for_repo, RUNS_PER_SHA,
            map_func=lambda r: parsed(r).workflow_runs, owner=t.owner, repo=t.name, head_sha=t.sha,
        )  # fmt: skip
        unlisted: list[tuple[str, str]] = []
        if runs_cut:
            unlisted.append((f"workflow runs on {t.sha[:7]}", (
                f"more than {RUNS_PER_SHA} workflow runs ran on this commit and gonogo lists the artifacts of the "
                f"newest {RUNS_PER_SHA} only: reports uploaded by the older runs were not read")))
        other_ids = sorted({r.id for r in runs} - {t.run_id})
        others = await asyncio.gather(*(listing(rid) for rid in other_ids), return_exceptions=True)
        listed: dict[int, tuple[list[Any], bool] | BaseException] = dict(zip(other_ids, others))
        listed[t.run_id] = (await asyncio.gather(own_run, return_exceptions=True))[0]
    finally:
        own_run.cancel()
    artifacts: list[Any] = []
    for rid in sorted(listed):
        listing_or_error = listed[rid]
        if isinstance(listing_or_error, NotFound) and rid == t.run_id:
            continue  # the run id of a deployment may not be listable (e.g. another repository's workflow)
        if isinstance(listing_or_error, BaseException):
            raise listing_or_error
        run_artifacts, artifacts_cut = listing_or_error
        if artifacts_cut:
            unlisted.append((f"artifacts of run {rid}", (
                f"the run has more than {ARTIFACTS_PER_RUN} artifacts and gonogo lists {ARTIFACTS_PER_RUN}: the "
                "others were not read")))
        artifacts.extend(run_artifacts)
    opts = await _ready(opts)
    matching = [a for a in artifacts if any(fnmatch.fnmatchcase(a.name, g) for g in opts.artifact_globs)]
    # an artifact that exists but cannot be read (expired, past the cap) is unread evidence, never "no reports"
    refused: list[tuple[str, str]] = list(unlisted)
    refused += [(a.name, (f"expired{f' on {a.expires_at:%Y-%m-%d}' if a.expires_at else ''}: GitHub no longer "
                          "serves it; re-run the workflow to upload its reports again"))
                for a in matching if a.expired]  # fmt: skip
    live = [a for a in matching if not a.expired]
    wanted = live[: opts.max_artifacts]
    refused += [(a.name, (f"not read: {len(live)} artifacts match the policy's `artifacts` globs and gonogo reads "
                          f"at most {opts.max_artifacts}; narrow the globs to the artifacts that hold reports"))
                for a in live[opts.max_artifacts :]]  # fmt: skip
    provenance = [Provenance(source="github.artifacts", detail=f"{a.name} (run {a.workflow_run.id if a.workflow_run else '?'})",
                             url=a.archive_download_url) for a in wanted]  # fmt: skip
    if not wanted and not refused:
        return None, f"no workflow artifacts on {t.sha[:7]}", provenance
    paths: list[tuple[str, str]] = []
    run_of: dict[str, str] = {}  # downloaded zip -> its workflow run
    try:
        limit = opts.limits.max_archive_bytes
        for a in wanted:
            if a.size_in_bytes > limit:
                refused.append((a.name, (f"{a.size_in_bytes} bytes is above the {limit}-byte archive limit; if it holds "
                                         "no reports, leave it out with the policy's `artifacts` globs, else raise "
                                         "ArtifactLimits.max_archive_bytes")))  # fmt: skip
        ok = [a for a in wanted if a.size_in_bytes <= limit]
        downloads = await asyncio.gather(
            *(_download_artifact(gh, t, a.id, limit) for a in ok), return_exceptions=True
        )
        for a, result in zip(ok, downloads):
            if isinstance(result, RateLimited):
                raise result
            if isinstance(result, ArtifactTooLarge | GitHubError | httpx.HTTPError):
                refused.append((a.name, f"could not be downloaded: {result}"))
            elif isinstance(result, BaseException):
                raise result
            else:
                paths.append((a.name, result))
                run_of[result] = f"run {a.workflow_run.id}" if a.workflow_run else f"artifact {a.id}"
        results = await asyncio.to_thread(_parse_zips, paths, refused, opts.limits, ArtifactGlobs(), run_of)
        return results, f"{len(paths)} of {len(matching)} artifacts read", provenance
    finally:
        for _, path in paths:
            os.unlink(path)


# --- security -------------------------------------------------------------------------------


def _sev_from_cvss(score: float | None) -> str | None:
    if score is None:
        return None
    return "critical" if score >= 9 else "high" if score >= 7 else "medium" if score >= 4 else "low" if score > 0 else "note"


_SHA = re.compile(r"^[0-9a-f]{40}$")


def _alerts_ref(ref: str | None) -> str | None:
    """The code-scanning ``ref`` to ask for; None (the default branch) for a tag or a bare sha.

    Code scanning keeps alerts per branch and pull request. Release workflows often run on a tag,
    which has no analysis of its own: asking for it would read as "not configured" (404) or as zero
    alerts, so the default branch's alerts stand in.
    """
    if not ref or _SHA.match(ref) or ref.startswith("refs/tags/"):
        return None
    return ref if ref.startswith("refs/") else f"refs/heads/{ref}"


MAX_ALERTS = 5000  # open alerts read per source; a source with more is unread evidence, not a partial count
# How far back an alert closed by the deployer still counts as open. Fixed, not taken from the policy: a team that
# shortens waivers.max_lifetime to a day must not thereby let a deployer dismiss an alert and deploy a day later.
# 30 days covers any release a dismissal could be planned ahead of, is the default waivers.max_lifetime (the
# longest anyone's exception to a rule lasts by default) and keeps the extra listing to one page in practice.
SELF_DISMISSAL_WINDOW = timedelta(days=30)


class TooManyAlerts(Exception):
    """A source lists more open alerts than gonogo reads: the ones past the cap could be the worst."""


class ClosedAlertsUnread(Exception):
    """The open alerts were read, but not the recently closed ones: one may be the deployer's own dismissal."""


async def _open_alerts(gh: GitHub[Any], request: Callable[..., Awaitable[Any]], **kwargs: Any) -> list[Any]:
    """Every open alert of one source, or TooManyAlerts when it lists more than the cap."""
    alerts, cut = await paginate_capped(gh, request, MAX_ALERTS, **kwargs)
    if cut:
        raise TooManyAlerts(f"more than {MAX_ALERTS:,} open alerts; gonogo reads at most {MAX_ALERTS:,}, and one "
                            "it did not read could be critical. Close or dismiss the stale ones (or turn off the "
                            "rules that raise them) to bring the open alerts under the cap")  # fmt: skip
    return alerts


def _when(value: Any) -> datetime | None:
    return value.astimezone(UTC) if isinstance(value, datetime) else None


async def _recently_closed(
    gh: GitHub[Any], t: Target, request: Callable[..., Awaitable[Any]], **kwargs: Any
) -> list[Any] | None:
    """The alerts of one source closed (in ``kwargs``' state) within the window, or None when the deployer is
    unknown (nobody to compare with).

    Listed by the time of their last change, newest first, so the listing stops at the first alert last
    changed before the window: it cannot have been closed inside it. More than the cap inside the window is
    TooManyAlerts: an unread one could be the deployer's own dismissal.
    """
    if t.creator is None and t.creator_id is None:
        return None
    since = t.created_at - SELF_DISMISSAL_WINDOW

    def before_window(alert: Any) -> bool:
        changed = _when(getattr(alert, "updated_at", None))
        return changed is not None and changed < since

    alerts, cut = await paginate_capped(gh, request, MAX_ALERTS, stop=before_window, sort="updated",
                                        direction="desc", **kwargs)  # fmt: skip
    if cut:
        raise TooManyAlerts(
            f"more than {MAX_ALERTS:,} alerts were closed in the {SELF_DISMISSAL_WINDOW.days} days before the "
            f"deployment; gonogo reads at most {MAX_ALERTS:,}, and one it did not read could be an alert the deployer "
            "dismissed themselves, which counts as open"
        )  # fmt: skip
    return alerts


async def _both_listings(
    open_listing: Awaitable[list[Any]], closed_listing: Awaitable[list[Any] | None]
) -> tuple[list[Any], list[Any]]:
    """The open alerts and the recently closed ones of a source, read at once; the source is read only if both are."""
    opened, closed = await asyncio.gather(open_listing, closed_listing, return_exceptions=True)
    for result in (opened, closed):
        if isinstance(result, RateLimited):
            raise result  # not an answer about the repository: the whole evaluation waits
    if isinstance(opened, BaseException):
        raise opened
    if isinstance(closed, TooManyAlerts):
        raise closed
    if isinstance(closed, BaseException):
        if not isinstance(closed, GitHubError | httpx.HTTPError | ValueError | OSError):
            raise closed
        raise ClosedAlertsUnread(f"the alerts closed in the last {SELF_DISMISSAL_WINDOW.days} days could not be "
                                 f"listed ({closed}), and one the deployer dismissed themselves counts as "
                                 "open") from closed  # fmt: skip
    return opened, closed or []


def _closed_by_deployer(t: Target, user: Any, when: datetime | None) -> bool:
    """Whether ``user`` is the deployer and closed the alert inside the window."""
    if user is None or when is None or when < t.created_at - SELF_DISMISSAL_WINDOW:
        return False
    return same_account(getattr(user, "login", None), getattr(user, "id", None), t.creator, t.creator_id)


def _self_dismissal_note(verb: str, user: Any, when: datetime) -> str:
    """What the finding and the report say of an alert that counts although the deployer closed it."""
    kind = "resolution" if verb.startswith("resolved") else "dismissal"
    return (f"{verb} by {user.login}, the deployer, on {when:%Y-%m-%d %H:%M} UTC: a {kind} by anyone else "
            "counts")


def _code_scanning_finding(a: Any, note: str | None = None) -> SecurityFinding:
    rule = a.rule
    sev = (rule.security_severity_level if rule else None) or None
    if not sev:
        level = rule.severity if rule else None
        sev = {"error": "high", "warning": "medium", "note": "note", "none": "note"}.get(str(level), "medium")
    loc = a.most_recent_instance.location if a.most_recent_instance else None
    return SecurityFinding(
        source="code_scanning", rule_id=(rule.id if rule and rule.id else "unknown"), severity=str(sev),  # type: ignore[arg-type]
        title=(rule.description if rule else "") or "", path=loc.path if loc else None,
        line=loc.start_line if loc else None, url=a.html_url, note=note,
    )  # fmt: skip


async def _code_scanning(gh: GitHub[Any], t: Target) -> list[SecurityFinding]:
    ref = _alerts_ref(t.ref)
    kwargs: dict[str, Any] = {"owner": t.owner, "repo": t.name}
    if ref:
        kwargs["ref"] = ref
    request = gh.rest.code_scanning.async_list_alerts_for_repo
    alerts, closed = await _both_listings(
        _open_alerts(gh, request, state="open", **kwargs), _recently_closed(gh, t, request, state="dismissed", **kwargs)
    )  # fmt: skip
    # a fixed alert was closed by a change to the code, not by a person: never listed here
    return [_code_scanning_finding(a) for a in alerts] + _self_dismissed(t, closed, _code_scanning_finding)


def _dependabot_finding(a: Any, note: str | None = None) -> SecurityFinding:
    adv = a.security_advisory
    sev = str(adv.severity) if adv else "medium"
    pkg = a.dependency.package.name if a.dependency and a.dependency.package else None
    return SecurityFinding(
        source="dependabot", rule_id=(adv.ghsa_id if adv else f"dependabot-{a.number}"), severity=sev,  # type: ignore[arg-type]
        title=(adv.summary if adv else ""), path=a.dependency.manifest_path if a.dependency else None,
        package=pkg, url=a.html_url, note=note,
    )  # fmt: skip


async def _dependabot(gh: GitHub[Any], t: Target) -> list[SecurityFinding]:
    request = gh.rest.dependabot.async_list_alerts_for_repo
    # only "dismissed": "auto_dismissed" is Dependabot's own rule closing it, "fixed" an upgrade; neither a person
    alerts, closed = await _both_listings(
        _open_alerts(gh, request, owner=t.owner, repo=t.name, state="open"),
        _recently_closed(gh, t, request, owner=t.owner, repo=t.name, state="dismissed"),
    )  # fmt: skip
    return [_dependabot_finding(a) for a in alerts] + _self_dismissed(t, closed, _dependabot_finding)


def _self_dismissed(t: Target, closed: list[Any], finding: Callable[[Any, str | None], SecurityFinding],
                    ) -> list[SecurityFinding]:
    """The dismissed code-scanning or Dependabot alerts the deployer dismissed, as findings with a note."""
    found = []
    for a in closed:
        when = _when(a.dismissed_at)
        if a.state == "dismissed" and when is not None and _closed_by_deployer(t, a.dismissed_by, when):
            found.append(finding(a, _self_dismissal_note("dismissed", a.dismissed_by, when)))
    return found


def _secret_finding(a: Any, note: str | None = None) -> SecurityFinding:
    return SecurityFinding(
        source="secret_scanning", rule_id=str(a.secret_type or "secret"), severity="critical",
        title=str(a.secret_type_display_name or a.secret_type or "exposed secret"), url=a.html_url,
        line=None, path=None, package=f"alert-{a.number}", note=note,
    )  # fmt: skip


async def _secret_scanning(gh: GitHub[Any], t: Target) -> list[SecurityFinding]:
    request = gh.rest.secret_scanning.async_list_alerts_for_repo
    alerts, closed = await _both_listings(
        _open_alerts(gh, request, owner=t.owner, repo=t.name, state="open"),
        _recently_closed(gh, t, request, owner=t.owner, repo=t.name, state="resolved"),
    )  # fmt: skip
    found = [_secret_finding(a) for a in alerts]
    for a in closed:
        when = _when(a.resolved_at)
        if a.state != "resolved" or when is None or not _closed_by_deployer(t, a.resolved_by, when):
            continue
        # every resolution is a person's word (false_positive, used_in_tests, wont_fix, revoked...), except a
        # revocation GitHub's own validity check confirms: the secret no longer works, whoever said so
        if a.resolution == "revoked" and a.validity == "inactive":
            continue
        found.append(_secret_finding(a, _self_dismissal_note(f"resolved as {a.resolution or 'closed'}",
                                                             a.resolved_by, when)))
    return found


# the installation permission each alert source needs: (permission key in app.yml, its name in the app settings)
ALERT_PERMISSIONS = {
    "code_scanning": ("security_events", "Code scanning alerts"),
    "dependabot": ("vulnerability_alerts", "Dependabot alerts"),
    "secret_scanning": ("secret_scanning_alerts", "Secret scanning alerts"),
}


async def _alert_source(name: str, fetch: Awaitable[list[SecurityFinding]]) -> tuple[str, Availability, list[SecurityFinding], str]:
    label = name.replace("_", " ")
    try:
        return name, Availability.OK, await fetch, "read"
    except FeatureDisabled as exc:
        # one of GitHub's documented "this feature is off for the repository" answers
        return name, Availability.NOT_CONFIGURED, [], f"{label} is not enabled for this repository ({exc.github_message})"
    except MissingPermission:
        key, title = ALERT_PERMISSIONS[name]
        return name, Availability.UNAVAILABLE, [], (
            f"{label} could not be read: the gonogo app lacks the \"{title}\" permission ({key}: read). An "
            f"organisation or repository admin must grant it in the GitHub App's settings and accept it on the "
            f"installation"
        )  # fmt: skip
    except RateLimited:
        raise  # not an answer about the repository: the whole evaluation waits
    except (TooManyAlerts, ClosedAlertsUnread) as exc:
        return name, Availability.UNAVAILABLE, [], f"{label} could not be read in full: {exc}"
    except GitHubError as exc:
        # any other 403 or 404 (or error) says nothing about whether the feature is on: unreadable, never "off"
        return name, Availability.UNAVAILABLE, [], f"{label} could not be read: {exc}"


def build_security(
    alert_results: list[tuple[str, Availability, list[SecurityFinding], str]], artifacts: ArtifactResults | None,
    limits: ArtifactLimits, artifacts_error: str | None = None,
) -> SecurityPart:
    """Merge GitHub alerts with SARIF/Trivy findings from artifacts, deduplicated by rule and location.

    ``artifacts_error`` says the workflow artifacts could not be listed: SARIF or Trivy reports may be
    missing, so the part is not claimed complete.
    """
    sources: dict[str, Availability] = {}
    reasons: list[str] = []
    if artifacts_error is not None:
        sources["artifacts"] = Availability.UNAVAILABLE
        reasons.append(f"SARIF/Trivy reports in workflow artifacts could not be read: {artifacts_error}")
    seen: set[tuple[Any, ...]] = set()
    findings: list[SecurityFinding] = []
    counts: Counter[str] = Counter()
    secrets = 0
    provenance: list[Provenance] = []
    for name, avail, found, reason in alert_results:
        sources[name] = avail
        kept = [f for f in found if f.note]
        detail = f"{avail.value}: {len(found) - len(kept)} open"
        if kept:
            detail += f", {len(kept)} closed by the deployer counted as open"
            reasons.append(f"{name.replace('_', ' ')}: {len(kept)} alert{'s' if len(kept) > 1 else ''} closed by "
                           "the deployer count as open (a dismissal by anyone else counts)")  # fmt: skip
        provenance.append(Provenance(source=f"github.{name}", detail=detail))
        if avail is not Availability.OK:
            reasons.append(reason)
        for f in found:
            if f.key in seen:
                continue
            seen.add(f.key)
            findings.append(f)
            counts[f.severity] += 1
            if f.source == "secret_scanning":
                secrets += 1
    if artifacts is not None:
        for name, avail in artifacts.security.sources.items():
            sources[name] = avail
        if artifacts.security.has_data:
            provenance.extend(artifacts.security.provenance)
            for f in artifacts.security_findings:
                if f.key in seen:
                    counts[f.severity] -= 1  # already counted from a GitHub alert at the same place
                    continue
                seen.add(f.key)
                findings.append(f)
            # artifact counts are complete even when the finding list was capped
            for sev, n in artifacts.security.counts.items():
                counts[sev] += n
    any_ok = any(a is Availability.OK for a in sources.values())
    unavailable = [n for n, a in sources.items() if a is Availability.UNAVAILABLE]
    refused = list(artifacts.security.refused) if artifacts is not None else []
    if artifacts is not None and refused:
        reasons.append(artifacts.security.reason)
    if unavailable:
        availability, reason = Availability.UNAVAILABLE, "; ".join(reasons) or f"{', '.join(unavailable)} unreadable"
    elif refused or any(a is Availability.INCOMPLETE for a in sources.values()):
        availability, reason = Availability.INCOMPLETE, "; ".join(reasons)
    elif any_ok:
        availability, reason = Availability.OK, "; ".join(reasons) if reasons else "all security sources read"
    else:
        availability, reason = Availability.NOT_CONFIGURED, "no security scanning is enabled for this repository"
    findings.sort(key=lambda f: SEVERITY_ORDER.index(f.severity))
    return SecurityPart(
        availability=availability, reason=reason, findings=findings[: limits.max_findings],
        counts={k: v for k, v in counts.items() if v > 0}, secrets_open=secrets, sources=sources, provenance=provenance,
        refused=refused,
    )  # fmt: skip


# --- change ---------------------------------------------------------------------------------


def _is_migration(path: str, globs: list[str]) -> bool:
    p = PurePosixPath(path)
    return any(p.match(g) or fnmatch.fnmatchcase(path, g) for g in globs)


COMPARE_FILE_LIMIT = 300  # GitHub's compare lists at most this many files
PULL_FILE_LIMIT = 3000  # and a pull request's file listing at most this many
STORED_FILES = 300  # changed files kept in the evidence (the counts cover them all)


@dataclass
class ChangeBase:
    """What a change is measured from, and the comparison GitHub gave for it (when already fetched)."""

    sha: str
    source: str  # last_deployment / merge_base / release_tag / parent_commit
    label: str  # in words, for the report
    comparison: Any = None


async def collect_change(
    gh: GitHub[Any], engine: Engine, t: Target, opts: CollectOptions | asyncio.Future[CollectOptions],
    base: ChangeBase | str | None,
) -> ChangePart:
    """Compare the base (the last successfully deployed sha, or a first deployment's stand-in) with this sha."""
    if isinstance(base, str):
        base = ChangeBase(base, "last_deployment", f"the last successful deployment ({base[:7]})")
    if base is None:
        # nothing earlier exists to compare with (the repository's first commit): missing history, not an
        # unread source; a compare that fails is unavailable instead and never lets a deployment through
        part: ChangePart = _not_configured(
            ChangePart, f"first deployment to {t.environment}: no earlier successful deployment, merge base, "
            "release or parent commit to compare with", "gonogo.history",
        )  # fmt: skip
        return part
    base_sha = base.sha
    if base_sha == t.sha:
        return ChangePart(
            availability=Availability.OK, reason="redeploy of the sha already deployed", base_sha=base_sha, commits=0,
            files_changed=0, additions=0, deletions=0, subsystems=0, entropy=0.0, authors=0, has_migration=False,
            base_source=base.source, base_label=base.label, directories=0, fix_commits=0,
            provenance=[Provenance(source="gonogo.history")],
        )  # fmt: skip
    cmp = base.comparison
    if cmp is None:
        # unpaginated, GitHub lists up to 250 commits and 300 files; with per_page it would cut commits at 100
        cmp = parsed(await call(gh.rest.repos.async_compare_commits(t.owner, t.name, f"{base_sha}...{t.sha}")))
    files: list[Any] = list(cmp.files or [])
    provenance = [Provenance(source="github.compare", detail=f"from {base.label}", url=cmp.html_url)]
    truncated = len(files) >= COMPARE_FILE_LIMIT
    if truncated:
        files, truncated, pr_note = await _full_file_list(gh, t, files, base_sha)
        provenance.append(Provenance(source="github.pulls.files", detail=pr_note))
    additions = sum(f.additions for f in files)
    deletions = sum(f.deletions for f in files)
    paths = [f.filename for f in files]
    subsystems = len({p.split("/", 1)[0] if "/" in p else "." for p in paths})
    authors = Counter(
        (getattr(c.author, "login", None) or (c.commit.author.name if c.commit.author else "unknown"))
        for c in cmp.commits
    )
    main_author = authors.most_common(1)[0][0] if authors else None
    commit_times = [when for c in cmp.commits if (when := _commit_time(c)) is not None]
    experience = recent_experience = None
    unread: list[str] = []
    author_known = bool(main_author and main_author != "unknown")
    reference = min(commit_times) if commit_times else datetime.now(UTC)  # when the change began
    if author_known:
        try:
            earlier: list[Any] = await paginate(
                gh, gh.rest.repos.async_list_commits, owner=t.owner, repo=t.name, sha=base_sha, author=main_author,
                limit=1000,
            )  # fmt: skip
            experience = len(earlier)
            # the same listing gives the dates: no extra call for the recent experience
            recent_experience = round(recent_weight(
                [when for c in earlier if (when := _commit_time(c)) is not None], reference), 3)
        except RateLimited:
            raise
        except GitHubError as exc:
            experience = None
            unread.append(f"the main author's earlier commits could not be listed: {exc}")
    history = await _file_history(gh, t, base_sha, files, main_author if author_known else None, reference)
    hotspots = await asyncio.to_thread(_hotspots, engine, t, set(paths))
    migration_globs = (await _ready(opts)).migration_globs
    count = f"≥ {len(files)}" if truncated else str(len(files))
    reason = f"compared {base_sha[:7]}...{t.sha[:7]}, from {base.label}: {count} files changed"
    if truncated:
        reason += (" (GitHub lists only the first files of a large change and no pull request gave the full list: "
                   "the counts are lower bounds)")  # fmt: skip
    return ChangePart(
        availability=Availability.OK, reason=reason, base_sha=base_sha, base_source=base.source,
        base_label=base.label, files_truncated=truncated,
        commits=cmp.total_commits, files_changed=len(files), additions=additions, deletions=deletions,
        subsystems=subsystems, entropy=round(change_entropy([f.additions + f.deletions for f in files]), 4),
        authors=len(authors), author_experience=experience,
        # both from the compare answer already read: no extra API call
        directories=change_directories(paths), fix_commits=sum(is_fix_message(c.commit.message) for c in cmp.commits),
        author_recent_experience=recent_experience, file_developers=history.developers,
        file_age_days=history.age_days, file_prior_changes=history.prior_changes,
        author_subsystem_experience=history.subsystem_experience, lines_before=history.lines_before,
        has_migration=any(_is_migration(p, migration_globs) for p in paths), hotspots=sorted(hotspots),
        first_commit_at=min(commit_times) if commit_times else None, unread=[*unread, *history.unread],
        files=[ChangedFile(path=f.filename, status=str(f.status), additions=f.additions, deletions=f.deletions)
               for f in files[:STORED_FILES]],
        provenance=[*provenance, *history.provenance],
    )  # fmt: skip


FILE_HISTORY_LIMIT = 20  # changed files whose earlier commits are read (one call each); more: unknown
SUBSYSTEM_HISTORY_LIMIT = 3  # touched subsystems whose earlier commits by the main author are read (one call each)
HISTORY_PAGE = 100  # one page per call: the latest 100 earlier commits of a file or subsystem


@dataclass
class FileHistory:
    """Kamei's history metrics of a change, from the earlier commits of its files; None where unknown."""

    developers: int | None = None
    age_days: float | None = None
    prior_changes: int | None = None
    subsystem_experience: int | None = None
    lines_before: int | None = None
    provenance: list[Provenance] = field(default_factory=list)
    unread: list[str] = field(default_factory=list)  # reads that failed (not those skipped over the caps)


def recent_weight(dates: list[datetime], reference: datetime) -> float:
    """Earlier commits weighted by how recent they are: each counts 1 / (1 + years before ``reference``)."""
    year_s = 365.25 * 86_400
    return float(sum(1.0 / (1.0 + max((reference - d).total_seconds(), 0.0) / year_s) for d in dates))


async def _file_history(gh: GitHub[Any], t: Target, base_sha: str, files: list[Any], author: str | None,
                        reference: datetime) -> FileHistory:
    """Developers, age and earlier changes of the changed files, and the author's experience in their subsystems.

    Bounded API cost: one commits listing (a single page of ``HISTORY_PAGE``) and one contents read (its
    lines before the change) per changed file that existed before (at most ``FILE_HISTORY_LIMIT`` files),
    plus one listing per touched top-level directory for the main author (at most
    ``SUBSYSTEM_HISTORY_LIMIT``): at most 43 calls per deployment. Only commits reachable
    from the base, i.e. before the change, are read. A change over the limits, or a failed read, leaves the
    metrics unknown (None), never zero; a failed read is also listed in ``unread``, which rules out a go.
    """
    out = FileHistory()
    existing = [f.filename for f in files if str(f.status) != "added"]
    subsystems = sorted({p.split("/", 1)[0] for p in (f.filename for f in files) if "/" in p})

    async def listing(**query: Any) -> list[Any]:
        resp = await call(gh.rest.repos.async_list_commits(t.owner, t.name, sha=base_sha, per_page=HISTORY_PAGE,
                                                           **query))
        return list(resp.parsed_data)

    per_file: list[list[Any]] = []
    if len(existing) > FILE_HISTORY_LIMIT:
        out.provenance.append(Provenance(source="github.commits", detail=(
            f"{len(existing)} changed files existed before, more than the {FILE_HISTORY_LIMIT} whose history "
            "gonogo reads: their developers, age, earlier changes and lines are unknown")))
    else:
        try:
            per_file = await asyncio.gather(*(listing(path=p) for p in existing))
            lines = await asyncio.gather(*(_lines_at(gh, t, p, base_sha) for p in existing))
        except RateLimited:
            raise
        except GitHubError as exc:
            out.provenance.append(Provenance(source="github.commits", detail=f"file history unreadable: {exc}"))
            out.unread.append(f"the changed files' earlier commits could not be read: {exc}")
        else:
            commits = {c.sha: c for found in per_file for c in found}
            out.prior_changes = len(commits)
            out.developers = len({_commit_author(c) for c in commits.values()} - {None})
            last = [max(times) for found in per_file if (times := [w for c in found if (w := _commit_time(c))])]
            if last:  # files without earlier commits have no age
                out.age_days = round(sum(max((reference - w).total_seconds(), 0.0) for w in last) / len(last)
                                     / 86_400, 3)
            # files added by the change had no lines before it; one too large to be sent inline leaves it unknown
            out.lines_before = None if any(n is None for n in lines) else sum(n for n in lines if n is not None)
            out.provenance.append(Provenance(source="github.commits", detail=(
                f"earlier commits (the latest {HISTORY_PAGE}) and lines of {len(existing)} changed files")))
    root_files = [p for p in existing if "/" not in p]
    if author is None or len(subsystems) > SUBSYSTEM_HISTORY_LIMIT or (root_files and not per_file):
        return out  # no main author, too many subsystems, or the root files' histories were not read
    try:
        per_dir = await asyncio.gather(*(listing(path=d, author=author) for d in subsystems))
    except RateLimited:
        raise
    except GitHubError as exc:
        out.provenance.append(Provenance(source="github.commits", detail=f"subsystem history unreadable: {exc}"))
        out.unread.append(f"the main author's earlier commits in the touched subsystems could not be read: {exc}")
        return out
    mine = {c.sha for found in per_dir for c in found}
    # files at the repository's root form one subsystem: their histories are already read
    mine |= {c.sha for p, found in zip(existing, per_file, strict=False) if "/" not in p for c in found
             if _commit_author(c) == author}
    out.subsystem_experience = len(mine)
    return out


async def _lines_at(gh: GitHub[Any], t: Target, path: str, ref: str) -> int | None:
    """Lines of a file at ``ref`` (0 when it did not exist there; None when GitHub does not send it inline)."""
    try:
        data = parsed(await call(gh.rest.repos.async_get_content(t.owner, t.name, path, ref=ref)))
    except NotFound:
        return 0
    except TooLarge:  # over 1 MB (a lock file, say): GitHub answers 403 too_large, and only its size is unknown
        return None
    content = getattr(data, "content", None)
    if not isinstance(content, str) or getattr(data, "encoding", "base64") != "base64":
        return None  # a directory or a file over 1 MB: its size in lines is not known
    raw = base64.b64decode(content)
    return raw.count(b"\n") + (1 if raw and not raw.endswith(b"\n") else 0)


def _commit_author(c: Any) -> str | None:
    """The login of a listed commit's author, else the name in the commit."""
    return getattr(c.author, "login", None) or (c.commit.author.name if c.commit.author else None)


async def _pull_covers(gh: GitHub[Any], t: Target, pull: Any, base_sha: str) -> bool:
    """Whether the pull request's diff holds every commit deployed since ``base_sha``.

    Its files are the change from the merge base of its base branch and its head: they cover the deployment
    only when its head is the deployed sha and that merge base is ``base_sha`` or one of its ancestors. A
    release of several pull requests (or of a merge commit) is covered by none of them.
    """
    if pull.head.sha != t.sha:
        return False
    try:
        own = parsed(await call(gh.rest.repos.async_compare_commits(t.owner, t.name, f"{pull.base.sha}...{t.sha}")))
        merge_base = own.merge_base_commit.sha
        if merge_base == base_sha:
            return True
        reach = parsed(await call(gh.rest.repos.async_compare_commits(t.owner, t.name, f"{merge_base}...{base_sha}")))
    except RateLimited:
        raise
    except GitHubError:
        return False  # not known to cover it: the list stays a lower bound
    return reach.status in ("ahead", "identical")


async def _full_file_list(gh: GitHub[Any], t: Target, compared: list[Any], base_sha: str) -> tuple[list[Any], bool, str]:
    """The changed files when the comparison was cut at 300: from the pull request of the sha, if there is one.

    Returns the files, whether the list is still partial (a lower bound), and a note on where it came from.
    The pull request's list replaces the comparison's when its diff covers the whole deployed range (see
    ``_pull_covers``), it is at least as long and below GitHub's cap of 3,000 files; otherwise the two are
    merged and stay a lower bound.
    """
    pulls: list[Any] = await paginate(
        gh, gh.rest.repos.async_list_pull_requests_associated_with_commit, owner=t.owner, repo=t.name,
        commit_sha=t.sha, limit=30,
    )  # fmt: skip
    if not pulls:
        return compared, True, "no pull request for this commit: the file list stays cut at 300"
    pull = next((p for p in pulls if p.head.sha == t.sha), pulls[0])
    listed: list[Any] = await paginate(
        gh, gh.rest.pulls.async_list_files, owner=t.owner, repo=t.name, pull_number=pull.number, limit=PULL_FILE_LIMIT
    )  # fmt: skip
    merged = {f.filename: f for f in compared}
    merged.update((f.filename, f) for f in listed)
    covers = await _pull_covers(gh, t, pull, base_sha)
    complete = covers and len(compared) <= len(listed) < PULL_FILE_LIMIT
    note = f"pull request #{pull.number}: {len(listed)} files" + (
        "" if complete else " (still a lower bound)" if covers else
        " (still a lower bound: the release holds commits from outside this pull request)")  # fmt: skip
    return list(merged.values()), not complete, note


async def first_deployment_base(gh: GitHub[Any], t: Target, releases_to_try: int = 5) -> ChangeBase | None:
    """What to measure a first deployment to an environment from, in order of preference.

    The merge base with the default branch (a deployment from a branch); else the newest earlier release whose
    tag the sha descends from; else the sha's parent commit. None for a repository's first commit.
    """
    try:
        cmp = parsed(await call(gh.rest.repos.async_compare_commits(t.owner, t.name, f"{t.default_branch}...{t.sha}")))
    except (NotFound, Invalid):
        cmp = None  # no such default branch, or no history in common with it
    if cmp is not None and cmp.ahead_by > 0 and cmp.merge_base_commit.sha != t.sha:
        merge_base = cmp.merge_base_commit.sha
        return ChangeBase(merge_base, "merge_base", f"the merge base with {t.default_branch} ({merge_base[:7]})", cmp)
    releases: list[Any] = await paginate(
        gh, gh.rest.repos.async_list_releases, owner=t.owner, repo=t.name, limit=30,
    )  # fmt: skip
    tried = 0
    for release in releases:
        if release.draft or tried >= releases_to_try:
            continue
        tried += 1
        try:
            cmp = parsed(await call(gh.rest.repos.async_compare_commits(t.owner, t.name, f"{release.tag_name}...{t.sha}")))
        except (NotFound, Invalid):
            continue
        if cmp.status == "ahead":  # the release is an ancestor of this sha
            return ChangeBase(cmp.base_commit.sha, "release_tag", f"the previous release {release.tag_name}", cmp)
    commit = parsed(await call(gh.rest.repos.async_get_commit(t.owner, t.name, t.sha)))
    if not commit.parents:
        return None
    parent = commit.parents[0].sha
    return ChangeBase(parent, "parent_commit", f"the parent commit ({parent[:7]})")


def _commit_time(c: Any) -> datetime | None:
    """When a compared commit was committed (its author date if the committer has none)."""
    for who in (c.commit.committer, c.commit.author):
        moment = getattr(who, "date", None) if who is not None else None
        if isinstance(moment, datetime):
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        if isinstance(moment, str) and moment:
            try:
                parsed_time = datetime.fromisoformat(moment)
            except ValueError:
                continue
            return parsed_time if parsed_time.tzinfo else parsed_time.replace(tzinfo=UTC)
    return None


def _hotspots(engine: Engine, t: Target, paths: set[str]) -> set[str]:
    """Files of this change that were also changed by deployments that later failed."""
    if not paths:
        return set()
    with read_only(engine) as conn:
        failed = conn.execute(
            select(Deployment.sha).join(
                Outcome, and_(Outcome.repository == Deployment.repository, Outcome.environment == Deployment.environment,
                              Outcome.sha == Deployment.sha),
            ).where(Deployment.repository == t.repository, Outcome.outcome.in_(list(FAILED_OUTCOMES)))
        ).scalars().all()  # fmt: skip
        if not failed:
            return set()
        rows = conn.execute(
            select(EvidenceRecord.data).join(Deployment, Deployment.id == EvidenceRecord.deployment_id)
            .where(Deployment.repository == t.repository, Deployment.sha.in_(set(failed)))
        ).scalars().all()  # fmt: skip
    hot: set[str] = set()
    for data in rows:
        for f in ((data or {}).get("change") or {}).get("files") or []:
            if f.get("path") in paths:
                hot.add(f["path"])
    return hot


async def last_successful_sha(gh: GitHub[Any], t: Target, scan: int = 100, batch: int = 10) -> str | None:
    """The sha of the newest deployment to this environment whose latest status is success, per GitHub.

    A busy environment lists many waiting or failed deployments before the last good one, so up to
    ``scan`` of them (one page) are checked, ``batch`` status look-ups at a time, newest first.
    """
    deployments: list[Any] = await paginate(
        gh, gh.rest.repos.async_list_deployments, owner=t.owner, repo=t.name, environment=t.environment, limit=scan
    )
    candidates = [dep for dep in deployments if dep.sha != t.sha]  # newest first
    for start in range(0, len(candidates), batch):
        chunk = candidates[start : start + batch]
        latest: list[list[Any]] = await asyncio.gather(*(
            paginate(gh, gh.rest.repos.async_list_deployment_statuses, owner=t.owner, repo=t.name,
                     deployment_id=dep.id, limit=1)
            for dep in chunk
        ))  # fmt: skip
        for dep, statuses in zip(chunk, latest):
            if statuses and statuses[0].state == "success":
                return str(dep.sha)
    return None


async def _change_with_base(
    gh: GitHub[Any], engine: Engine, t: Target, opts: CollectOptions | asyncio.Future[CollectOptions],
    history: asyncio.Future[EnvironmentHistory],
) -> ChangePart:
    base_sha = (await asyncio.shield(history)).last_success_sha
    source = "gonogo.history"
    if base_sha is None:
        try:
            base_sha = await last_successful_sha(gh, t)
            source = "github.deployments"
        except RateLimited:
            raise
        except GitHubError as exc:
            # not knowing the last good deployment is not knowing that there was none
            log.info("evidence.deployments_unreadable", extra={"error": str(exc)})
            part: ChangePart = _unavailable(
                ChangePart, f"earlier deployments to {t.environment} could not be read: {exc}", "github.deployments"
            )  # fmt: skip
            return part
    if base_sha is not None:
        part = await collect_change(gh, engine, t, opts, base_sha)
        if part.ok:
            part.provenance.append(Provenance(source=source, detail=f"last successful deployment {base_sha[:7]}"))
        return part
    base = await first_deployment_base(gh, t)
    if base is None:
        part = _not_configured(ChangePart, f"first deployment to {t.environment} of the repository's first commit: "
                                           "nothing to compare with", "github.commits")  # fmt: skip
        return part
    part = await collect_change(gh, engine, t, opts, base)
    if part.ok:
        part.provenance.append(Provenance(
            source="github.deployments", detail=f"first deployment to {t.environment}: measured from {base.label}"))
    return part


# --- history (our own database) -------------------------------------------------------------


@dataclass
class EnvironmentHistory:
    last_success_sha: str | None
    last_success_baseline: dict[str, Any] | None
    operational: OperationalPart


def read_history(engine: Engine, t: Target) -> EnvironmentHistory:
    """What gonogo remembers of this environment: last good deployment, recent pace and failures."""
    now = t.created_at
    with read_only(engine) as conn:
        # The change is measured from the last release gonogo let through that then deployed fine (this very
        # commit, when it was let through before). A success status alone is the deployer's word (their workflow
        # posts it, on any deployment of any commit, even this one): counted as the base, it would shrink the
        # change being gated.
        let_through = select(Deployment.id).where(
            Deployment.repository == Outcome.repository, Deployment.environment == Outcome.environment,
            Deployment.sha == Outcome.sha, Deployment.answer == "approved",
        ).exists()  # fmt: skip
        last_ok = conn.execute(
            select(Outcome.sha, Outcome.observed_at)
            .where(Outcome.repository == t.repository, Outcome.environment == t.environment, Outcome.outcome == "success",
                   Outcome.observed_at <= now, let_through)
            .order_by(Outcome.observed_at.desc()).limit(1)
        ).first()  # fmt: skip
        baseline = None
        if last_ok is not None:
            baseline = conn.execute(
                select(EvidenceRecord.baseline).join(Deployment, Deployment.id == EvidenceRecord.deployment_id)
                .where(Deployment.repository == t.repository, Deployment.environment == t.environment,
                       Deployment.sha == last_ok.sha)
                .order_by(EvidenceRecord.id.desc()).limit(1)
            ).scalar()  # fmt: skip
        # the last approved deployment before this one, and how many were approved in the day before it
        in_last_day = case((Deployment.created_at >= now - timedelta(hours=24), 1), else_=0)
        previous, last_day = conn.execute(
            select(func.max(Deployment.created_at), func.coalesce(func.sum(in_last_day), 0)).where(
                Deployment.repository == t.repository, Deployment.environment == t.environment,
                Deployment.created_at < now, Deployment.answer == "approved",
            )
        ).one()  # fmt: skip
        # The recent failure rate is a share of releases (commits), not of outcome events: the deployer's workflow
        # can post any number of success statuses, on any deployment of any commit, so a success counts only for a
        # commit gonogo let through, and a commit counts once, failed if anything said it failed (as in learning).
        failed = case((Outcome.outcome.in_(sorted(FAILED_OUTCOMES)), 1), else_=0)
        releases = conn.execute(
            select(Outcome.sha, func.max(failed)).where(
                Outcome.repository == t.repository, Outcome.environment == t.environment,
                Outcome.observed_at >= now - timedelta(days=30), Outcome.observed_at <= now,
                Outcome.outcome.in_(sorted(FAILED_OUTCOMES)) | let_through,
            ).group_by(Outcome.sha)
        ).all()  # fmt: skip
    failure_rate = (sum(1 for r in releases if r[1]) / len(releases)) if releases else None
    op = OperationalPart(
        availability=Availability.OK,
        reason="from gonogo's deployment history" if releases or previous else "no earlier deployments recorded",
        hours_since_last_deploy=round((now - previous).total_seconds() / 3600, 2) if previous else None,
        deploys_last_24h=int(last_day), env_failure_rate_30d=failure_rate,
        hour_utc=now.astimezone(UTC).hour, weekday=now.astimezone(UTC).weekday(),
        provenance=[Provenance(source="gonogo.history", detail=f"{len(releases)} releases with an outcome in 30 days")],
    )  # fmt: skip
    return EnvironmentHistory(last_ok.sha if last_ok else None, baseline, op)


# --- orchestration --------------------------------------------------------------------------


async def _timed(name: str, coro: Awaitable[Any], timeout: float, timings: dict[str, float]) -> Any:
    start = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            return await coro
    except TimeoutError:
        return TimeoutError(f"{name} did not answer within {timeout:.0f} s")
    except RateLimited as exc:
        return exc  # not a verdict on this source: ``collect`` makes the whole evaluation wait
    except (GitHubError, httpx.HTTPError, ValueError, OSError) as exc:
        # one unreadable source (odd response body, network error) marks only its own part
        log.warning("evidence.source_failed", extra={"source": name, "error": f"{type(exc).__name__}: {exc}"})
        return exc
    finally:
        timings[name] = round((time.monotonic() - start) * 1000, 1)


async def _ready(opts: CollectOptions | asyncio.Future[CollectOptions]) -> CollectOptions:
    """The options, once the policy they depend on has been read."""
    # shielded: a source that times out must not cancel the policy read the other sources wait for
    return opts if isinstance(opts, CollectOptions) else await asyncio.shield(opts)


async def collect(
    gh: GitHub[Any], engine: Engine, t: Target, opts: CollectOptions | None = None,
    policy: Awaitable[Any] | None = None, own_app_id: int | None = None,
) -> Collected:
    """Gather every evidence source for ``t`` concurrently; a failing source only marks its own part.

    ``policy``, when given, is the policy still being read: the sources start at once and wait for it
    only where it matters (which artifacts to read, what counts as a migration, the load-test threshold).
    ``own_app_id``: gonogo's app, whose check runs are its own reports and no evidence.
    If reading it fails, the sources that needed it are unavailable and the caller sees the error where
    it awaits the policy itself.
    """
    base_opts = opts or CollectOptions()
    timings: dict[str, float] = {}
    history_task = asyncio.ensure_future(asyncio.to_thread(read_history, engine, t))
    ready: asyncio.Future[CollectOptions]
    if policy is None:
        ready = asyncio.get_running_loop().create_future()
        ready.set_result(base_opts)
    else:
        ready = asyncio.ensure_future(_with_policy(base_opts, policy))
    to = base_opts.timeout_seconds
    try:
        checks_r, artifacts_r, code_r, dep_r, secret_r, change_r = await asyncio.gather(
            _timed("checks", collect_checks(gh, t, own_app_id), to, timings),
            _timed("artifacts", collect_artifacts(gh, t, ready), to, timings),
            _timed("code_scanning", _alert_source("code_scanning", _code_scanning(gh, t)), to, timings),
            _timed("dependabot", _alert_source("dependabot", _dependabot(gh, t)), to, timings),
            _timed("secret_scanning", _alert_source("secret_scanning", _secret_scanning(gh, t)), to, timings),
            _timed("change", _change_with_base(gh, engine, t, ready, history_task), to, timings),
        )
        limited = [r for r in (checks_r, artifacts_r, code_r, dep_r, secret_r, change_r) if isinstance(r, RateLimited)]
        if limited:
            # GitHub asked for a pause: deciding on the sources read so far would judge on partial evidence
            raise max(limited, key=lambda r: r.after)
        history = await history_task
        try:
            opts = await ready
        except (GitHubError, httpx.HTTPError, ValueError, OSError):
            opts = base_opts  # the sources that needed the policy are unavailable already
    finally:
        for pending in (history_task, ready):
            pending.cancel()

    checks = checks_r if isinstance(checks_r, ChecksPart) else _unavailable(ChecksPart, f"checks could not be read: {checks_r}", "github.checks")

    artifacts: ArtifactResults | None = None
    if isinstance(artifacts_r, BaseException):
        reason = f"workflow artifacts could not be read: {artifacts_r}"
        tests = _unavailable(TestsPart, reason, "github.artifacts")
        coverage = _unavailable(CoveragePart, reason, "github.artifacts")
        performance = _unavailable(PerformancePart, reason, "github.artifacts")
    else:
        artifacts, note, _prov = artifacts_r
        if artifacts is None:
            tests = _not_configured(TestsPart, f"no test reports: {note}", "github.artifacts")
            coverage = _not_configured(CoveragePart, f"no coverage reports: {note}", "github.artifacts")
            performance = _not_configured(PerformancePart, f"no load-test results: {note}", "github.artifacts")
        else:
            tests, coverage, performance = artifacts.tests, artifacts.coverage, artifacts.performance

    alert_results: list[tuple[str, Availability, list[SecurityFinding], str]] = []
    for name, r in (("code_scanning", code_r), ("dependabot", dep_r), ("secret_scanning", secret_r)):
        if isinstance(r, BaseException):
            alert_results.append((name, Availability.UNAVAILABLE, [], f"{name.replace('_', ' ')}: {r}"))
        else:
            alert_results.append(r)
    artifacts_error = str(artifacts_r) if isinstance(artifacts_r, BaseException) else None
    security = build_security(alert_results, artifacts, opts.limits, artifacts_error)

    change = change_r if isinstance(change_r, ChangePart) else _unavailable(ChangePart, f"change could not be read: {change_r}", "github.compare")

    baseline = history.last_success_baseline or {}
    if coverage.ok and baseline.get("coverage") is not None:
        coverage = coverage.model_copy(update={"baseline_line_rate": float(baseline["coverage"])})
    if performance.ok and baseline.get("perf") and artifacts is not None and artifacts.perf_samples is not None:
        try:
            compared = compare_performance(
                artifacts.perf_samples, PerfBaseline.model_validate(baseline["perf"]),
                threshold_pct=opts.perf_threshold(t.environment), baseline_sha=history.last_success_sha,
            )  # fmt: skip
        except ValueError as exc:
            log.warning("evidence.perf_baseline_unusable", extra={"error": str(exc)})
        else:
            # the comparison rebuilds the part from the samples: keep the artifact's reason and provenance
            base = (history.last_success_sha or "?")[:7]
            performance = compared.model_copy(update={
                "reason": f"{performance.reason}; compared with the last successful deployment ({base})",
                "provenance": [*performance.provenance,
                               Provenance(source="gonogo.history", detail=f"load-test baseline of {base}")],
            })  # fmt: skip

    evidence = Evidence(
        deployment_id=t.deployment_key, repository=t.repository, environment=t.environment, sha=t.sha, ref=t.ref,
        created_at=t.created_at, checks=checks, tests=tests, coverage=coverage, security=security,
        performance=performance, change=change, operational=history.operational,
        not_understood=artifacts.not_understood if artifacts is not None else [],
        not_understood_total=artifacts.not_understood_total if artifacts is not None else 0,
    )  # fmt: skip
    new_baseline: dict[str, Any] = {}
    if coverage.ok and coverage.line_rate is not None:
        new_baseline["coverage"] = coverage.line_rate
    if artifacts is not None and artifacts.perf_samples is not None:
        new_baseline["perf"] = artifacts.perf_samples.model_dump(mode="json")
    return Collected(evidence=evidence, baseline=new_baseline, timings_ms=timings)


async def _with_policy(opts: CollectOptions, policy: Awaitable[Any]) -> CollectOptions:
    return opts.for_policy(await policy)


def policy_options(policy: Any) -> CollectOptions:
    """Collector options from the effective policy (artifact and migration globs)."""
    return CollectOptions().for_policy(policy)

