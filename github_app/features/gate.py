"""The deployment gate: answer ``deployment_protection_rule`` with go, no-go or escalate, exactly once."""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import functools
import logging
import os
import re
import socket
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from githubkit import GitHub
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from github_app import audit, deployments, learning, waivers
from github_app.db import insert_for, read_only
from github_app.db.models import DecisionRecord, Deployment, EvidenceRecord, HistoryRow
from github_app.deployments import Answer, DeploymentBusy, LeaseLost
from github_app.evidence import Target, collect
from github_app.features.announcements import announce_escalation, notify_state_change
from github_app.github import (
    Forbidden,
    GitHubAuthError,
    GitHubError,
    InstallationNotFound,
    NotFound,
    TooLarge,
    call,
    parse_time,
    parsed,
)
from github_app.publish import (
    STATUS_REPORT_LIMIT,
    answer,
    complete_check_run,
    create_check_run,
    find_check_run,
    status_report,
    update_check_run_text,
)
from github_app.routing import Context, Event, PermanentError, RetryLater, Router
from rules import report
from rules.pipeline import evaluate
from rules.policy import EnvironmentPolicy, Policy, PolicyError, PolicyIssue, effective, load_policy_text
from rules.types import Decision, Waiver
from scorer.assessment import RiskEstimate
from scorer.evidence import Evidence

log = logging.getLogger(__name__)

router = Router()

POLICY_PATH = ".github/gonogo.yml"
CALLBACK_RUN_ID = re.compile(r"/actions/runs/(\d+)/deployment_protection_rule")
WORKER_NAME = f"{socket.gethostname()}:{os.getpid()}"

__all__ = ["DeploymentBusy", "GateRequest", "load_policy", "parse_request", "request_from_row", "run_gate"]


@dataclass
class GateRequest:
    target: Target
    github_deployment_id: int | None
    pull_requests: list[int]
    callback_url: str
    creator_id: int | None = None  # the deployer's account id (``target.creator`` is its login)


def account_id(user: Any) -> int | None:
    """The numeric id of a user object in a payload, if it has one."""
    found = user.get("id") if isinstance(user, dict) else None
    return found if isinstance(found, int) and not isinstance(found, bool) else None


def parse_request(payload: dict[str, Any], installation_id: int | None) -> GateRequest:
    """Read what the protection-rule webhook says; malformed payloads are permanent errors."""
    try:
        repo = payload["repository"]
        full_name = repo["full_name"]
        environment = payload["environment"]
        callback = payload["deployment_callback_url"]
    except (KeyError, TypeError) as exc:
        raise PermanentError(f"deployment_protection_rule payload lacks {exc}: cannot identify the deployment") from None
    match = CALLBACK_RUN_ID.search(callback or "")
    if not match:
        raise PermanentError(f"deployment_callback_url {callback!r} does not name a workflow run")
    if installation_id is None:
        raise PermanentError("deployment_protection_rule payload has no installation id: is this a GitHub App webhook?")
    deployment = payload.get("deployment") or {}
    sha = payload.get("sha") or deployment.get("sha")
    if not sha:
        raise PermanentError("deployment_protection_rule payload has no sha")
    run_id = int(match.group(1))
    dep_id = deployment.get("id") if isinstance(deployment.get("id"), int) else None
    # who triggered the deployment: its creator, else whoever sent the request
    deployer = deployment.get("creator") if (deployment.get("creator") or {}).get("login") else payload.get("sender")
    creator = (deployer or {}).get("login")
    # GitHub creates a new deployment for every run attempt, so its id tells attempts apart
    key = f"{full_name}#{run_id}/{environment}/{dep_id or 'run'}"
    created = deployment.get("created_at")
    created_at = parse_time(created if isinstance(created, str) else None) or datetime.now(UTC)
    prs = [int(p["number"]) for p in payload.get("pull_requests") or [] if isinstance(p, dict) and "number" in p]
    target = Target(
        repository=full_name, environment=environment, sha=sha, ref=payload.get("ref") or deployment.get("ref"),
        run_id=run_id, installation_id=installation_id, created_at=created_at.astimezone(UTC), deployment_key=key,
        default_branch=repo.get("default_branch") or "main", creator=creator,
        creator_id=account_id(deployer) if creator else None,
    )  # fmt: skip
    return GateRequest(target, dep_id, prs, callback, target.creator_id)


# --- policy ---------------------------------------------------------------------------------


# (owner, repo, path, ref) -> (etag, text, blob sha) of files read, to ask GitHub "changed since?" next time
_FILE_CACHE: collections.OrderedDict[tuple[str, str, str, str | None], tuple[str, str, str]] = collections.OrderedDict()
FILE_CACHE_SIZE = 512


class UnreadablePolicyFile(Exception):
    """A policy file GitHub holds but does not send as text (over 1 MB, or not a file): never "no policy"."""


async def read_file(gh: GitHub[Any], owner: str, repo: str, path: str, ref: str | None) -> tuple[str, str] | None:
    """A file's text and blob sha at ``ref`` (None: the default branch as GitHub knows it now), or None when it
    does not exist.

    A file read before is asked for with its ETag: GitHub answers 304 when it did not change, which
    costs no rate limit, and the text read then is used again. A file the contents API will not send as text
    (over 1 MB, a directory, a submodule) raises UnreadablePolicyFile: it exists, so it is not absent.
    """
    key = (owner.lower(), repo.lower(), path, ref)
    cached = _FILE_CACHE.get(key)
    try:
        kwargs: dict[str, Any] = {"ref": ref} if ref else {}
        if cached is not None:
            kwargs["headers"] = {"If-None-Match": cached[0]}
        resp = await call(gh.rest.repos.async_get_content(owner, repo, path, **kwargs))
    except NotFound:
        _FILE_CACHE.pop(key, None)
        return None
    except TooLarge:
        _FILE_CACHE.pop(key, None)
        raise UnreadablePolicyFile(
            "the file is over 1 MB, which GitHub's contents API does not send; keep the policy under 1 MB "
            "(move long lists into fewer rules or environments)"
        ) from None
    if resp.status_code == 304 and cached is not None:
        _FILE_CACHE.move_to_end(key)
        return cached[1], cached[2]
    data = parsed(resp)
    content = getattr(data, "content", None)
    if getattr(data, "type", None) != "file" or not isinstance(content, str) or data.encoding != "base64":
        raise UnreadablePolicyFile(f"GitHub holds it as a {getattr(data, 'type', 'directory')}, not a file "
                                   "it sends as text; it must be a YAML file")
    text, sha = base64.b64decode(content).decode("utf-8", errors="replace"), str(getattr(data, "sha", ""))
    etag = resp.headers.get("etag")
    if etag:
        _FILE_CACHE[key] = (etag, text, sha)
        _FILE_CACHE.move_to_end(key)
        while len(_FILE_CACHE) > FILE_CACHE_SIZE:
            _FILE_CACHE.popitem(last=False)
    return text, sha


async def load_policy(gh: GitHub[Any], t: Target) -> tuple[Policy | PolicyError, str | None]:
    """The policy on the default branch (never the deployed ref), over organisation defaults and the pack.

    The file is asked for without a ref, so GitHub reads its default branch as it is now: the branch named in
    the webhook may have been renamed since (a retried job), and a 404 for that name would read as "no policy".
    """
    source, org_source = f"{t.repository}:{POLICY_PATH}", f"{t.owner}/.github:{POLICY_PATH}"
    repo_read, org_read = await asyncio.gather(
        read_file(gh, t.owner, t.name, POLICY_PATH, None), _org_defaults(gh, t.owner), return_exceptions=True,
    )  # fmt: skip
    unreadable = [PolicyIssue(where, None, None, "", str(r)) for where, r in ((source, repo_read),
                  (org_source, org_read)) if isinstance(r, UnreadablePolicyFile)]  # fmt: skip
    if unreadable:
        return PolicyError(unreadable), None
    for r in (repo_read, org_read):
        if isinstance(r, BaseException):
            raise r
    repo_file = repo_read if isinstance(repo_read, tuple) else None
    org_file = org_read if isinstance(org_read, tuple) else None
    text, sha = repo_file if repo_file else (None, None)
    try:
        policy = parsed_policy(text, source, org_file[0] if org_file else None, org_source)
    except PolicyError as exc:
        return exc, sha
    return policy, sha


@functools.lru_cache(maxsize=256)
def parsed_policy(text: str | None, source: str, org_text: str | None, org_source: str) -> Policy:
    """``load_policy_text``, remembered: the same files give the same policy, parsed once per process.

    Callers share the returned Policy and must not change it. A PolicyError is raised anew each time.
    """
    return load_policy_text(text, source, org_text=org_text, org_source=org_source)


async def _org_defaults(gh: GitHub[Any], owner: str) -> tuple[str, str] | None:
    """The organisation's defaults file, or None when there is none this installation may read.

    Any other failure (a rate limit, a 5xx, a cut-off body) is a failed read, not an absent file, and goes
    up for the job to be retried: a policy read without the organisation's blockers or freezes could approve.
    """
    try:
        return await read_file(gh, owner, ".github", POLICY_PATH, None)
    except (NotFound, Forbidden):
        return None


# --- the handler ----------------------------------------------------------------------------


@router.on("deployment_protection_rule", "requested")
async def on_protection_rule(ctx: Context, ev: Event) -> None:
    """Evaluate the deployment and answer it."""
    req = parse_request(ev.payload, ev.installation_id)
    await run_gate(ctx, req, ev.delivery_id)


def new_owner() -> str:
    """A lease owner name unique to one attempt at driving a deployment."""
    return f"{WORKER_NAME}:{uuid.uuid4().hex[:8]}"


async def run_gate(ctx: Context, req: GateRequest, delivery_id: str, *, reevaluate: bool = False) -> None:
    """Drive the deployment one step on: evaluate it, publish its stored decision or send its stored answer.

    Which of these happens follows from the deployment's state (``deployments.begin``); a deployment
    another worker holds raises RetryLater, so the delivery waits for the lease without failing.
    """
    t = req.target
    engine = ctx.engine
    owner = new_owner()
    lease = ctx.settings.lease_seconds
    if reevaluate:
        # GitHub applies an answer to the attempt of the run that waits now: deciding again for an attempt that
        # ended would answer a re-run gonogo has not evaluated (or nothing)
        found = await asyncio.to_thread(deployments.load, engine, t.deployment_key)
        if found is not None and found.state == deployments.ESCALATED:
            gh = ctx.github_clients().installation(t.installation_id)
            gone = await attempt_gone(gh, found)
            if gone is not None:
                if await asyncio.to_thread(deployments.abandon, engine, t.deployment_key, gone):
                    await close_abandoned_check_run(gh, found)
                return
    try:
        begun = await asyncio.to_thread(
            deployments.begin, engine, t, github_deployment_id=req.github_deployment_id,
            pull_requests=req.pull_requests, callback_url=req.callback_url, owner=owner, lease_seconds=lease,
            reevaluate=reevaluate, creator_id=req.creator_id,
        )  # fmt: skip
    except DeploymentBusy as busy:
        raise RetryLater(str(busy), busy.retry_after) from None
    row = begun.row
    if begun.next == "nothing":
        log.info("gate.duplicate", extra={"deployment": t.deployment_key, "delivery_id": delivery_id,
                                          "state": row.state})  # fmt: skip
        if not reevaluate and row.state == deployments.ANSWERED and row.check_run_id and row.decision_id:
            await _complete_answered_check_run(ctx, t, row)
        if reevaluate and row.answer and row.check_run_id:
            gh = ctx.github_clients().installation(t.installation_id)
            await update_check_run_text(
                gh, t, row.check_run_id, f"Already {row.answer}",
                f"This deployment was already **{row.answer}**; GitHub accepts one answer per deployment. "
                "Re-run the workflow to get a fresh evaluation.",
            )  # fmt: skip
        return
    keeper = asyncio.ensure_future(_keep_lease(engine, t.deployment_key, owner, lease))
    not_before = 0.0
    try:
        gh = ctx.github_clients().installation(t.installation_id)
        if begun.next == "send_answer":
            await send_answer(ctx, gh, t, row, owner, resumed=True)
        elif begun.next == "publish_decision":
            decision = await asyncio.to_thread(stored_decision, engine, row)
            await publish_escalation(ctx, gh, t, row, decision, owner)
        else:
            await _gate(ctx, gh, req, row, owner, resumed=begun.resumed)
    except (GitHubAuthError, InstallationNotFound) as exc:
        raise PermanentError(str(exc)) from exc
    except LeaseLost as lost:
        # someone else moved the deployment on (an override, an expired lease): the next pass sees where it is
        raise RetryLater(str(lost), 0.5) from None
    except RetryLater as wait:  # a rate limit: nobody, the sweeper included, asks GitHub again before it is over
        not_before = wait.after
        raise
    finally:
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper
        await asyncio.shield(asyncio.to_thread(deployments.release, engine, t.deployment_key, owner, not_before))


async def _complete_answered_check_run(ctx: Context, t: Target, row: Deployment) -> None:
    """Complete the check run of a deployment gonogo answered itself, with its stored decision, again.

    The answer goes to GitHub before the check run is completed: a worker that died in between, or GitHub
    failing the completion, leaves it "in progress" while the deployment is answered, and the delivery's next
    pass finds nothing else to do. Completing it again is harmless. A reviewer's answer shows on the check
    run in its own words (escalation), so only an answer that is gonogo's decision is completed here.
    """
    decision = await asyncio.to_thread(stored_decision, ctx.engine, row)
    if {"approve": "approved", "reject": "rejected"}.get(decision.action) != row.answer or row.human_reviewed:
        return
    assert row.check_run_id is not None
    await complete_check_run(ctx.github_clients().installation(t.installation_id), t, row.check_run_id, decision)


async def _keep_lease(engine: Engine, key: str, owner: str, lease: float) -> None:
    """Renew the deployment's lease while it is worked on, so a slow evaluation is not taken over."""
    while True:
        await asyncio.sleep(lease / 3)
        if not await asyncio.to_thread(deployments.renew, engine, key, owner, lease):
            # the deployment left the worker's hands (escalated, answered) or the lease was taken over
            log.info("gate.lease_ended", extra={"deployment": key})
            return


def stored_decision(engine: Engine, row: Deployment) -> Decision:
    """The decision stored for the deployment (to publish it again without deciding again)."""
    with Session(engine) as session:
        data = session.scalar(select(DecisionRecord.data).where(DecisionRecord.id == row.decision_id))
    if data is None:
        raise PermanentError(f"deployment {row.key} is decided but its decision {row.decision_id} is missing")
    return Decision.model_validate(data)


async def send_answer(ctx: Context, gh: GitHub[Any], t: Target, row: Deployment, owner: str, *,
                      by: str = "gonogo", resumed: bool = False) -> Deployment:  # fmt: skip
    """Send the deployment's stored answer to GitHub and record that it went (with GitHub's response).

    ``resumed``: the answer was stored by an earlier attempt; gonogo's own answer then also completes
    the check run, which that attempt left showing "evaluating".
    """
    assert row.answer in ("approved", "rejected"), row.answer
    took = await answer(gh, t, row.answer, row.answer_comment or "")  # type: ignore[arg-type]
    done = await asyncio.to_thread(deployments.mark_answered, ctx.engine, t.deployment_key, owner, row.answer,
                                   200 if took else 422, by)  # fmt: skip
    if done is None:
        raise LeaseLost(f"deployment {t.deployment_key} changed while its answer was sent")
    log.info("gate.answered", extra={"deployment": t.deployment_key, "answer": row.answer, "by": by,
                                     "github_took_it": took})  # fmt: skip
    if resumed and row.state == deployments.DECIDED and row.check_run_id and row.decision_id:
        decision = await asyncio.to_thread(stored_decision, ctx.engine, row)
        await complete_check_run(gh, t, row.check_run_id, decision)
    return done


async def publish_escalation(
    ctx: Context, gh: GitHub[Any], t: Target, row: Deployment, decision: Decision, owner: str, comment: str = ""
) -> None:
    """Publish a stored escalation: status report, PR comment, check run with buttons, then state escalated.

    The state changes last: a worker that dies half-way leaves the deployment ``decided``, and whoever
    takes it next publishes again (the PR comment is recorded and never posted twice; completing the
    check run again is harmless), so an escalation never waits without its buttons.
    """
    engine = ctx.engine
    comment = comment or report.protection_comment(decision, "")
    if row.status_reports < STATUS_REPORT_LIMIT:
        await status_report(gh, t, comment)
        await asyncio.to_thread(deployments.note_status_report, engine, t.deployment_key, owner,
                                row.status_reports + 1, 200, comment)  # fmt: skip
    # reviewers hear about it before the check run shows the buttons
    await announce_escalation(engine, gh, row, decision)
    check_run_id = row.check_run_id
    if check_run_id is None:
        check_run_id, _ = await create_check_run(gh, t, external_id=t.deployment_key)
        await asyncio.to_thread(deployments.note_check_run, engine, t.deployment_key, owner, check_run_id)
    await complete_check_run(gh, t, check_run_id, decision)
    await asyncio.to_thread(deployments.escalate, engine, t.deployment_key, owner)
    log.info("decision.published", extra={"deployment": t.deployment_key, "action": decision.action})


async def risk_for(ctx: Context, evidence: Evidence) -> RiskEstimate | None:
    """The active risk model's estimate, or None to use the transparent rule-based one."""
    if ctx.risk is None:
        return None
    try:
        return await asyncio.to_thread(ctx.risk.estimate, evidence)
    except Exception:  # a broken model must never block a decision: fall back to the rule-based estimate
        log.exception("risk.model_failed", extra={"deployment": evidence.deployment_id})
        return None


async def waivers_for(engine: Engine, target: Target) -> list[Waiver]:
    """Active waivers for the target's repository, environment and sha."""

    def read(now: datetime) -> list[Waiver]:
        with read_only(engine) as conn:
            return waivers.active_waivers(conn, target.repository, target.environment, target.sha, now)

    return await asyncio.to_thread(read, datetime.now(UTC))


def _waivers_that_count(
    found: list[Waiver], req: GateRequest, env_policy: EnvironmentPolicy | None
) -> tuple[list[Waiver], list[Waiver]]:
    """Split the active waivers into those that count for this deployment and those its own deployer gave.

    Under four eyes the deployer may not waive their deployment's rules. Refusing the command is not
    enough: a waiver may name any commit (``for <sha>``) or every commit (``--env-wide``), and be given
    on a colleague's deployment, so it is checked against each deployment it would pass. An invalid
    policy falls back to the default pack, where four eyes is on.
    """
    four_eyes = env_policy.reviewers.four_eyes if env_policy is not None else True
    if not four_eyes:
        return found, []
    refused = [w for w in found if w.by(req.target.creator, req.creator_id)]
    return [w for w in found if w not in refused], refused


async def _gate(ctx: Context, gh: GitHub[Any], req: GateRequest, row: Deployment, owner: str, *,
                resumed: bool = False) -> None:
    t = req.target
    engine = ctx.engine

    # Only the evidence and the policy decide the answer. The first status report and the check run go out
    # while they are read; the check run's link is in the answer's comment, so it is awaited before that.
    async def first_report() -> None:
        if row.status_reports == 0:
            text = f"gonogo is evaluating the deployment of {t.sha[:7]} to {t.environment} ..."
            await status_report(gh, t, text)
            await asyncio.to_thread(deployments.note_status_report, engine, t.deployment_key, owner, 1, 200, text)
            row.status_reports = 1

    async def ensure_check_run() -> tuple[int, str]:
        if row.check_run_id is not None:
            return row.check_run_id, f"{t.repository} check run {row.check_run_id}"
        # an earlier attempt may have created it without learning its id (a 504 GitHub answered late, a crash)
        created = (await find_check_run(gh, t, t.deployment_key) if resumed else None) or \
            await create_check_run(gh, t, external_id=t.deployment_key)  # fmt: skip
        await asyncio.to_thread(deployments.note_check_run, engine, t.deployment_key, owner, created[0])
        row.check_run_id = created[0]
        return created

    async def policy_in_force() -> Policy:
        policy, _ = await asyncio.shield(policy_read)
        return policy if isinstance(policy, Policy) else parsed_policy(None, POLICY_PATH, None, "org .github/gonogo.yml")

    report_sent = asyncio.ensure_future(first_report())
    check_run = asyncio.ensure_future(ensure_check_run())
    policy_read = asyncio.ensure_future(load_policy(gh, t))
    waivers_read = asyncio.ensure_future(waivers_for(engine, t))
    side_tasks = (report_sent, check_run, policy_read, waivers_read)
    try:
        own_app_id = await ctx.github_clients().own_app_id()  # its own reports are no evidence
        collected = await collect(gh, engine, t, policy=policy_in_force(), own_app_id=own_app_id)
        policy, policy_sha = await policy_read
        await report_sent
        check_run_id, check_url = await check_run
        found_waivers = await waivers_read
    finally:
        for task in side_tasks:
            task.cancel()
        # a failure of one leaves the others cancelled and settled before the error goes up
        await asyncio.gather(*side_tasks, return_exceptions=True)
    risk = await risk_for(ctx, collected.evidence)
    now = datetime.now(UTC)
    env_policy = effective(policy, t.environment) if isinstance(policy, Policy) else None
    track = None
    if env_policy is not None:  # what this repository's own outcomes say of its learnable rules
        track = await asyncio.to_thread(learning.track_record, engine, t.repository, t.environment,
                                        t.deployment_key, now, env_policy.learning)  # fmt: skip
    found_waivers, refused_waivers = _waivers_that_count(found_waivers, req, env_policy)
    decision = evaluate(collected.evidence, policy, t.environment, now=now, risk=risk, waivers=found_waivers,
                        track=track)  # fmt: skip
    if refused_waivers:
        decision = decision.model_copy(update={"reasons": [*decision.reasons, *(
            f"the waiver of {w.rule_id} by @{w.author} does not count: under four eyes the person who triggered "
            f"the deployment (@{t.creator}) cannot waive its rules; another reviewer may" for w in refused_waivers
        )]})  # fmt: skip
    if ctx.settings.dry_run and decision.mode != "dry-run":
        decision = decision.model_copy(update={"mode": "dry-run", "action": "approve"})

    state_answer: Answer | None = {"approve": "approved", "reject": "rejected"}.get(decision.action)  # type: ignore[assignment]
    comment = report.protection_comment(decision, check_url or "")
    stored, queued = await asyncio.to_thread(
        _store_decision, engine, t, owner, decision, collected.evidence.model_dump(mode="json"), collected.baseline,
        policy_sha, state_answer, comment, env_policy,
    )  # fmt: skip
    if queued and ctx.outbox is not None:
        ctx.outbox.wake()
    log.info(
        "decision.made",
        extra={"deployment": t.deployment_key, "verdict": decision.verdict, "action": decision.action,
               "score": decision.readiness_score, "risk": decision.risk.probability,
               "collect_ms": max(collected.timings_ms.values(), default=0)},
    )  # fmt: skip
    stored.status_reports = row.status_reports
    if state_answer:
        await send_answer(ctx, gh, t, stored, owner)
        await complete_check_run(gh, t, check_run_id, decision)
        log.info("decision.published", extra={"deployment": t.deployment_key, "action": decision.action})
    else:
        await publish_escalation(ctx, gh, t, stored, decision, owner, comment)


def _store_decision(
    engine: Engine, t: Target, owner: str, decision: Decision, evidence: dict[str, Any], baseline: dict[str, Any],
    policy_sha: str | None, state_answer: Answer | None, comment: str, env_policy: EnvironmentPolicy | None = None,
) -> tuple[Deployment, bool]:
    """Persist evidence, decision and the intended answer in one transaction, before telling GitHub.

    Returns the deployment row as stored, and whether notifications were queued in the outbox. Raises
    LeaseLost (and stores nothing) when the deployment is no longer this worker's to decide.
    """
    now = datetime.now(UTC)
    with Session(engine, expire_on_commit=False) as session, session.begin():
        row = session.scalar(select(Deployment).where(Deployment.key == t.deployment_key))
        assert row is not None
        session.add(EvidenceRecord(deployment_id=row.id, created_at=now, data=evidence, baseline=baseline or None))
        rec = DecisionRecord(
            deployment_id=row.id, created_at=now, verdict=decision.verdict, action=decision.action,
            readiness_score=decision.readiness_score, risk=decision.risk.probability, confidence=decision.confidence,
            policy_sha=policy_sha, model_version=decision.risk.model_version,
            data=decision.model_dump(mode="json"),
        )  # fmt: skip
        session.add(rec)
        session.flush()
        change = decision.evidence.change
        first_commit = change.first_commit_at if change.ok else None
        if not deployments.record_decision(session, t.deployment_key, owner, rec, state_answer, comment, first_commit):
            session.rollback()
            raise LeaseLost(f"deployment {t.deployment_key} is no longer this worker's to decide")
        session.refresh(row)
        queued = _record_history(session, row, decision, policy_sha, env_policy)
    return row, queued


def _record_history(
    session: Session, row: Deployment, decision: Decision, policy_sha: str | None, env_policy: EnvironmentPolicy | None
) -> bool:
    """Add the deployment to the history table, audit the decision and queue its notifications.

    Runs inside the transaction that stores the decision. Returns whether notifications were queued.
    """
    features = decision.evidence.to_history_row()
    for key in ("deployment_id", "repository", "environment", "sha", "created_at", "outcome"):
        features.pop(key, None)
    # not model features: what rules.learning counts per rule (with the answer and the outcome, later)
    features["major_findings"] = decision.major_findings
    features["verdict"] = decision.verdict
    features["action"] = decision.action
    # one statement whether or not an earlier decision (a re-evaluation) already added the row
    upsert = insert_for(session.get_bind())(HistoryRow).values(
        deployment_id=row.key, repository=row.repository, environment=row.environment, sha=row.sha,
        created_at=row.created_at, features=features,
    )  # fmt: skip
    session.execute(upsert.on_conflict_do_update(
        index_elements=[HistoryRow.deployment_id], set_={"features": upsert.excluded.features},
    ))  # fmt: skip
    audit.append_decision(
        session, decision, deployment_key=row.key, policy_sha=policy_sha,
        effective_policy=env_policy.model_dump(mode="json") if env_policy is not None else None,
    )  # fmt: skip
    if env_policy is None:
        return False
    event = {"approve": "approved", "reject": "rejected"}.get(decision.action, "escalated")
    channels = list(env_policy.notifications)
    notify_state_change(session, row, event, channels, decision=decision)
    return bool(channels)


async def attempt_gone(gh: GitHub[Any], row: Deployment) -> str | None:
    """Why the run attempt ``row`` belongs to no longer waits for an answer, asked of GitHub; None while it may.

    A re-run starts a new attempt of the same run (``run_started_at`` resets) with a deployment of its own;
    gonogo may not have heard of it, nor of the end of the attempt before it, when a reviewer acts.
    """
    owner, name = row.repository.split("/", 1)
    try:
        run = (await call(gh.rest.actions.async_get_workflow_run(owner, name, row.run_id))).parsed_data
    except NotFound:
        return f"workflow run {row.run_id} no longer exists"
    started = run.run_started_at if isinstance(run.run_started_at, datetime) else None
    requested = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
    if started is not None and started.replace(microsecond=0) > requested.replace(microsecond=0):
        return f"superseded by a later attempt of workflow run {row.run_id} (attempt {run.run_attempt})"
    if str(run.status) == "completed":
        return f"workflow run {row.run_id} completed ({run.conclusion or 'no conclusion'})"
    return None


async def close_abandoned_check_run(gh: GitHub[Any], row: Deployment) -> None:
    """Take the buttons off an abandoned deployment's check run and say why it no longer waits (best effort)."""
    if not row.check_run_id:
        return
    try:
        await update_check_run_text(
            gh, request_from_row(row).target, row.check_run_id, "No longer waiting for a decision",
            f"The deployment to **{row.environment}** no longer waits: its workflow run ended, or a re-run took "
            "its place. Nothing was decided here; a re-run has a check run of its own.",
            conclusion="neutral", clear_actions=True,
        )  # fmt: skip
    except GitHubError as exc:
        log.warning("escalation.close_check_run_failed", extra={"deployment": row.key, "error": str(exc)})


@router.on("check_run", "rerequested")
async def on_rerequested(ctx: Context, ev: Event) -> None:
    """A re-run of gonogo's own check run re-evaluates its deployment."""
    run = ev.payload.get("check_run") or {}
    if run.get("name") != "gonogo":
        return
    row = await asyncio.to_thread(deployment_for_check_run, ctx.engine, run.get("id"))
    if row is None:
        log.info("gate.rerequested_unknown", extra={"check_run": run.get("id")})
        return
    req = request_from_row(row)
    await run_gate(ctx, req, ev.delivery_id, reevaluate=True)


deployment_for_check_run = deployments.for_check_run


def load(engine: Engine, key: str) -> Deployment:
    """The deployment row as stored now (it must exist)."""
    row = deployments.load(engine, key)
    assert row is not None
    return row


def request_from_row(row: Deployment) -> GateRequest:
    """Rebuild the gate's request from the stored deployment (for sweeps, buttons and comments)."""
    t = Target(
        repository=row.repository, environment=row.environment, sha=row.sha, ref=row.ref, run_id=row.run_id,
        installation_id=int(row.installation_id or 0), created_at=row.created_at, deployment_key=row.key,
        default_branch=row.default_branch or "main", creator=row.creator, creator_id=row.creator_id,
    )  # fmt: skip
    return GateRequest(t, row.github_deployment_id, list(row.pull_requests or []), row.callback_url or "",
                       row.creator_id)  # fmt: skip


# --- the sweeper for deployments nobody drives any more -----------------------------------------


async def recover_stuck(ctx: Context, now: datetime | None = None) -> int:
    """Drive every deployment left in evaluating / decided / answering past its lease to an answer.

    A worker that died mid-way leaves its deployment leased until the lease runs out; its delivery is
    normally retried, but one that went dead (or was never stored) would leave the deployment waiting
    for GitHub's 30 days. Returns how many deployments this pass moved on.
    """
    now = now or datetime.now(UTC)
    grace = timedelta(seconds=ctx.settings.lease_seconds)
    moved = 0
    for row in await asyncio.to_thread(deployments.stuck, ctx.engine, now, grace):
        created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
        if now - created >= deployments.GITHUB_WAIT_LIMIT:  # GitHub has failed its run: nothing to evaluate or send
            if await asyncio.to_thread(deployments.abandon_unanswerable, ctx.engine, row.key, now):
                log.info("gate.abandoned", extra={"deployment": row.key, "state": row.state})
            continue
        try:
            await run_gate(ctx, request_from_row(row), "sweeper")
            moved += 1
        except RetryLater:
            continue  # someone else took it meanwhile
        except Exception as exc:  # noqa: BLE001 - one failure must not stop the others; the next pass retries
            log.warning("gate.recover_failed", extra={"deployment": row.key, "error": f"{type(exc).__name__}: {exc}"})
    if moved:
        log.info("gate.recovered", extra={"deployments": moved})
    return moved
