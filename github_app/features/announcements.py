"""What people hear about a deployment: notifications queued with a state change, PR comments and replies."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

from githubkit import GitHub
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from github_app import deployments, notify
from github_app.db.models import DecisionRecord, Deployment
from github_app.github import GitHubError
from github_app.publish import comment_on_issue
from rules import report
from rules.types import Decision

log = logging.getLogger(__name__)


def notify_state_change(session: Session, row: Deployment, event: str, channels: list[Any], *,
                        actor: str | None = None, comment: str = "", decision: Decision | None = None) -> None:  # fmt: skip
    """Queue one notification per channel for this state change, in the caller's transaction.

    Pass ``decision`` when it is at hand; otherwise the deployment's stored decision is read back.
    """
    if not channels:
        return
    if decision is None:
        data = session.scalar(select(DecisionRecord.data).where(DecisionRecord.id == row.decision_id))
        decision = Decision.model_validate(data) if data else None
    summary = (
        notify.summary_from_decision(decision, actor=actor, comment=comment)
        if decision is not None else {"repository": row.repository, "environment": row.environment, "sha": row.sha}
    )  # fmt: skip
    notify.enqueue_event(session, deployment_key=row.key, event=event, decision_summary=summary,  # type: ignore[arg-type]
                         links=links(row), channels=channels)  # fmt: skip


def web_base(api_url: str) -> str:
    """The GitHub web address behind a REST API address: github.com for api.github.com, SUBDOMAIN.ghe.com for
    api.SUBDOMAIN.ghe.com, the host itself for GitHub Enterprise Server's /api/v3 (and for anything else)."""
    parts = urlsplit(api_url)
    host = parts.netloc
    if host == "api.github.com":
        host = "github.com"
    elif host.startswith("api.") and host.endswith(".ghe.com"):
        host = host.removeprefix("api.")
    return f"{parts.scheme}://{host}"


def links(row: Deployment) -> dict[str, str | None]:
    """Where a person acts on this deployment: its check run, its workflow run and its first pull request.

    The web address comes from the deployment's callback URL, which GitHub sent on its own API host.
    """
    if not row.callback_url:
        return {}
    repo = f"{web_base(row.callback_url)}/{quote(row.repository)}"
    pulls = [n for n in row.pull_requests or [] if isinstance(n, int) and not isinstance(n, bool)]
    return {
        "check_run": f"{repo}/runs/{row.check_run_id}" if row.check_run_id else None,
        "workflow_run": f"{repo}/actions/runs/{row.run_id}",
        "pull_request": f"{repo}/pull/{pulls[0]}" if pulls else None,
    }


async def reply(gh: GitHub[Any], row: Deployment, text: str) -> None:
    """Comment on the deployment's first pull request; a failure is logged, never raised."""
    for number in (row.pull_requests or [])[:1]:
        try:
            await comment_on_issue(gh, row.repository, int(number), text)
        except GitHubError as exc:
            log.warning("escalation.reply_failed", extra={"deployment": row.key, "error": str(exc)})


async def announce_escalation(engine: Engine, gh: GitHub[Any], row: Deployment, decision: Decision) -> None:
    """One PR comment per escalated deployment, naming the verdict, the reasons and who must decide.

    The comment is recorded before it is posted, so a redelivery, a re-evaluation or a second worker
    never posts it again (a crash in between loses this one comment; the status report and the check
    run still say the same).
    """
    if not row.pull_requests:
        return
    if not await asyncio.to_thread(deployments.note_announced, engine, row.key, datetime.now(UTC)):
        return
    reviewers = decision.reviewers
    people = [f"@{u}" for u in reviewers.users] + [f"@{t}" for t in reviewers.teams]
    # the reasons quote names from the change (report files, tests, checks): text, never a mention or markup
    reasons = "\n".join(f"- {report.markdown_inline(r, table=False)}" for r in decision.reasons[:8])
    score = "n/a" if decision.readiness_score is None else f"{decision.readiness_score:.0f}/100"
    body = (
        f"### ⚠️ gonogo needs a human decision for **{row.environment}** (`{row.sha[:7]}`)\n\n"
        f"Readiness {score}, risk {decision.risk.probability:.0%}, "
        f"confidence {decision.confidence:.0%}.\n\n{reasons}\n\n"
        f"{' '.join(people) or 'Reviewers'}: approve or reject with the buttons on the `gonogo` check run, or reply "
        "`/gonogo approve <reason>` / `/gonogo reject <reason>`."
        + (" The person who triggered the deployment cannot approve it." if reviewers.four_eyes else "")
    )
    await reply(gh, row, body)
