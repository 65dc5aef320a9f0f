"""Escalation: humans decide what gonogo would not, with buttons or PR commands, checked at the moment they act."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from githubkit import GitHub
from sqlalchemy import Engine, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from github_app import audit, deployments, waivers
from github_app.db.models import CommentCommand, DecisionRecord, Deployment, Review
from github_app.deployments import DeploymentBusy
from github_app.features.announcements import notify_state_change, reply
from github_app.features.gate import (
    account_id,
    attempt_gone,
    close_abandoned_check_run,
    deployment_for_check_run,
    load_policy,
    new_owner,
    recover_stuck,
    request_from_row,
    run_gate,
    send_answer,
)
from github_app.github import GitHubError, NotFound, call
from github_app.publish import comment_on_issue, update_check_run_text
from github_app.routing import Context, Event, RetryLater, Router
from rules.policy import EnvironmentPolicy, Policy, Reviewers, effective, format_duration, load_policy_text
from rules.types import same_account

log = logging.getLogger(__name__)

router = Router()

PERMISSION_ORDER = ["read", "triage", "write", "maintain", "admin"]


@dataclass
class Verdict:
    allowed: bool
    why: str


def who_may_decide(r: Reviewers) -> str:
    people = [f"@{u}" for u in r.users] + [f"@{t}" if "/" in t else f"team {t}" for t in r.teams]
    needed = r.min_permission or "write"
    text = ", ".join(people) if people else f"anyone with {needed} access to the repository"
    if people:
        text += f" (with at least {needed} access)"
    if r.four_eyes:
        text += "; the person who triggered the deployment cannot approve it"
    return text


def is_deployer(row: Deployment, actor: str, actor_id: int | None) -> bool:
    """Whether ``actor`` is the account that triggered the deployment: the same account id, or the same login.

    The id settles it when both are known: an account may change its login at any moment and keep its
    teams and permissions. The login still counts for deployments recorded without an id.
    """
    return same_account(actor, actor_id, row.creator, row.creator_id)


def sender_id(payload: dict[str, Any]) -> int | None:
    """The account id of the webhook's sender (who clicked, who commented)."""
    return account_id(payload.get("sender"))


async def authorise(
    gh: GitHub[Any], repository: str, reviewers: Reviewers, actor: str, own: bool, action: str
) -> Verdict:
    """Decide whether ``actor`` may take ``action`` now, asking GitHub about teams and permissions.

    ``own``: the actor triggered the deployment (``is_deployer``). Every action that can lead to
    approving a deployment (approve, waive, override) is refused to the person who triggered it when
    the policy asks for four eyes; break-glass on one's own deployment needs ``reviewers.break_glass_self``
    on top.
    """
    owner, name = repository.split("/", 1)
    if action == "override":
        if actor.lower() not in {u.lower() for u in reviewers.break_glass}:
            return Verdict(False, f"only {', '.join('@' + u for u in reviewers.break_glass) or 'nobody'} may override")
        if own and not reviewers.break_glass_self:
            return Verdict(False, "break-glass on a deployment you triggered yourself is off "
                                  "(reviewers.break_glass_self: false); ask another break-glass login")  # fmt: skip
        # a login is a name, not a person: an account renamed away frees its login for anyone to take, so the
        # strongest action also needs the access a reviewer needs (write, unless min_permission says more)
        short = await _short_of(gh, owner, name, actor, reviewers.min_permission or "write")
        if short is not None:
            return Verdict(False, f"break-glass {short}")
        return Verdict(True, "listed for break-glass overrides" + (" (own deployment)" if own else ""))
    if reviewers.four_eyes and own and action in ("approve", "waive"):
        verb = "approve it" if action == "approve" else "waive its rules"
        return Verdict(False, f"four eyes: the person who triggered the deployment cannot {verb}")
    listed = actor.lower() in {u.lower() for u in reviewers.users}
    member_of = None
    if not listed:
        for team in reviewers.teams:
            org, slug = team.split("/", 1) if "/" in team else (owner, team)
            try:
                resp = await call(gh.rest.teams.async_get_membership_for_user_in_org(org, slug, actor))
            except NotFound:
                continue
            if str(resp.parsed_data.state) == "active":
                member_of = team
                break
    named = bool(reviewers.users or reviewers.teams)
    if named and not (listed or member_of):
        return Verdict(False, "not a listed reviewer or a member of a reviewer team")
    # a listed login is only a name (a renamed account frees it for anyone) and one removed from the repository
    # keeps it: every decision also needs access, write unless the policy names a level of its own
    short = await _short_of(gh, owner, name, actor, reviewers.min_permission or "write")
    if short is not None:
        return Verdict(False, short)
    return Verdict(True, f"listed reviewer{' via team ' + member_of if member_of else ''}")


async def _short_of(gh: GitHub[Any], owner: str, name: str, actor: str, needed: str) -> str | None:
    """Why ``actor`` lacks ``needed`` access to the repository right now, asked of GitHub; None if they hold it."""
    try:
        level = await call(gh.rest.repos.async_get_collaborator_permission_level(owner, name, actor))
        held = str(level.parsed_data.permission)
        role = str(getattr(level.parsed_data, "role_name", "") or held)
    except NotFound:
        held, role = "none", "none"
    rank = max(PERMISSION_ORDER.index(p) if p in PERMISSION_ORDER else -1 for p in (held, role))
    if rank >= PERMISSION_ORDER.index(needed) and held == "read":
        # GitHub says read for any account on a public repository: only access given to them counts
        try:
            await call(gh.rest.repos.async_check_collaborator(owner, name, actor))
        except NotFound:
            rank, role = -1, "none of its own: anyone may read a public repository"
    if rank < PERMISSION_ORDER.index(needed):
        return f"needs at least {needed} access to the repository (has {role})"
    return None


def _add_review(
    session: Session, row: Deployment, delivery_id: str, actor: str, action: str, allowed: bool, reason: str,
    refusal: str | None, origin: dict[str, Any] | None = None, own: bool = False, actor_id: int | None = None,
) -> None:
    """Add a human's attempt and its audit entries to the caller's transaction."""
    data = {
        "action": action, "allowed": allowed, "reason": reason, "refusal": refusal, "delivery_id": delivery_id,
        "environment": row.environment, "sha": row.sha, "deployer": row.creator,
        "own_deployment": own, **(origin or {}),
    }  # fmt: skip
    session.add(Review(
        deployment_id=row.id, delivery_id=delivery_id, actor=actor, actor_id=actor_id, action=action, allowed=allowed,
        reason=reason, refusal=refusal, created_at=datetime.now(UTC),
    ))  # fmt: skip
    audit.append(session, "review_attempt", repository=row.repository, deployment_key=row.key, actor=actor,
                 data=data)  # fmt: skip
    if allowed and action in deployments.HUMAN_ACTIONS:
        deployments.note_human_review(session, row.id)
    if action == "override":  # break-glass is loud in the log too, allowed or not
        audit.append(session, "override", repository=row.repository, deployment_key=row.key, actor=actor,
                     data=data)  # fmt: skip


# who decides while the policy on the default branch cannot be read: the people who could fix (or bypass) it
INVALID_POLICY = ("the policy file on the default branch is invalid, so only admins of the repository may decide "
                  "until it is fixed")


async def _environment_policy(
    gh: GitHub[Any], row: Deployment, payload: dict[str, Any]
) -> tuple[EnvironmentPolicy, str]:
    """The environment's settings from the policy on the default branch as it is now, and a word on who decides
    when that policy is invalid ("" when it is valid).

    An invalid (or unreadable) policy names its reviewers nowhere gonogo can read. The default pack's settings
    apply, but its reviewers (anyone with write access) would hand the decision to people the broken policy
    may have left out, so only admins decide: they could change or bypass the policy anyway.
    """
    req = request_from_row(row)
    policy, _ = await load_policy(gh, req.target)
    if isinstance(policy, Policy):
        return effective(policy, row.environment), ""
    fallback = effective(load_policy_text(None), row.environment)
    admins = fallback.reviewers.model_copy(update={
        "users": [], "teams": [], "four_eyes": True, "min_permission": "admin", "break_glass": [],
        "break_glass_self": False,
    })  # fmt: skip
    return fallback.model_copy(update={"reviewers": admins}), INVALID_POLICY


async def decide_by_human(
    ctx: Context, gh: GitHub[Any], row: Deployment, actor: str, action: str, reason: str, delivery_id: str,
    payload: dict[str, Any], origin: dict[str, Any] | None = None, shown_at: datetime | None = None,
) -> str:
    """Apply a reviewer's approve / reject / override; return what happened, in words.

    ``shown_at``: when the report the reviewer answered was published (a button's check run completed); an
    answer to a report gonogo replaced since (it decided again) answers nothing.
    """
    if action in deployments.HUMAN_ACTIONS and await asyncio.to_thread(_decided_by, ctx.engine, row.id, delivery_id):
        # a retry of the delivery whose answer was stored (GitHub failed, or the worker died, before it was sent):
        # it finishes that work, and is neither a second attempt nor an answer that "came second"
        return await _finish_stored(ctx, gh, row, actor, action)
    env_policy, note = await _environment_policy(gh, row, payload)
    own = is_deployer(row, actor, sender_id(payload))
    verdict = await authorise(gh, row.repository, env_policy.reviewers, actor, own, action)
    if note and not verdict.allowed:
        verdict = Verdict(False, f"{verdict.why}; {note}")

    def recorded(allowed: bool, refusal: str | None) -> Callable[[Session], None]:
        return partial(_add_review, row=row, delivery_id=delivery_id, actor=actor, action=action, allowed=allowed,
                       reason=reason, refusal=refusal, origin=origin, own=own, actor_id=sender_id(payload))  # fmt: skip

    if not verdict.allowed:
        await asyncio.to_thread(_in_transaction, ctx.engine, recorded(False, verdict.why))
        await reply(gh, row, f"@{actor} thanks, but you cannot {action} this deployment to **{row.environment}**: "
                              f"{verdict.why}. Who may decide: {who_may_decide(env_policy.reviewers)}.")  # fmt: skip
        return f"refused: {verdict.why}"
    replaced = await asyncio.to_thread(_replaced_since, ctx.engine, row, shown_at)
    if replaced is not None:
        await asyncio.to_thread(_in_transaction, ctx.engine, recorded(False, replaced))
        await reply(gh, row, f"@{actor} your {action} was not applied: {replaced}. Read the new report on the "
                              "`gonogo` check run and answer again.")  # fmt: skip
        return f"refused: {replaced}"
    state: deployments.Answer = "rejected" if action == "reject" else "approved"
    label = LABELS[action]
    comment = f"{label.capitalize()} by @{actor}: {reason or 'no reason given'}"
    event = {"approve": "approved", "reject": "rejected", "override": "overridden"}[action]
    channels = list(env_policy.notifications)
    owner = new_owner()

    def notified(session: Session, stored: Deployment) -> None:
        # the attempt that decides is stored with its answer, in one transaction
        recorded(True, None)(session)
        notify_state_change(session, stored, event, channels, actor=actor, comment=comment)

    gone = await attempt_gone(gh, row) if row.state == deployments.ESCALATED else None
    if gone is not None:
        # GitHub applies an answer to the attempt of the run that waits now, whichever gonogo meant it for: an
        # answer to an attempt that ended would land on a re-run gonogo has not evaluated, or on nothing at all
        await asyncio.to_thread(deployments.abandon, ctx.engine, row.key, gone)
        found = await asyncio.to_thread(deployments.load, ctx.engine, row.key)
        assert found is not None
        accepted = deployments.Accepted(False, False, found)
    else:
        accepted = await asyncio.to_thread(
            deployments.accept_human_answer, ctx.engine, row.key, state, comment, actor, owner,
            ctx.settings.lease_seconds, override=action == "override", on_commit=notified,
        )  # fmt: skip
    current = accepted.row
    if not accepted.stored:
        # allowed to decide, but nothing was decided: the attempt is refused by what the deployment is now, so
        # neither the audit nor the insights nor learning count it as this reviewer's decision
        await asyncio.to_thread(_in_transaction, ctx.engine, recorded(False, _not_applied(current)))
        if current.state in (deployments.ANSWERING, deployments.ANSWERED) and current.answer is not None:
            # another answer came first (a reviewer clicking at the same moment, an override, the expiry)
            await reply(gh, row, f"@{actor} your {action} was not applied: the deployment to **{row.environment}** "
                                  f"was already {current.answer} ({current.answer_comment or 'no comment'}). "
                                  "GitHub takes one answer per deployment.")  # fmt: skip
        if current.state in (deployments.EVALUATING, deployments.DECIDED) and current.answer is None:
            # a human answers what gonogo escalated, never what it is still deciding (a no-go would lose)
            await reply(gh, row, f"@{actor} gonogo is still evaluating the deployment to **{row.environment}**; "
                                  "comment again when it asks for a decision.")  # fmt: skip
            return "refused: still evaluating"
        if current.state == deployments.ANSWERING:
            await _drive(ctx, current)  # an earlier answer was stored but never reached GitHub (a crash): send it
        if current.state == deployments.ABANDONED:
            await reply(gh, row, f"@{actor} the deployment to **{row.environment}** no longer waits for a decision "
                                  "(its workflow run ended, or a re-run took its place), so nothing was decided. "
                                  "If a re-run waits, answer on its own check run.")  # fmt: skip
            await close_abandoned_check_run(gh, current)
            return "refused: no longer waiting"
        return f"already {current.answer or current.state}"
    if ctx.outbox is not None and channels:
        ctx.outbox.wake()
    if not accepted.send:
        # an override that landed while gonogo evaluates: the evaluating worker sends it instead of deciding
        return f"{label} (sent by the worker evaluating it)"
    req = request_from_row(current)
    try:
        await send_answer(ctx, gh, req.target, current, owner, by=actor)
    finally:
        await asyncio.to_thread(deployments.release, ctx.engine, row.key, owner)
    await _show_answer(gh, current, actor, action)
    return label


LABELS = {"approve": "approved", "reject": "rejected", "override": "approved by break-glass override"}


async def _show_answer(gh: GitHub[Any], row: Deployment, actor: str, action: str) -> None:
    """Complete the check run with the reviewer's answer stored on ``row``; its buttons go (GitHub takes one answer)."""
    if not row.check_run_id or row.answer is None:
        return
    label = LABELS[action]
    loud = "🚨 **Break-glass override.** " if action == "override" else ""
    await update_check_run_text(
        gh, request_from_row(row).target, row.check_run_id, f"{label.capitalize()} by {actor}",
        f"{loud}{row.answer_comment}\n\nThe deployment to **{row.environment}** was {label} by @{actor}.",
        conclusion="failure" if row.answer == "rejected" else "success", clear_actions=True,
    )  # fmt: skip


def _decided_by(engine: Engine, deployment_id: int, delivery_id: str) -> bool:
    """Whether this delivery's attempt was taken already: the deployment's stored answer, or a waiver given."""
    with Session(engine) as session:
        return session.scalar(select(Review.id).where(
            Review.deployment_id == deployment_id, Review.delivery_id == delivery_id, Review.allowed.is_(True),
        ).limit(1)) is not None  # fmt: skip


async def _finish_stored(ctx: Context, gh: GitHub[Any], row: Deployment, actor: str, action: str) -> str:
    """Send the answer a delivery stored before it failed (unless someone sent it meanwhile), and show it."""
    current = await asyncio.to_thread(deployments.load, ctx.engine, row.key)
    assert current is not None
    if current.state == deployments.ANSWERING:
        await _drive(ctx, current)
    await _show_answer(gh, current, actor, action)
    return f"{LABELS[action]} (finished on a retry)"


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _replaced_since(engine: Engine, row: Deployment, shown_at: datetime | None) -> str | None:
    """Why an answer to the report shown at ``shown_at`` no longer counts: gonogo escalated again after it."""
    if shown_at is None or row.state != deployments.ESCALATED:
        return None
    latest = _escalated_at(engine, [row.id]).get(row.id)
    if latest is None or _aware(shown_at) >= _aware(latest).replace(microsecond=0):  # GitHub keeps whole seconds
        return None
    return (f"gonogo decided again on the deployment to {row.environment} (at {_aware(latest):%H:%M:%S} UTC) "
            "after the report you answered was shown")


def _in_transaction(engine: Engine, work: Callable[[Session], None]) -> None:
    """Run ``work`` in a transaction of its own."""
    with Session(engine) as session, session.begin():
        work(session)


def _not_applied(current: Deployment) -> str:
    """Why an allowed answer changed nothing, from the deployment as it is now."""
    if current.answer is not None:
        return f"not applied: already {current.answer} ({(current.answer_comment or '')[:200]})"
    if current.state == deployments.ABANDONED:
        return "not applied: the deployment no longer waits for a decision"
    if current.state in (deployments.EVALUATING, deployments.DECIDED):
        return "not applied: gonogo is still evaluating the deployment"
    return f"not applied: the deployment is {current.state}"


async def _drive(ctx: Context, row: Deployment) -> None:
    """Move a deployment nobody drives on (its stored answer is sent), unless a worker is at it already."""
    try:
        await run_gate(ctx, request_from_row(row), "escalation")
    except (RetryLater, DeploymentBusy):
        pass  # a worker holds it and will finish it


@router.on("check_run", "requested_action")
async def on_button(ctx: Context, ev: Event) -> None:
    """Approve / Reject buttons on the gonogo check run."""
    run = ev.payload.get("check_run") or {}
    identifier = (ev.payload.get("requested_action") or {}).get("identifier")
    actor = (ev.payload.get("sender") or {}).get("login") or "unknown"
    if identifier not in ("approve", "reject"):
        return
    row = await asyncio.to_thread(deployment_for_check_run, ctx.engine, run.get("id"))
    if row is None or ev.installation_id is None:
        return
    repository = (ev.payload.get("repository") or {}).get("full_name")
    if not isinstance(repository, str) or repository.lower() != row.repository.lower():
        # a check run id is unique across GitHub and only its app receives its clicks, so a genuine click names
        # the deployment's own repository: one naming another is not trusted to decide this deployment
        log.warning("escalation.button_repository_mismatch", extra={
            "deployment": row.key, "repository": repository, "actor": actor, "delivery_id": ev.delivery_id})
        return
    gh = ctx.github_clients().installation(ev.installation_id)
    outcome = await decide_by_human(ctx, gh, row, actor, identifier, "via the check run button", ev.delivery_id, ev.payload,
                                    origin={"source": "check_run_button", "check_run_id": run.get("id")},
                                    shown_at=_time_of(run.get("completed_at")))  # fmt: skip
    log.info("escalation.button", extra={"deployment": row.key, "actor": actor, "outcome": outcome})


@router.on("issue_comment", "created")
async def on_comment(ctx: Context, ev: Event) -> None:
    """`/gonogo approve|reject|override|waive` commands on a pull request of the deployment.

    A comment acts at most once (whatever its deliveries), answers only deployments escalated before
    it was written, and must name the environment when several deployments of the PR wait.
    """
    comment = ev.payload.get("comment") or {}
    body = comment.get("body") or ""
    if "/gonogo" not in body.lower() or ev.installation_id is None:
        return
    issue = ev.payload.get("issue") or {}
    repository = (ev.payload.get("repository") or {}).get("full_name")
    if not isinstance(repository, str) or "number" not in issue:
        return
    actor = (ev.payload.get("sender") or {}).get("login") or "unknown"
    if (ev.payload.get("sender") or {}).get("type") == "Bot":
        return
    number = int(issue["number"])
    comment_id = comment.get("id")
    if not isinstance(comment_id, int) or isinstance(comment_id, bool):
        log.warning("escalation.comment_without_id", extra={"repository": repository, "delivery_id": ev.delivery_id})
        return
    if not await asyncio.to_thread(_claim_comment, ctx.engine, comment_id, repository, ev.delivery_id):
        log.info("escalation.comment_repeated", extra={"repository": repository, "comment_id": comment_id,
                                                        "delivery_id": ev.delivery_id})  # fmt: skip
        return
    gh = ctx.github_clients().installation(ev.installation_id)
    origin = {"source": "comment", "comment_id": comment_id, "pull_request": number}
    rows = await asyncio.to_thread(deployments.for_pull_request, ctx.engine, repository, number)

    async def refuse(action: str, text: str, why: str) -> None:
        await asyncio.to_thread(_record_refused_command, ctx.engine, repository, actor, action, why,
                                ev.delivery_id, origin)  # fmt: skip
        await comment_on_issue(gh, repository, number, f"@{actor} {text}")

    now = datetime.now(UTC)
    try:
        command = waivers.parse_command(body, now=now, environments={r.environment for r in rows})
    except waivers.CommandError as exc:
        await refuse("unknown", str(exc), f"malformed command: {exc}")
        return
    if command is None:
        return
    pending = [r for r in rows if r.answered_at is None and r.state not in deployments.FINAL]
    written = _comment_time(comment)
    escalated = await asyncio.to_thread(_escalated_at, ctx.engine, [r.id for r in pending])
    answerable = [r for r in pending if r.id in escalated and written is not None
                  and escalated[r.id].replace(microsecond=0) <= written]  # GitHub's times have whole seconds
    if command.action == "override":
        # break-glass may also stop gonogo's own no-go while it evaluates, but never reaches a deployment
        # requested after the comment was written
        answerable = [r for r in pending if written is not None and r.created_at.replace(microsecond=0) <= written]
    if command.action == "waive" and not pending:
        answerable = rows[:1]  # nothing waits: the waiver is for the next deployment of this PR's commit
    if not answerable:
        if not rows:
            text = why = "no gonogo deployment is linked to this pull request."
        elif pending:
            text = why = ("no deployment of this pull request was waiting for a decision when this comment was "
                          "written; comment again now that gonogo asks.")  # fmt: skip
        else:
            text = why = "no deployment of this pull request is waiting for a decision."
        await refuse(command.action, text, why)
        return
    chosen, choices = _choose(answerable, command.environment)
    if chosen is None:
        example = f"`/gonogo {command.action} {choices[0] if choices else '<environment>'} …`"
        if choices:
            text = (f"several deployments of this pull request are waiting: {', '.join(f'`{c}`' for c in choices)}. "
                    f"Name the one you mean, e.g. {example}.")  # fmt: skip
        else:
            text = f"no deployment of this pull request to `{command.environment}` is waiting for a decision."
        await refuse(command.action, text, text)
        return
    moved = await _head_moved(gh, repository, number, chosen, command)
    if moved is not None:
        await refuse(command.action, moved, moved)
        return
    if command.action == "waive":
        await _waive(ctx, gh, chosen, actor, command, ev, origin=origin)
        return
    await decide_by_human(ctx, gh, chosen, actor, command.action, command.reason, ev.delivery_id, ev.payload,
                          origin=origin)  # fmt: skip


async def _head_moved(gh: GitHub[Any], repository: str, number: int, row: Deployment,
                      command: waivers.Command) -> str | None:  # fmt: skip
    """Why a command must name the commit it answers: the pull request no longer shows the one deployed.

    A push (or a force-push) to the pull request after the escalation leaves the page showing a commit other
    than the one waiting (its head, or for a pull_request run a test merge of its head): an approval written there is bound to the waiting commit only when it names it
    (``production@1a2b3c4``), or, for a waiver, when its scope is explicit (``for <sha>``, ``--env-wide``).
    """
    named = (command.environment or "").partition("@")[2].lower()
    if (len(named) >= 7 and row.sha.startswith(named)) or command.sha or command.env_wide:
        return None
    owner, name = repository.split("/", 1)
    try:
        head: str | None = (await call(gh.rest.pulls.async_get(owner, name, number))).parsed_data.head.sha
    except NotFound:
        head = None
    if head == row.sha:
        return None
    if head is not None:
        # a pull_request run deploys GitHub's test merge of the head into the base (refs/pull/N/merge): a merge
        # commit with the head the page shows as a parent
        try:
            merged = (await call(gh.rest.repos.async_get_commit(owner, name, row.sha))).parsed_data
        except NotFound:
            merged = None
        if merged is not None and head in {p.sha for p in merged.parents}:
            return None
    now = f"`{head[:7]}`" if head else "another commit"
    return (f"the deployment to **{row.environment}** waiting for a decision is of `{row.sha[:7]}`, but this pull "
            f"request's head is now {now}. To answer for `{row.sha[:7]}`, name it: "
            f"`/gonogo {command.action} {row.environment}@{row.sha[:7]} …`.")  # fmt: skip


def _claim_comment(engine: Engine, comment_id: int, repository: str, delivery_id: str) -> bool:
    """Record that this comment acts now; False if another delivery of the same comment already did."""
    with engine.begin() as conn:
        stored = conn.execute(
            select(CommentCommand.delivery_id).where(CommentCommand.comment_id == comment_id)
        ).scalar()  # fmt: skip
        if stored is not None:
            return bool(stored == delivery_id)  # a retry of the acting delivery may go on
    try:
        with engine.begin() as conn:
            conn.execute(insert(CommentCommand).values(comment_id=comment_id, repository=repository,
                                                       delivery_id=delivery_id, created_at=datetime.now(UTC)))  # fmt: skip
    except IntegrityError:  # a concurrent delivery of the same comment got there first
        return False
    return True


def _comment_time(comment: dict[str, Any]) -> datetime | None:
    return _time_of(comment.get("created_at"))


def _time_of(raw: Any) -> datetime | None:
    """A payload's timestamp as an aware datetime, or None when it is missing or not one."""
    if not isinstance(raw, str):
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _escalated_at(engine: Engine, deployment_ids: list[int]) -> dict[int, datetime]:
    """When each deployment was last escalated (its latest decision to ask a human).

    A re-evaluation (a re-run of the check run, a waiver) decides afresh, maybe for other reasons: a command
    written before it answered the escalation it replaced, whenever it is delivered.
    """
    if not deployment_ids:
        return {}
    with Session(engine) as session:
        rows = session.execute(
            select(DecisionRecord.deployment_id, func.max(DecisionRecord.created_at))
            .where(DecisionRecord.deployment_id.in_(deployment_ids), DecisionRecord.action == "escalate")
            .group_by(DecisionRecord.deployment_id)
        ).all()  # fmt: skip
    return {int(dep): moment for dep, moment in rows if moment is not None}


def _label_of(row: Deployment, with_sha: bool) -> str:
    return f"{row.environment}@{row.sha[:7]}" if with_sha else row.environment


def _choose(rows: list[Deployment], named: str | None) -> tuple[Deployment | None, list[str]]:
    """The one deployment a command answers, or None and the names to choose from."""
    if named:
        env, _, sha = named.partition("@")
        rows = [r for r in rows if r.environment.lower() == env.lower() and r.sha.startswith(sha.lower())]
    distinct: dict[tuple[str, str], Deployment] = {}
    for row in rows:  # newest first: a second run of the same commit to the same environment answers the newest
        distinct.setdefault((row.environment.lower(), row.sha), row)
    if len(distinct) == 1:
        return next(iter(distinct.values())), []
    envs = [r.environment.lower() for r in distinct.values()]
    with_sha = len(set(envs)) < len(envs)
    return None, sorted(_label_of(r, with_sha) for r in distinct.values())


def _record_refused_command(engine: Engine, repository: str, actor: str, action: str, refusal: str,
                            delivery_id: str, origin: dict[str, Any]) -> None:  # fmt: skip
    """Audit a command refused before it reached a deployment (malformed, stale, ambiguous)."""
    with Session(engine) as session, session.begin():
        audit.append(session, "review_attempt", repository=repository, actor=actor, data={
            "action": action, "allowed": False, "reason": "", "refusal": refusal, "delivery_id": delivery_id, **origin,
        })  # fmt: skip


async def _waive(ctx: Context, gh: GitHub[Any], row: Deployment, actor: str, command: Any, ev: Event,
                 origin: dict[str, Any] | None = None) -> None:  # fmt: skip
    if await asyncio.to_thread(_decided_by, ctx.engine, row.id, ev.delivery_id):
        # a retry of the delivery that gave this waiver (its re-evaluation failed): a second copy would outlive
        # the revocation of the first, so only the re-evaluation is done again
        if row.answered_at is None:
            await run_gate(ctx, request_from_row(row), ev.delivery_id, reevaluate=True)
        return
    env_policy, note = await _environment_policy(gh, row, ev.payload)
    own = is_deployer(row, actor, sender_id(ev.payload))
    verdict = await authorise(gh, row.repository, env_policy.reviewers, actor, own, "waive")
    if note and not verdict.allowed:
        verdict = Verdict(False, f"{verdict.why}; {note}")
    limit = env_policy.waivers.max_lifetime
    if verdict.allowed and command.until - datetime.now(UTC) > limit:
        verdict = Verdict(False, f"a waiver may last at most {format_duration(limit)} (waivers.max_lifetime); "
                                 f"choose an end before {datetime.now(UTC) + limit:%Y-%m-%d %H:%M} UTC")  # fmt: skip
    sha = None if command.env_wide else (command.sha or row.sha)
    scope = {"rule_id": command.rule_id, "sha": sha, "until": command.until.isoformat(), "env_wide": command.env_wide}
    recorded = partial(_add_review, row=row, delivery_id=ev.delivery_id, actor=actor, action="waive",
                       allowed=verdict.allowed, reason=command.reason,
                       refusal=None if verdict.allowed else verdict.why, origin={**(origin or {}), "waiver": scope},
                       own=own, actor_id=sender_id(ev.payload))  # fmt: skip
    if not verdict.allowed:
        await asyncio.to_thread(_in_transaction, ctx.engine, recorded)
        await reply(gh, row, f"@{actor} you cannot waive rules for **{row.environment}**: {verdict.why}. "
                              f"Who may: {who_may_decide(env_policy.reviewers)}.")  # fmt: skip
        return

    def store() -> None:
        # the attempt and the waiver it gives are stored together: a retry finds the attempt and gives no second
        with Session(ctx.engine) as session, session.begin():
            recorded(session)
            waivers.add_waiver(session, row.repository, row.environment, command.rule_id, sha, command.until,
                               command.reason, actor, deployment_key=row.key, author_id=sender_id(ev.payload))  # fmt: skip

    await asyncio.to_thread(store)
    where = f"every commit to {row.environment}" if sha is None else f"`{sha[:7]}` on {row.environment}"
    await reply(gh, row, f"Waiver recorded: **{command.rule_id}** for {where} until "
                          f"{command.until:%Y-%m-%d %H:%M} UTC ({command.reason}).")  # fmt: skip
    if row.answered_at is None:  # still waiting: decide again with the waiver applied
        await run_gate(ctx, request_from_row(row), ev.delivery_id, reevaluate=True)


@router.on("workflow_run", "completed")
async def on_run_completed(ctx: Context, ev: Event) -> None:
    """A workflow run that ended (cancelled, timed out, failed elsewhere) no longer waits: stop its escalations."""
    run = ev.payload.get("workflow_run") or {}
    repository = (ev.payload.get("repository") or {}).get("full_name")
    if not isinstance(run, dict) or not isinstance(run.get("id"), int) or not isinstance(repository, str):
        return
    why = f"workflow run {run['id']} completed ({run.get('conclusion') or 'no conclusion'})"
    # the attempt that ended did so by its last update: a deployment requested after that is a re-run's, still
    # waiting (this event may come late, or again, once the run was re-run)
    ended = _time_of(run.get("updated_at"))
    for row in await asyncio.to_thread(deployments.for_run, ctx.engine, repository, int(run["id"])):
        if row.state == deployments.ESCALATED and await asyncio.to_thread(
            deployments.abandon, ctx.engine, row.key, why, requested_by=ended
        ):
            log.info("escalation.abandoned", extra={"deployment": row.key, "why": why})
            if ev.installation_id is not None:
                await close_abandoned_check_run(ctx.github_clients().installation(ev.installation_id), row)


async def sweep(ctx: Context, now: datetime | None = None) -> dict[str, int]:
    """Remind reviewers and expire escalations per policy (`reviewers.remind_after`, `reviewers.expire_after`).

    Each step is recorded by a conditional transition before anything is sent, so two processes
    sweeping at once never remind or expire one escalation twice. Escalations past GitHub's 30 days
    are abandoned (GitHub has failed their run), not polled further.
    """
    now = now or datetime.now(UTC)
    done = {"reminded": 0, "expired": 0}
    clients = ctx.github
    if clients is None:
        return done
    for row in await asyncio.to_thread(deployments.escalated, ctx.engine):
        if row.installation_id is None:
            continue
        gh = clients.installation(row.installation_id)
        if now - row.created_at >= deployments.GITHUB_WAIT_LIMIT:
            if await asyncio.to_thread(deployments.abandon, ctx.engine, row.key, "GitHub's 30-day limit passed"):
                await close_abandoned_check_run(gh, row)
            continue
        try:
            env_policy, _ = await _environment_policy(gh, row, {})
        except GitHubError as exc:
            log.warning("escalation.sweep_policy_unreadable", extra={"deployment": row.key, "error": str(exc)})
            continue
        r = env_policy.reviewers
        age = now - row.created_at
        channels = list(env_policy.notifications)
        if r.expire_after is not None and age >= r.expire_after:
            gone = await attempt_gone(gh, row)
            if gone is not None:  # the rejection would land on a re-run gonogo has not evaluated, or on nothing
                if await asyncio.to_thread(deployments.abandon, ctx.engine, row.key, gone):
                    await close_abandoned_check_run(gh, row)
            elif await _expire(ctx, gh, row, r.expire_after, channels):
                done["expired"] += 1
            continue
        if r.remind_after is not None and age >= r.remind_after and row.reminded_at is None:
            after = r.remind_after

            def reminded(session: Session, stored: Deployment, after: timedelta = after,
                         channels: list[Any] = channels) -> None:  # fmt: skip
                notify_state_change(session, stored, "reminded", channels)
                audit.append(session, "reminder", repository=stored.repository, deployment_key=stored.key,
                             data={"after": str(after)})  # fmt: skip

            if await asyncio.to_thread(deployments.mark_reminded, ctx.engine, row.key, now, reminded) is None:
                continue  # another sweeper reminded them
            await reply(gh, row, f"⏰ Reminder: the deployment of `{row.sha[:7]}` to **{row.environment}** is still "
                                  f"waiting for a decision. Who may decide: {who_may_decide(r)}.")  # fmt: skip
            done["reminded"] += 1
    return done


async def _expire(ctx: Context, gh: GitHub[Any], row: Deployment, after: timedelta, channels: list[Any]) -> bool:
    """Reject an escalation nobody decided in time; False when it was answered (or expired) meanwhile."""
    comment = f"Expired: no reviewer decided within {after} (reviewers.expire_after); rejected."
    owner = new_owner()

    def notified(session: Session, stored: Deployment) -> None:
        notify_state_change(session, stored, "expired", channels, comment=comment)

    stored = await asyncio.to_thread(deployments.expire, ctx.engine, row.key, comment, owner,
                                     ctx.settings.lease_seconds, notified)  # fmt: skip
    if stored is None:
        return False
    req = request_from_row(stored)
    try:
        await send_answer(ctx, gh, req.target, stored, owner)
    finally:
        await asyncio.to_thread(deployments.release, ctx.engine, row.key, owner)
    if row.check_run_id:
        await update_check_run_text(gh, req.target, row.check_run_id, "Expired without a decision", comment,
                                    conclusion="failure")  # fmt: skip
    await reply(gh, row, f"⌛ {comment}")
    return True


async def sweep_forever(ctx: Context, interval: float, stop: asyncio.Event) -> None:
    """Sweep escalations and stuck deployments every ``interval`` seconds until ``stop`` is set."""
    while not stop.is_set():
        try:
            await sweep(ctx)
            await recover_stuck(ctx)
        except Exception:  # the sweeper must survive a bad round
            log.exception("escalation.sweep_failed")
        try:
            async with asyncio.timeout(interval):
                await stop.wait()
        except TimeoutError:
            pass
