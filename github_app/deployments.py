"""The deployment's lifecycle: the ``deployments`` row, its states and the only ways to change them.

Every change of state is one named transition below, each a single conditional UPDATE that names the
states it may come from (and, where one worker at a time must act, the lease owner). A transition that
finds the row elsewhere changes nothing and says so, so two actors racing on one deployment (a worker
and a reviewer, two workers, two sweepers) cannot both win: the order of the database decides, not care.

States (docs/escalation.md has the table):

- ``evaluating``  gonogo holds the lease and gathers evidence;
- ``decided``     the decision (and, for go / no-go, the answer) is stored, not yet published;
- ``escalated``   waiting for a human; no lease is held;
- ``answering``   an answer is stored (a reviewer's, an override, an expiry) and is being sent;
- ``answered``    GitHub took the answer: final;
- ``abandoned``   the workflow run ended without an answer (cancelled, or past GitHub's 30 days): final.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Engine, case, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from github_app import audit
from github_app.db.models import DecisionRecord, Deployment
from github_app.evidence import Target

log = logging.getLogger(__name__)

EVALUATING = "evaluating"
DECIDED = "decided"
ESCALATED = "escalated"
ANSWERING = "answering"
ANSWERED = "answered"
ABANDONED = "abandoned"
STATES = (EVALUATING, DECIDED, ESCALATED, ANSWERING, ANSWERED, ABANDONED)
FINAL = frozenset({ANSWERED, ABANDONED})
# states a worker drives by itself (under a lease); a deployment left in one past its lease is stuck
DRIVEN = (EVALUATING, DECIDED, ANSWERING)
# GitHub fails a workflow run waiting on a protection rule after 30 days
GITHUB_WAIT_LIMIT = timedelta(days=30)

Answer = Literal["approved", "rejected"]
# what a reviewer may answer with: an allowed one of these marks the deployment as decided by a human
HUMAN_ACTIONS = ("approve", "reject", "override")
Next = Literal["evaluate", "publish_decision", "send_answer", "nothing"]
OnCommit = Callable[[Session, Deployment], None]


class DeploymentBusy(Exception):
    """Another worker holds the deployment's lease; try again once it ends (``retry_after`` seconds)."""

    def __init__(self, key: str, retry_after: float) -> None:
        super().__init__(f"deployment {key} is being handled by another worker; retry in {retry_after:.0f} s")
        self.key = key
        self.retry_after = max(0.5, retry_after)


class LeaseLost(Exception):
    """The lease ran out and someone else took the deployment (or a transition beat ours); stop acting."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def _lease_free(owner: str, now: datetime) -> Any:
    return or_(Deployment.lease_until.is_(None), Deployment.lease_until < now, Deployment.lease_owner == owner)


def _update(engine: Engine, key: str, where: Iterable[Any], values: dict[str, Any],
            on_commit: OnCommit | None = None) -> Deployment | None:
    """Run one conditional UPDATE; return the row as it now is when it matched, else None."""
    with Session(engine, expire_on_commit=False) as session, session.begin():
        done = session.connection().execute(
            update(Deployment).where(Deployment.key == key, *where).values(**values)
        ).rowcount  # fmt: skip
        if done != 1:
            return None
        row = session.scalar(select(Deployment).where(Deployment.key == key).execution_options(populate_existing=True))
        assert row is not None
        if on_commit is not None:
            on_commit(session, row)
        return row


def load(engine: Engine, key: str) -> Deployment | None:
    """The deployment row as stored now."""
    with Session(engine, expire_on_commit=False) as session:
        return session.scalar(select(Deployment).where(Deployment.key == key))


@dataclass(frozen=True)
class Begun:
    """What ``begin`` found: the row (as of now, leased to the caller unless ``next`` is nothing) and what to do."""

    row: Deployment
    next: Next
    resumed: bool = False  # an evaluation an earlier attempt began (it may have created the check run, unrecorded)


def begin(
    engine: Engine, target: Target, *, github_deployment_id: int | None, pull_requests: list[int],
    callback_url: str, owner: str, lease_seconds: float, reevaluate: bool = False, creator_id: int | None = None,
) -> Begun:
    """Record a requested deployment (first delivery) or pick it up again, taking its lease.

    What the caller does next follows from the state found, never from the caller's wishes:
    a new or interrupted evaluation is evaluated; a stored decision is published without deciding
    again; a stored answer is sent; an escalation is left alone (a redelivery changes nothing) unless
    ``reevaluate`` (a waiver or a re-run of the check run) takes it back to ``evaluating``; a final
    deployment is left alone. Raises DeploymentBusy while another worker holds the lease.

    A new deployment of a run and environment gonogo knows supersedes the run's other attempts there
    (``_supersede``): GitHub takes one answer per run and environment and applies it to the attempt
    waiting now, so only the latest attempt may answer.
    """
    now = utcnow()
    until = now + timedelta(seconds=lease_seconds)
    t = target
    with Session(engine, expire_on_commit=False) as session, session.begin():
        if session.scalar(select(Deployment.id).where(Deployment.key == t.deployment_key)) is None:
            row = Deployment(
                key=t.deployment_key, repository=t.repository, environment=t.environment, sha=t.sha, ref=t.ref,
                run_id=t.run_id, github_deployment_id=github_deployment_id, installation_id=t.installation_id,
                creator=t.creator, creator_id=creator_id, pull_requests=pull_requests, callback_url=callback_url,
                created_at=t.created_at, state=EVALUATING, status_reports=0, default_branch=t.default_branch,
                lease_owner=owner, lease_until=until,
            )  # fmt: skip
            session.add(row)
            try:
                session.flush()
            except IntegrityError:  # a concurrent delivery inserted it first: it holds the lease now
                session.rollback()
                raise DeploymentBusy(t.deployment_key, lease_seconds) from None
            if _supersede(session, row):
                return Begun(row, "nothing")
            return Begun(row, "evaluate")
    # the row exists: one conditional UPDATE per state it may be picked up from
    taken = _update(engine, t.deployment_key, [Deployment.state.in_(DRIVEN), _lease_free(owner, now)],
                    {"lease_owner": owner, "lease_until": until})  # fmt: skip
    if taken is not None:
        if taken.state == EVALUATING:
            return Begun(taken, "evaluate", resumed=True)
        if taken.answer is not None:
            return Begun(taken, "send_answer")
        return Begun(taken, "publish_decision")
    if reevaluate:
        again = _update(
            engine, t.deployment_key,
            [Deployment.state == ESCALATED, Deployment.answer.is_(None), _lease_free(owner, now)],
            {"state": EVALUATING, "lease_owner": owner, "lease_until": until},
        )  # fmt: skip
        if again is not None:
            return Begun(again, "evaluate")
    found = load(engine, t.deployment_key)
    assert found is not None
    if found.state in DRIVEN:
        held = (found.lease_until - now).total_seconds() if found.lease_until else lease_seconds
        raise DeploymentBusy(found.key, held)
    return Begun(found, "nothing")


def _supersede(session: Session, new: Deployment) -> bool:
    """Abandon the other unfinished attempts of ``new``'s run and environment, inside the caller's transaction.

    GitHub creates a deployment for every attempt of a run, but its protection-rule answer names only
    the run and the environment, and lands on whichever attempt waits now: an earlier attempt's
    escalation (its buttons still showing) or its stored answer (a crash before it was sent) would
    otherwise answer the re-run for it. Earlier attempts are abandoned in favour of ``new``; when a
    later attempt is already known, ``new`` is the stale one (a late or redelivered request) and is
    abandoned itself, and True is returned: the caller then does nothing with it.
    """
    same_gate = (Deployment.repository == new.repository, Deployment.run_id == new.run_id,
                 Deployment.environment == new.environment, Deployment.key != new.key)  # fmt: skip
    later = session.scalar(select(Deployment.key).where(*same_gate, Deployment.created_at > new.created_at).limit(1))
    if later is not None:
        stale = [new.key]
        why = f"a later attempt of workflow run {new.run_id} ({later}) was requested first"
    else:
        stale = list(session.scalars(select(Deployment.key).where(
            *same_gate, Deployment.created_at < new.created_at, Deployment.state.not_in(sorted(FINAL)))))  # fmt: skip
        why = f"superseded by a later attempt of workflow run {new.run_id} ({new.key})"
    for key in stale:
        done = session.connection().execute(
            update(Deployment).where(Deployment.key == key, Deployment.state.not_in(sorted(FINAL)))
            .values(state=ABANDONED, lease_owner=None, lease_until=None)
        ).rowcount  # fmt: skip
        if done == 1:
            audit.append(session, "lifecycle", repository=new.repository, deployment_key=key, actor="gonogo",
                         data={"state": ABANDONED, "why": why})  # fmt: skip
    if later is not None:
        session.refresh(new)
    return later is not None


def renew(engine: Engine, key: str, owner: str, lease_seconds: float) -> bool:
    """Extend the caller's lease while it keeps working; False when it is no longer the caller's."""
    return _update(engine, key, [Deployment.lease_owner == owner, Deployment.state.in_(DRIVEN)],
                   {"lease_until": utcnow() + timedelta(seconds=lease_seconds)}) is not None  # fmt: skip


def release(engine: Engine, key: str, owner: str, not_before: float = 0.0) -> None:
    """Give the lease back (work stopped early), so the next delivery need not wait it out.

    The time of release stays in ``lease_until``: the sweeper counts a whole lease from there before
    it calls the deployment stuck, which leaves the delivery's own retry the first go. ``not_before``
    (seconds) puts that time later, when GitHub asked to be left alone that long (a rate limit): until
    then the sweeper leaves the deployment be, and another delivery for it waits as for a lease.
    """
    _update(engine, key, [Deployment.lease_owner == owner, Deployment.state.in_(DRIVEN)],
            {"lease_owner": None, "lease_until": utcnow() + timedelta(seconds=not_before)})  # fmt: skip


def note_check_run(engine: Engine, key: str, owner: str, check_run_id: int) -> None:
    """Remember the gonogo check run created for the deployment (by the lease holder)."""
    _update(engine, key, [Deployment.lease_owner == owner, Deployment.check_run_id.is_(None)],
            {"check_run_id": check_run_id})  # fmt: skip


def note_status_report(engine: Engine, key: str, owner: str, reports: int, github_status: int, text: str) -> None:
    """Count a status report GitHub took for the deployment, and audit it."""

    def audited(session: Session, row: Deployment) -> None:
        audit.append(session, "status_report", repository=row.repository, deployment_key=row.key,
                     actor="gonogo", data={"github_status": github_status, "comment": text[:200]})  # fmt: skip

    _update(engine, key, [Deployment.lease_owner == owner], {"status_reports": reports}, audited)


def record_decision(session: Session, key: str, owner: str, decision: DecisionRecord, answer: Answer | None,
                    comment: str, first_commit_at: datetime | None = None) -> bool:  # fmt: skip
    """evaluating -> decided, inside the caller's transaction that stores ``decision`` (flushed: it has an id).

    The answer (go / no-go) is stored with it, before GitHub is told, so a crash never decides twice.
    The decision's headline (verdict, action, risk, time) and the first commit of the change are copied
    onto the row for the insights, which read them for thousands of deployments at a time.
    False when the caller lost the lease or a break-glass override got there first: then the caller
    rolls its transaction back.
    """
    if first_commit_at is not None and first_commit_at.tzinfo is None:
        first_commit_at = first_commit_at.replace(tzinfo=UTC)
    values: dict[str, Any] = {
        "state": DECIDED, "decision_id": decision.id, "verdict": decision.verdict, "decided_action": decision.action,
        "risk": decision.risk, "decided_at": decision.created_at, "first_commit_at": first_commit_at,
    }  # fmt: skip
    if answer is not None:
        values.update(answer=answer, answer_comment=comment)
    done = session.connection().execute(
        update(Deployment)
        .where(Deployment.key == key, Deployment.state == EVALUATING, Deployment.lease_owner == owner,
               Deployment.answer.is_(None))
        .values(**values)
    ).rowcount  # fmt: skip
    return bool(done == 1)


def note_human_review(session: Session, deployment_id: int) -> bool:
    """Mark that a reviewer's answer was allowed (approve, reject or override), inside the caller's transaction.

    Only the answer stored for the deployment counts (escalation records an allowed answer that came
    second as refused). It stays set: the insights count the deployment as decided by a human from then
    on. False when it was set already.
    """
    done = session.connection().execute(
        update(Deployment).where(Deployment.id == deployment_id, Deployment.human_reviewed.is_(False))
        .values(human_reviewed=True)
    ).rowcount  # fmt: skip
    return bool(done == 1)


def escalate(engine: Engine, key: str, owner: str) -> Deployment:
    """decided (no answer) -> escalated: the decision is published and humans decide; the lease ends."""
    row = _update(engine, key, [Deployment.state == DECIDED, Deployment.answer.is_(None), Deployment.lease_owner == owner],
                  {"state": ESCALATED, "lease_owner": None, "lease_until": None})  # fmt: skip
    if row is None:
        raise LeaseLost(f"deployment {key} changed while its escalation was published")
    return row


@dataclass(frozen=True)
class Accepted:
    """The outcome of a human answer: whether it was stored, and whether the caller sends it now."""

    stored: bool
    send: bool
    row: Deployment


def accept_human_answer(
    engine: Engine, key: str, answer: Answer, comment: str, actor: str, owner: str, lease_seconds: float, *,
    override: bool = False, on_commit: OnCommit | None = None,
) -> Accepted:
    """escalated -> answering with a reviewer's answer; for a break-glass override also from evaluating / decided.

    Only a deployment gonogo escalated takes an approve or reject: while it is evaluated, once it
    has an answer, or once GitHub's 30 days have passed (the escalation is then abandoned), nothing changes. An override may also land while gonogo evaluates, before gonogo
    stored an answer of its own; the evaluating worker then sends the override instead of deciding.
    The caller sends the answer itself when it got the lease (``send``).
    """
    now = utcnow()
    sources = [ESCALATED, EVALUATING, DECIDED] if override else [ESCALATED]

    def audited(session: Session, row: Deployment) -> None:
        # the attempt itself is audited by escalation (kind "override" for break-glass); this is the answer
        audit.append(session, "answer", repository=row.repository,
                     deployment_key=row.key, actor=actor,
                     data={"state": answer, "comment": comment, "by": "override" if override else "human",
                           "stage": "stored"})  # fmt: skip
        if on_commit is not None:
            on_commit(session, row)

    free = or_(Deployment.lease_until.is_(None), Deployment.lease_until < now)
    # past GitHub's 30 days the run has failed: an answer would reach nothing, and would be recorded as decided
    in_time = Deployment.created_at > now - GITHUB_WAIT_LIMIT
    row = _update(
        engine, key, [Deployment.state.in_(sources), Deployment.answer.is_(None), in_time],
        {
            "state": ANSWERING, "answer": answer, "answer_comment": comment,
            # take the lease when nobody holds it; a worker still evaluating keeps it and sends this answer
            "lease_owner": case((free, owner), else_=Deployment.lease_owner),
            "lease_until": case((free, now + timedelta(seconds=lease_seconds)), else_=Deployment.lease_until),
        },
        audited,
    )  # fmt: skip
    if row is None:
        current = load(engine, key)
        assert current is not None
        if current.state == ESCALATED and now - _aware(current.created_at) >= GITHUB_WAIT_LIMIT:
            abandon(engine, key, "GitHub's 30-day limit passed")  # what the sweeper would do on its next round
            current = load(engine, key)
            assert current is not None
        return Accepted(False, False, current)
    return Accepted(True, row.lease_owner == owner, row)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def expire(engine: Engine, key: str, comment: str, owner: str, lease_seconds: float,
           on_commit: OnCommit | None = None) -> Deployment | None:  # fmt: skip
    """escalated -> answering with a rejection, because no reviewer decided in time (the caller sends it)."""
    def audited(session: Session, row: Deployment) -> None:
        audit.append(session, "answer", repository=row.repository, deployment_key=row.key, actor="gonogo",
                     data={"state": "rejected", "comment": comment, "by": "expiry", "stage": "stored"})  # fmt: skip
        if on_commit is not None:
            on_commit(session, row)

    return _update(
        engine, key, [Deployment.state == ESCALATED, Deployment.answer.is_(None)],
        {"state": ANSWERING, "answer": "rejected", "answer_comment": comment, "lease_owner": owner,
         "lease_until": utcnow() + timedelta(seconds=lease_seconds)},
        audited,
    )  # fmt: skip


def mark_answered(engine: Engine, key: str, owner: str, answer: str, github_status: int, by: str,
                  on_commit: OnCommit | None = None) -> Deployment | None:  # fmt: skip
    """decided / answering -> answered, once GitHub took the answer (or said it already had one); audited.

    ``github_status`` is GitHub's response code: 200 took it, 422 means the run already had an answer.
    """
    def audited(session: Session, row: Deployment) -> None:
        audit.append(session, "answer", repository=row.repository, deployment_key=row.key, actor=by,
                     data={"state": answer, "by": by, "stage": "sent", "github_status": github_status})  # fmt: skip
        if on_commit is not None:
            on_commit(session, row)

    return _update(
        engine, key,
        [Deployment.state.in_((DECIDED, ANSWERING)), Deployment.lease_owner == owner, Deployment.answer == answer],
        {"state": ANSWERED, "answered_at": utcnow(), "lease_owner": None, "lease_until": None},
        audited,
    )  # fmt: skip


def mark_reminded(engine: Engine, key: str, now: datetime, on_commit: OnCommit | None = None) -> Deployment | None:
    """Record the one reminder of an escalation; None when it was already recorded (by another sweeper)."""
    return _update(engine, key, [Deployment.state == ESCALATED, Deployment.reminded_at.is_(None)],
                   {"reminded_at": now}, on_commit)  # fmt: skip


def note_announced(engine: Engine, key: str, now: datetime) -> bool:
    """Record that the escalation's PR comment went out (or is going out), once; False when already recorded."""
    return _update(engine, key, [Deployment.announced_at.is_(None)], {"announced_at": now}) is not None


def abandon(engine: Engine, key: str, why: str, *, requested_by: datetime | None = None) -> bool:
    """escalated -> abandoned: the workflow run ended (or GitHub's 30 days passed) without an answer.

    ``requested_by``: when the run attempt that ended did so; a deployment requested after it belongs
    to a later attempt (a re-run), which still waits, and is left alone.
    """

    def audited(session: Session, row: Deployment) -> None:
        audit.append(session, "lifecycle", repository=row.repository, deployment_key=row.key, actor="gonogo",
                     data={"state": ABANDONED, "why": why})  # fmt: skip

    where = [Deployment.state == ESCALATED, Deployment.answer.is_(None)]
    if requested_by is not None:
        where.append(Deployment.created_at <= requested_by)
    return _update(engine, key, where, {"state": ABANDONED, "lease_owner": None, "lease_until": None},
                   audited) is not None  # fmt: skip


def abandon_unanswerable(engine: Engine, key: str, now: datetime) -> bool:
    """evaluating / decided / answering -> abandoned, nobody driving it, once GitHub's 30 days have passed.

    GitHub has failed the run by then: an evaluation or a stored answer would reach nothing, and a
    deployment whose every drive failed would otherwise be driven by every sweep for ever. False when
    it moved on, is leased, or is younger.
    """

    def audited(session: Session, row: Deployment) -> None:
        audit.append(session, "lifecycle", repository=row.repository, deployment_key=row.key, actor="gonogo",
                     data={"state": ABANDONED, "why": "GitHub's 30-day limit passed before it was answered"})  # fmt: skip

    where = [Deployment.state.in_(DRIVEN), Deployment.created_at <= now - GITHUB_WAIT_LIMIT,
             or_(Deployment.lease_owner.is_(None), Deployment.lease_until.is_(None), Deployment.lease_until < now)]
    return _update(engine, key, where, {"state": ABANDONED, "lease_owner": None, "lease_until": None},
                   audited) is not None  # fmt: skip


def abandon_uninstalled(engine: Engine, installation_id: int) -> list[str]:
    """Every unfinished deployment of an installation -> abandoned: the app was uninstalled from the account.

    No token can act for the installation any more (a reinstall is a new installation), so nothing can
    answer these deployments; left waiting, each would cost a refused token request every sweep until
    GitHub's 30 days ran out. Returns the keys abandoned; each is audited.
    """
    why = f"the app was uninstalled (installation {installation_id}): nothing can answer for it any more"
    done: list[str] = []
    with Session(engine, expire_on_commit=False) as session, session.begin():
        rows = session.execute(select(Deployment.key, Deployment.repository).where(
            Deployment.installation_id == installation_id, Deployment.state.not_in(sorted(FINAL)))).all()  # fmt: skip
        for key, repository in rows:
            moved = session.connection().execute(
                update(Deployment).where(Deployment.key == key, Deployment.state.not_in(sorted(FINAL)))
                .values(state=ABANDONED, lease_owner=None, lease_until=None)
            ).rowcount  # fmt: skip
            if moved == 1:
                audit.append(session, "lifecycle", repository=repository, deployment_key=key, actor="gonogo",
                             data={"state": ABANDONED, "why": why})  # fmt: skip
                done.append(key)
    return done


# --- reads ------------------------------------------------------------------------------------


def for_check_run(engine: Engine, check_run_id: Any) -> Deployment | None:
    """The deployment whose gonogo check run has this id, if any."""
    if not isinstance(check_run_id, int):
        return None
    with Session(engine, expire_on_commit=False) as session:
        return session.scalar(select(Deployment).where(Deployment.check_run_id == check_run_id))


def for_pull_request(engine: Engine, repository: str, number: int) -> list[Deployment]:
    """The recent deployments of a repository that name this pull request, newest first."""
    with Session(engine, expire_on_commit=False) as session:
        rows = session.scalars(
            select(Deployment).where(Deployment.repository == repository).order_by(Deployment.created_at.desc()).limit(200)
        ).all()  # fmt: skip
    return [r for r in rows if number in (r.pull_requests or [])]


def for_run(engine: Engine, repository: str, run_id: int) -> list[Deployment]:
    """The deployments of one workflow run (every environment and attempt)."""
    with Session(engine, expire_on_commit=False) as session:
        return list(session.scalars(
            select(Deployment).where(Deployment.repository == repository, Deployment.run_id == run_id)
        ).all())  # fmt: skip


def escalated(engine: Engine) -> list[Deployment]:
    """Deployments waiting for a human."""
    with Session(engine, expire_on_commit=False) as session:
        return list(session.scalars(select(Deployment).where(Deployment.state == ESCALATED)).all())


def stuck(engine: Engine, now: datetime, grace: timedelta, limit: int = 100) -> list[Deployment]:
    """Deployments in a state a worker drives, unleased for ``grace`` past the end of their last lease."""
    cutoff = now - grace
    with Session(engine, expire_on_commit=False) as session:
        return list(session.scalars(
            select(Deployment)
            .where(Deployment.state.in_(DRIVEN), Deployment.lease_owner.is_(None) | (Deployment.lease_until < now),
                   or_(Deployment.lease_until.is_(None), Deployment.lease_until < cutoff))
            .order_by(Deployment.id).limit(limit)
        ).all())  # fmt: skip
