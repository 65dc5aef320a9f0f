"""The deployment gate: answer ``deployment_protection_rule`` with go, no-go or escalate, exactly once."""

from __future__ import annotations

import asyncio
import base64
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
from sqlalchemy import Engine, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from github_app import hooks
from github_app.db.models import DecisionRecord, Deployment, EvidenceRecord
from github_app.evidence import Target, collect
from github_app.github import (
    GitHubAuthError,
    GitHubClients,
    GitHubError,
    InstallationNotFound,
    NotFound,
    RateLimited,
    call,
    parse_time,
    parsed,
)
from github_app.publish import (
    STATUS_REPORT_LIMIT,
    answer,
    complete_check_run,
    create_check_run,
    status_report,
    update_check_run_text,
)
from github_app.routing import Context, Event, PermanentError, Router
from rules import report
from rules.pipeline import evaluate
from rules.policy import Policy, PolicyError, effective, load_policy_text
from rules.types import Decision

log = logging.getLogger(__name__)

router = Router()

POLICY_PATH = ".github/gonogo.yml"
CALLBACK_RUN_ID = re.compile(r"/actions/runs/(\d+)/deployment_protection_rule")
LEASE = timedelta(minutes=5)
WORKER_NAME = f"{socket.gethostname()}:{os.getpid()}"


class DeploymentBusy(Exception):
    """Another worker is evaluating this deployment right now; the delivery is retried later."""


@dataclass
class GateRequest:
    target: Target
    github_deployment_id: int | None
    pull_requests: list[int]
    callback_url: str


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
    creator = (deployment.get("creator") or {}).get("login") or (payload.get("sender") or {}).get("login")
    # GitHub creates a new deployment for every run attempt, so its id tells attempts apart
    key = f"{full_name}#{run_id}/{environment}/{dep_id or 'run'}"
    created = deployment.get("created_at")
    created_at = parse_time(created if isinstance(created, str) else None) or datetime.now(UTC)
    prs = [int(p["number"]) for p in payload.get("pull_requests") or [] if isinstance(p, dict) and "number" in p]
    target = Target(
        repository=full_name, environment=environment, sha=sha, ref=payload.get("ref") or deployment.get("ref"),
        run_id=run_id, installation_id=installation_id, created_at=created_at.astimezone(UTC), deployment_key=key,
        default_branch=repo.get("default_branch") or "main", creator=creator,
    )  # fmt: skip
    return GateRequest(target, dep_id, prs, callback)


# --- the deployment row: one per run attempt, leased while evaluated ---------------------------


def start_evaluation(engine: Engine, req: GateRequest, owner: str, reevaluate: bool) -> tuple[Deployment, bool]:
    """Record the deployment (first delivery) and take its lease, in one transaction.

    Returns the row, read after the lease was taken, and whether to evaluate it: False for a deployment
    already answered (a redelivery), unless ``reevaluate``. Raises DeploymentBusy while another worker
    holds the lease.
    """
    t = req.target
    now = datetime.now(UTC)
    with Session(engine, expire_on_commit=False) as session, session.begin():
        row = session.scalar(select(Deployment).where(Deployment.key == t.deployment_key))
        if row is None:
            # the first delivery inserts the row with its lease already taken: nobody else can hold it yet
            row = Deployment(
                key=t.deployment_key, repository=t.repository, environment=t.environment, sha=t.sha, ref=t.ref,
                run_id=t.run_id, github_deployment_id=req.github_deployment_id, installation_id=t.installation_id,
                creator=t.creator, pull_requests=req.pull_requests, callback_url=req.callback_url,
                created_at=t.created_at, state="evaluating", status_reports=0,
                lease_owner=owner, lease_until=now + LEASE,
            )  # fmt: skip
            session.add(row)
            try:
                session.flush()
            except IntegrityError:  # a concurrent delivery inserted it first: let it finish, retry later
                session.rollback()
                raise DeploymentBusy(t.deployment_key) from None
            return row, True
        if row.answered_at is not None and not reevaluate:
            return row, False
        taken = session.connection().execute(
            update(Deployment)
            .where(Deployment.key == t.deployment_key,
                   or_(Deployment.lease_until.is_(None), Deployment.lease_until < now, Deployment.lease_owner == owner))
            .values(lease_owner=owner, lease_until=now + LEASE)
        ).rowcount  # fmt: skip
        if taken != 1:
            raise DeploymentBusy(f"deployment {t.deployment_key} is being evaluated by another worker; will retry")
        # what the previous lease holder wrote, as of now that the lease is ours
        session.refresh(row)
        return row, True


def release(engine: Engine, key: str, owner: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(Deployment).where(Deployment.key == key, Deployment.lease_owner == owner)
            .values(lease_owner=None, lease_until=None)
        )  # fmt: skip


def set_fields(engine: Engine, key: str, **values: Any) -> None:
    with engine.begin() as conn:
        conn.execute(update(Deployment).where(Deployment.key == key).values(**values))


def load(engine: Engine, key: str) -> Deployment:
    with Session(engine, expire_on_commit=False) as session:
        row = session.scalar(select(Deployment).where(Deployment.key == key))
        assert row is not None
        return row


# --- policy ---------------------------------------------------------------------------------


async def read_file(gh: GitHub[Any], owner: str, repo: str, path: str, ref: str | None) -> tuple[str, str] | None:
    """A file's text and blob sha at ``ref``, or None when it does not exist."""
    try:
        kwargs: dict[str, Any] = {"ref": ref} if ref else {}
        resp = await call(gh.rest.repos.async_get_content(owner, repo, path, **kwargs))
    except NotFound:
        return None
    data = parsed(resp)
    content = getattr(data, "content", None)
    if not isinstance(content, str):
        return None
    return base64.b64decode(content).decode("utf-8", errors="replace"), str(getattr(data, "sha", ""))


async def load_policy(gh: GitHub[Any], t: Target) -> tuple[Policy | PolicyError, str | None]:
    """The policy on the default branch (never the deployed ref), over organisation defaults and the pack."""
    repo_file, org_file = await asyncio.gather(
        read_file(gh, t.owner, t.name, POLICY_PATH, t.default_branch),
        _org_defaults(gh, t.owner),
    )
    text, sha = repo_file if repo_file else (None, None)
    try:
        policy = parsed_policy(
            text, f"{t.repository}@{t.default_branch}:{POLICY_PATH}", org_file[0] if org_file else None,
            f"{t.owner}/.github:{POLICY_PATH}",
        )  # fmt: skip
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
    try:
        return await read_file(gh, owner, ".github", POLICY_PATH, None)
    except RateLimited:
        raise  # a pause, not an absent defaults file: the policy must not be read without them
    except GitHubError:
        return None  # no org defaults repository, or not readable by this installation


# --- the handler ----------------------------------------------------------------------------


def github_clients(ctx: Context) -> GitHubClients:
    clients: GitHubClients = ctx.service("github")
    return clients


@router.on("deployment_protection_rule", "requested")
async def on_protection_rule(ctx: Context, ev: Event) -> None:
    """Evaluate the deployment and answer it."""
    req = parse_request(ev.payload, ev.installation_id)
    await run_gate(ctx, req, ev.delivery_id)


async def run_gate(ctx: Context, req: GateRequest, delivery_id: str, *, reevaluate: bool = False) -> None:
    t = req.target
    engine = ctx.engine
    owner = f"{WORKER_NAME}:{uuid.uuid4().hex[:8]}"
    row, evaluate_it = await asyncio.to_thread(start_evaluation, engine, req, owner, reevaluate)
    if not evaluate_it:
        log.info("gate.duplicate", extra={"deployment": t.deployment_key, "delivery_id": delivery_id})
        return
    try:
        gh = github_clients(ctx).installation(t.installation_id)
        try:
            await _gate(ctx, gh, req, row, reevaluate)
        except (GitHubAuthError, InstallationNotFound) as exc:
            raise PermanentError(str(exc)) from exc
    finally:
        await asyncio.to_thread(release, engine, t.deployment_key, owner)


async def _gate(ctx: Context, gh: GitHub[Any], req: GateRequest, row: Deployment, reevaluate: bool) -> None:
    t = req.target
    engine = ctx.engine

    # An answer stored by an earlier attempt is re-sent, never recomputed: one deployment, one answer.
    if row.answer and row.answered_at is None:
        await answer(gh, t, row.answer, row.answer_comment or "")  # type: ignore[arg-type]
        await asyncio.to_thread(set_fields, engine, t.deployment_key, answered_at=datetime.now(UTC), state="answered")
        await hooks.emit(ctx, "answered", row=row)
        return
    if row.answer and reevaluate:
        if row.check_run_id:
            await update_check_run_text(
                gh, t, row.check_run_id, f"Already {row.answer}",
                f"This deployment was already **{row.answer}**; GitHub accepts one answer per deployment. "
                "Re-run the workflow to get a fresh evaluation.",
            )  # fmt: skip
        return

    # Only the evidence and the policy decide the answer. The first status report and the check run go out
    # while they are read; the check run's link is in the answer's comment, so it is awaited before that.
    async def first_report() -> None:
        if row.status_reports == 0:
            await status_report(gh, t, f"gonogo is evaluating the deployment of {t.sha[:7]} to {t.environment} ...")
            await asyncio.to_thread(set_fields, engine, t.deployment_key, status_reports=1)
            row.status_reports = 1

    async def ensure_check_run() -> tuple[int, str]:
        if row.check_run_id is not None:
            return row.check_run_id, f"{t.repository} check run {row.check_run_id}"
        created = await create_check_run(gh, t, external_id=t.deployment_key)
        await asyncio.to_thread(set_fields, engine, t.deployment_key, check_run_id=created[0])
        return created

    async def policy_in_force() -> Policy:
        policy, _ = await asyncio.shield(policy_read)
        return policy if isinstance(policy, Policy) else parsed_policy(None, POLICY_PATH, None, "org .github/gonogo.yml")

    report_sent = asyncio.ensure_future(first_report())
    check_run = asyncio.ensure_future(ensure_check_run())
    policy_read = asyncio.ensure_future(load_policy(gh, t))
    waivers_read = asyncio.ensure_future(hooks.waivers_for(ctx, t))
    side_tasks = (report_sent, check_run, policy_read, waivers_read)
    try:
        collected = await collect(gh, engine, t, policy=policy_in_force())
        policy, policy_sha = await policy_read
        await report_sent
        check_run_id, check_url = await check_run
        waivers = await waivers_read
    finally:
        for task in side_tasks:
            task.cancel()
        # a failure of one leaves the others cancelled and settled before the error goes up
        await asyncio.gather(*side_tasks, return_exceptions=True)
    risk = await hooks.risk_for(ctx, collected.evidence)
    decision = evaluate(collected.evidence, policy, t.environment, now=datetime.now(UTC), risk=risk, waivers=waivers)
    if ctx.settings.dry_run and decision.mode != "dry-run":
        decision = decision.model_copy(update={"mode": "dry-run", "action": "approve"})

    state_answer = {"approve": "approved", "reject": "rejected"}.get(decision.action)
    comment = report.protection_comment(decision, check_url or "")
    env_policy = effective(policy, t.environment) if isinstance(policy, Policy) else None
    stored, queued = await asyncio.to_thread(
        _store_decision, engine, t, decision, collected.evidence.model_dump(mode="json"), collected.baseline,
        policy_sha, state_answer, comment, env_policy,
    )  # fmt: skip
    await hooks.emit(ctx, "decided", queued=queued, row=stored, decision=decision, target=t)
    log.info(
        "decision.made",
        extra={"deployment": t.deployment_key, "verdict": decision.verdict, "action": decision.action,
               "score": decision.readiness_score, "risk": decision.risk.probability,
               "collect_ms": max(collected.timings_ms.values(), default=0)},
    )  # fmt: skip

    if state_answer:
        await answer(gh, t, state_answer, comment)  # type: ignore[arg-type]
        await asyncio.to_thread(set_fields, engine, t.deployment_key, answered_at=datetime.now(UTC), state="answered")
    else:
        reports = stored.status_reports  # we hold the lease: nobody else changed it
        if reports < STATUS_REPORT_LIMIT:
            await status_report(gh, t, comment)
            await asyncio.to_thread(set_fields, engine, t.deployment_key, status_reports=reports + 1, state="escalated")
            stored.status_reports = reports + 1
        else:
            await asyncio.to_thread(set_fields, engine, t.deployment_key, state="escalated")
        stored.state = "escalated"
    if not state_answer:  # reviewers hear about it before the check run shows the buttons
        await hooks.emit(ctx, "escalated", row=stored, decision=decision, target=t)
    await complete_check_run(gh, t, check_run_id, decision)
    log.info("decision.published", extra={"deployment": t.deployment_key, "action": decision.action})


def _store_decision(
    engine: Engine, t: Target, decision: Decision, evidence: dict[str, Any], baseline: dict[str, Any],
    policy_sha: str | None, state_answer: str | None, comment: str, env_policy: Any = None,
) -> tuple[Deployment, bool]:
    """Persist evidence, decision and the intended answer in one transaction, before telling GitHub.

    Returns the deployment row as stored, and whether notifications were queued in the outbox.
    """
    now = datetime.now(UTC)
    with Session(engine, expire_on_commit=False) as session, session.begin():
        row = session.scalar(select(Deployment).where(Deployment.key == t.deployment_key).with_for_update())
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
        row.decision_id = rec.id
        if state_answer and row.answer is None:
            row.answer = state_answer
            row.answer_comment = comment
        row.state = "decided"
        queued = hooks.record_decision(session, row, decision, policy_sha, env_policy)
    return row, queued


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
    req = request_from_row(row, ev.payload)
    await run_gate(ctx, req, ev.delivery_id, reevaluate=True)


def deployment_for_check_run(engine: Engine, check_run_id: Any) -> Deployment | None:
    """The deployment whose gonogo check run has this id, if any."""
    if not isinstance(check_run_id, int):
        return None
    with Session(engine, expire_on_commit=False) as session:
        return session.scalar(select(Deployment).where(Deployment.check_run_id == check_run_id))


def request_from_row(row: Deployment, payload: dict[str, Any]) -> GateRequest:
    repo = payload.get("repository") or {}
    t = Target(
        repository=row.repository, environment=row.environment, sha=row.sha, ref=row.ref, run_id=row.run_id,
        installation_id=int(row.installation_id or 0), created_at=row.created_at, deployment_key=row.key,
        default_branch=repo.get("default_branch") or "main", creator=row.creator,
    )  # fmt: skip
    return GateRequest(t, row.github_deployment_id, list(row.pull_requests or []), row.callback_url or "")
