"""Publishing to GitHub: protection-rule answers and status reports, the gonogo check run, PR comments."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, cast

from githubkit import GitHub

from github_app.evidence import CHECK_RUN_NAME, Target
from github_app.github import GitHubError, Invalid, call, parsed
from rules import report
from rules.types import Decision

if TYPE_CHECKING:
    from githubkit_schemas.latest.types import (
        ReposOwnerRepoCheckRunsCheckRunIdPatchBodyAnyof0Type as CheckRunUpdate,
    )

log = logging.getLogger(__name__)

COMMENT_LIMIT = report.COMMENT_LIMIT  # every limit here counts UTF-8 bytes, as GitHub does
STATUS_REPORT_LIMIT = 10
SUMMARY_LIMIT = report.CHECK_RUN_LIMIT
ESCALATION_ACTIONS = [
    {"label": "Approve", "description": "Approve this deployment (reviewers only)", "identifier": "approve"},
    {"label": "Reject", "description": "Reject this deployment (reviewers only)", "identifier": "reject"},
]


def clip(text: str, limit: int) -> str:
    """Cut ``text`` to ``limit`` UTF-8 bytes (GitHub's limits count bytes, not characters)."""
    return report.clip_bytes(text, limit)


async def status_report(gh: GitHub[Any], t: Target, comment: str) -> None:
    """Post a comment-only status report on the waiting deployment (no decision)."""
    await call(
        gh.rest.actions.async_review_custom_gates_for_run(
            t.owner, t.name, t.run_id, data={"environment_name": t.environment, "comment": clip(comment, COMMENT_LIMIT)}
        )
    )


async def answer(gh: GitHub[Any], t: Target, state: Literal["approved", "rejected"], comment: str) -> bool:
    """Approve or reject the deployment; False when GitHub says it was already answered."""
    try:
        await call(
            gh.rest.actions.async_review_custom_gates_for_run(
                t.owner, t.name, t.run_id,
                data={"environment_name": t.environment, "state": state, "comment": clip(comment, COMMENT_LIMIT)},
            )
        )  # fmt: skip
    except Invalid as exc:
        # GitHub refuses a second answer for the same run and environment: ours (or a human's) already landed
        log.info("gate.already_answered", extra={"deployment": t.deployment_key, "detail": str(exc)})
        return False
    return True


async def create_check_run(gh: GitHub[Any], t: Target, external_id: str) -> tuple[int, str]:
    """Create the in-progress gonogo check run; return its id and web URL."""
    resp = await call(
        gh.rest.checks.async_create(
            t.owner, t.name,
            data={
                "name": CHECK_RUN_NAME, "head_sha": t.sha, "status": "in_progress", "external_id": external_id,
                "output": {"title": f"Evaluating deployment to {t.environment}",
                           "summary": f"gonogo is gathering evidence for `{t.sha[:7]}` → **{t.environment}**."},
            },
        )
    )  # fmt: skip
    run = parsed(resp)
    return run.id, run.html_url or ""


async def find_check_run(gh: GitHub[Any], t: Target, external_id: str) -> tuple[int, str] | None:
    """The gonogo check run created for ``external_id`` on the deployment's commit, if there is one.

    An attempt that created it may not have learned its id: GitHub carried the request out but answered 504,
    or the worker died before recording it. Creating another would leave that one "in progress" for ever.
    """
    resp = await call(gh.rest.checks.async_list_for_ref(t.owner, t.name, t.sha, check_name=CHECK_RUN_NAME,
                                                         filter_="all", per_page=100))  # fmt: skip
    found = [run for run in parsed(resp).check_runs if run.external_id == external_id]
    if not found:
        return None
    run = min(found, key=lambda r: r.id)  # the first one made; it is the one a retry completes
    return run.id, run.html_url or ""


def conclusion_for(decision: Decision) -> str:
    if decision.action == "approve":
        return "success"
    if decision.action == "reject":
        return "failure"
    return "action_required"


def _now() -> str:
    """Now, as a report's ``completed_at``: set by gonogo, not left to GitHub, so that a click's payload says
    which report the reviewer answered (escalation refuses a click on a report replaced since)."""
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


async def complete_check_run(
    gh: GitHub[Any], t: Target, check_run_id: int, decision: Decision, *, details_url: str | None = None,
    extra_summary: str = "",
) -> None:
    """Complete the check run with the report, annotations in batches of 50, and buttons when escalated.

    If GitHub refuses the report, the check run is completed with the verdict alone (``publish_fallback``).
    If GitHub fails that too in a way a later try may not (a 5xx, a rate limit), the error goes up: the
    delivery is tried again, and the decision is stored, so the next pass completes the check run without
    deciding again (``run_gate``). Left alone, it would say "in progress" for ever.
    """
    try:
        await _complete_check_run(gh, t, check_run_id, decision, details_url=details_url, extra_summary=extra_summary)
    except GitHubError as exc:
        await publish_fallback(gh, t, check_run_id, decision, exc)


async def _complete_check_run(
    gh: GitHub[Any], t: Target, check_run_id: int, decision: Decision, *, details_url: str | None,
    extra_summary: str,
) -> None:
    text = report.check_run_markdown(decision)
    if extra_summary:
        text = report.clip_markdown(extra_summary + "\n\n" + text, SUMMARY_LIMIT)
    title = clip(report.headline(decision), 200)
    annotations = report.annotations(decision)
    batches = report.batches(annotations) or [[]]
    for i, batch in enumerate(batches):
        data: dict[str, Any] = {
            "output": {"title": title, "summary": report.clip_markdown(text, SUMMARY_LIMIT), "annotations": batch},
        }
        if i == len(batches) - 1:  # the last request completes the run
            data.update({"status": "completed", "conclusion": conclusion_for(decision), "completed_at": _now()})
            if decision.action == "escalate":
                data["actions"] = ESCALATION_ACTIONS
        if details_url:
            data["details_url"] = details_url
        await call(gh.rest.checks.async_update(t.owner, t.name, check_run_id, data=cast("CheckRunUpdate", data)))


async def update_check_run_text(gh: GitHub[Any], t: Target, check_run_id: int, title: str, summary: str,
                                conclusion: str | None = None, *, clear_actions: bool = False) -> None:
    """Rewrite a check run's title and summary (and close it with ``conclusion``); ``clear_actions`` drops its buttons."""
    data: dict[str, Any] = {"output": {"title": clip(title, 200), "summary": report.clip_markdown(summary, SUMMARY_LIMIT)}}
    if conclusion:
        data.update({"status": "completed", "conclusion": conclusion})
    if clear_actions:
        data["actions"] = []
    await call(gh.rest.checks.async_update(t.owner, t.name, check_run_id, data=cast("CheckRunUpdate", data)))


async def comment_on_issue(gh: GitHub[Any], repository: str, number: int, body: str) -> int:
    owner, name = repository.split("/", 1)
    resp = await call(gh.rest.issues.async_create_comment(owner, name, number, data={"body": clip(body, report.ISSUE_COMMENT_LIMIT)}))
    return int(parsed(resp).id)


async def publish_fallback(gh: GitHub[Any], t: Target, check_run_id: int, decision: Decision, error: Exception) -> None:
    """Complete the check run with the verdict alone after the full report was refused.

    A failure GitHub may get over (``retryable``) is raised for the delivery to be tried again; any other is
    logged, as no later try would change it.
    """
    log.warning("decision.check_run_unpublished",
                extra={"deployment": t.deployment_key, "check_run": check_run_id, "error": str(error)})  # fmt: skip
    data: dict[str, Any] = {
        "status": "completed", "conclusion": conclusion_for(decision), "completed_at": _now(),
        "output": {"title": clip(report.headline(decision), 200), "summary": clip(
            f"{report.headline(decision)}\n\nThe full report could not be published ({error}). Run "
            f"`gonogo deployments show {t.deployment_key}` or see the dashboard for the evidence and findings.",
            SUMMARY_LIMIT)},
    }  # fmt: skip
    if decision.action == "escalate":
        data["actions"] = ESCALATION_ACTIONS
    try:
        await call(gh.rest.checks.async_update(t.owner, t.name, check_run_id, data=cast("CheckRunUpdate", data)))
    except GitHubError as exc:
        log.error("decision.check_run_fallback_failed",
                  extra={"deployment": t.deployment_key, "check_run": check_run_id, "error": str(exc)})  # fmt: skip
        if exc.retryable:
            raise
