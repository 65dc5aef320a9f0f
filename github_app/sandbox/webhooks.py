"""Send signed webhooks to the app, with payloads built from sandbox state so they agree with the REST API."""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import os
import ssl
import uuid
from typing import Any
from urllib.parse import urlencode

import httpx

from github_app.sandbox.render import Json, Renderer, node_id
from github_app.sandbox.state import Repo, SandboxState, iso, stable_id

WEBHOOK_PATH = "/webhooks/github"
USER_AGENT = "GitHub-Hookshot/sandbox"


def sign(secret: str | bytes, body: bytes) -> str:
    """Return the X-Hub-Signature-256 value of a body: "sha256=" + HMAC-SHA256 hex."""
    key = secret.encode() if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def webhook_request(app_url: str, secret: str | bytes, event: str, payload: dict[str, Any] | bytes,
                    delivery_id: str | None = None, *, hook_id: int = 1, app_id: int | None = None,
                    content_type: str = "json") -> tuple[str, bytes, dict[str, str]]:
    """Build the URL, body and headers GitHub would send for one delivery.

    ``content_type`` is the webhook's setting: ``json`` sends the payload as the body; ``form`` (GitHub's
    default for a hook configured through the API) sends it as the form field ``payload``, and signs that body.
    """
    body = payload if isinstance(payload, bytes) else json.dumps(payload, separators=(",", ":")).encode()
    media = "application/json"
    if content_type == "form":
        body, media = urlencode({"payload": body.decode()}).encode(), "application/x-www-form-urlencoded"
    url = app_url.rstrip("/") + WEBHOOK_PATH if httpx.URL(app_url).path in ("", "/") else app_url
    key = secret.encode() if isinstance(secret, str) else secret
    headers = {
        "Content-Type": media, "User-Agent": USER_AGENT, "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery_id or str(uuid.uuid4()), "X-GitHub-Hook-ID": str(hook_id),
        "X-Hub-Signature": "sha1=" + hmac.new(key, body, hashlib.sha1).hexdigest(),
        "X-Hub-Signature-256": sign(key, body),
    }
    if app_id is not None:
        headers["X-GitHub-Hook-Installation-Target-Type"] = "integration"
        headers["X-GitHub-Hook-Installation-Target-ID"] = str(app_id)
    return url, body, headers


@functools.lru_cache(maxsize=4)
def _tls_context(cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:
    # httpx reads SSL_CERT_FILE / SSL_CERT_DIR itself; they are the cache key so a change still takes effect
    return httpx.create_ssl_context(verify=True, trust_env=True)


def _default_tls_context() -> ssl.SSLContext:
    """Return the TLS context httpx would build by default, built once per process and trust-store setting.

    Building it loads the whole CA bundle (~20 ms of CPU); a fresh client per delivery would pay that every time.
    """
    return _tls_context(os.environ.get("SSL_CERT_FILE") or None, os.environ.get("SSL_CERT_DIR") or None)


def send_webhook(app_url: str, secret: str | bytes, event: str, payload: dict[str, Any] | bytes,
                 delivery_id: str | None = None, *, timeout: float = 10.0,
                 client: httpx.Client | None = None) -> httpx.Response:
    """POST one signed delivery to the app (app_url is its base URL or the full webhook URL)."""
    url, body, headers = webhook_request(app_url, secret, event, payload, delivery_id)
    if client is not None:
        return client.post(url, content=body, headers=headers, timeout=timeout)
    with httpx.Client(timeout=timeout, verify=_default_tls_context()) as own:
        return own.post(url, content=body, headers=headers)


async def async_send_webhook(app_url: str, secret: str | bytes, event: str, payload: dict[str, Any] | bytes,
                             delivery_id: str | None = None, *, timeout: float = 10.0,
                             client: httpx.AsyncClient | None = None) -> httpx.Response:
    """POST one signed delivery to the app from async code."""
    url, body, headers = webhook_request(app_url, secret, event, payload, delivery_id)
    if client is not None:
        return await client.post(url, content=body, headers=headers, timeout=timeout)
    async with httpx.AsyncClient(timeout=timeout, verify=_default_tls_context()) as own:
        return await own.post(url, content=body, headers=headers)


# --------------------------------------------------------------------------- payload builders

class _Builder:
    def __init__(self, state: SandboxState, api_url: str | None) -> None:
        url = api_url or state.api_url
        if url is None:
            raise ValueError("No API URL: start the sandbox (running_sandbox sets state.api_url) or pass api_url")
        self.state = state
        self.render = Renderer(state, url)

    def installation_id(self, repo: Repo, override: int | None = None) -> int:
        if override is not None:
            return override
        for inst in self.state.installations.values():
            if inst.account.lower() == repo.owner.lower():
                return inst.id
        raise ValueError(f"No installation covers {repo.full_name}; pass installation_id explicitly")

    def envelope(self, repo: Repo, sender: str, installation_id: int) -> Json:
        body: Json = {"repository": self.render.repo(repo), "sender": self.render.user(sender),
                      "installation": {"id": installation_id, "node_id": node_id("MDIz", installation_id)}}
        if repo.owner_type == "Organization":
            api = self.render.api
            org = repo.owner
            body["organization"] = {
                "login": org, "id": stable_id(org), "node_id": node_id("O", stable_id(org)),
                "url": f"{api}/orgs/{org}", "repos_url": f"{api}/orgs/{org}/repos",
                "events_url": f"{api}/orgs/{org}/events", "hooks_url": f"{api}/orgs/{org}/hooks",
                "issues_url": f"{api}/orgs/{org}/issues", "members_url": f"{api}/orgs/{org}/members{{/member}}",
                "public_members_url": f"{api}/orgs/{org}/public_members{{/member}}",
                "avatar_url": f"https://avatars.githubusercontent.com/u/{stable_id(org)}?v=4", "description": None,
            }
        return body

    def check_suite(self, repo: Repo, suite_id: int, head_sha: str, app_id: int, status: str,
                    conclusion: str | None) -> Json:
        api = self.render.api
        branch = next((b for b, sha in repo.branches.items() if sha == head_sha), None)
        commit = repo.commits.get(head_sha)
        created = iso(commit.date if commit else self.state.now())
        return {
            "id": suite_id, "node_id": node_id("CS", suite_id), "head_branch": branch, "head_sha": head_sha,
            "status": status, "conclusion": conclusion, "url": f"{api}/repos/{repo.full_name}/check-suites/{suite_id}",
            "before": None, "after": head_sha, "pull_requests": [], "app": self.render.app(app_id),
            "created_at": created, "updated_at": created,
        }


def _repo_and_deployment(state: SandboxState, full_name: str | None, deployment: int | str) -> tuple[Repo, Any]:
    if isinstance(deployment, str):
        return state.deployment(deployment)
    if full_name is None:
        raise ValueError("Pass the repository owner/name with a numeric deployment id")
    repo = state.repo(full_name)
    return repo, repo.deployments[deployment]


def deployment_protection_rule_payload(state: SandboxState, deployment: int | str, *, full_name: str | None = None,
                                       api_url: str | None = None, installation_id: int | None = None,
                                       event: str = "push", sender: str | None = None) -> Json:
    """Build a deployment_protection_rule.requested payload for a deployment (by id or scenario label)."""
    b = _Builder(state, api_url)
    repo, dep = _repo_and_deployment(state, full_name, deployment)
    if dep.run_id is None:
        raise ValueError(f"Deployment {dep.id} has no waiting workflow run; create it with waiting=True")
    inst = b.installation_id(repo, installation_id if installation_id is not None else dep.webhook_installation_id)
    body: Json = {
        "action": "requested", "environment": dep.environment, "event": event, "sha": dep.sha,
        "ref": dep.ref if dep.ref.startswith("refs/") else f"refs/heads/{dep.ref}",
        "deployment_callback_url": (f"{b.render.api}/repos/{repo.full_name}/actions/runs/{dep.run_id}"
                                    "/deployment_protection_rule"),
        "deployment": b.render.deployment(repo, dep),
        "pull_requests": [b.render.pull(repo, pr) for pr in repo.pulls.values()
                          if pr.head_sha == dep.sha and pr.state == "open"],
    }
    body.update(b.envelope(repo, sender or dep.creator, inst))
    return body


def check_run_payload(state: SandboxState, full_name: str, check_run_id: int, action: str = "rerequested", *,
                      identifier: str | None = None, sender: str = "octocat", api_url: str | None = None,
                      installation_id: int | None = None) -> Json:
    """Build a check_run payload (rerequested, requested_action with `identifier`, created, completed)."""
    b = _Builder(state, api_url)
    repo = state.repo(full_name)
    run = next(r for r in repo.check_runs if r.id == check_run_id)
    check = b.render.check_run(repo, run)
    check["check_suite"] = b.check_suite(repo, run.check_suite_id, run.head_sha, run.app_id, run.status,
                                         run.conclusion)
    body: Json = {"action": action, "check_run": check}
    if action == "requested_action":
        if not identifier:
            raise ValueError("requested_action needs the button's identifier")
        body["requested_action"] = {"identifier": identifier}
    body.update(b.envelope(repo, sender, b.installation_id(repo, installation_id)))
    return body


def deployment_status_payload(state: SandboxState, deployment: int | str, *, full_name: str | None = None,
                              status_id: int | None = None, sender: str | None = None, api_url: str | None = None,
                              installation_id: int | None = None) -> Json:
    """Build a deployment_status.created payload for a deployment's latest (or given) status."""
    b = _Builder(state, api_url)
    repo, dep = _repo_and_deployment(state, full_name, deployment)
    if not dep.statuses:
        raise ValueError(f"Deployment {dep.id} has no status yet; add one with add_deployment_status")
    rec = next(s for s in dep.statuses if s.id == status_id) if status_id else dep.statuses[-1]
    body: Json = {"action": "created", "deployment_status": b.render.deployment_status(repo, dep, rec),
                  "deployment": b.render.deployment(repo, dep)}
    # workflow_run is left out: githubkit's model of it here disagrees with the REST shape of a run.
    body.update(b.envelope(repo, sender or rec.creator, b.installation_id(repo, installation_id)))
    return body


def _webhook_run(b: _Builder, repo: Repo, run_id: int) -> Json:
    run = b.render.workflow_run(repo, repo.workflow_runs[run_id])
    run.setdefault("referenced_workflows", [])
    return run


def workflow_run_payload(state: SandboxState, full_name: str, run_id: int, action: str = "completed", *,
                         sender: str | None = None, api_url: str | None = None,
                         installation_id: int | None = None) -> Json:
    """Build a workflow_run payload (requested, in_progress, completed)."""
    b = _Builder(state, api_url)
    repo = state.repo(full_name)
    run = repo.workflow_runs[run_id]
    wf_url = f"{b.render.api}/repos/{repo.full_name}/actions/workflows/{run.workflow_id}"
    created = iso(repo.created_at)
    body: Json = {
        "action": action, "workflow_run": _webhook_run(b, repo, run_id),
        "workflow": {"id": run.workflow_id, "node_id": node_id("W", run.workflow_id), "name": run.name,
                     "path": run.path, "state": "active", "created_at": created, "updated_at": created,
                     "url": wf_url, "html_url": f"{b.render.html}/{repo.full_name}/blob/{repo.default_branch}/{run.path}",
                     "badge_url": f"{b.render.html}/{repo.full_name}/workflows/{run.name}/badge.svg"},
    }
    body.update(b.envelope(repo, sender or run.actor, b.installation_id(repo, installation_id)))
    return body


def installation_payload(state: SandboxState, installation_id: int, action: str = "deleted", *,
                         sender: str | None = None, api_url: str | None = None) -> Json:
    """Build an installation payload (created, deleted, suspend, unsuspend) for one of the app's installations."""
    b = _Builder(state, api_url)
    inst = state.installations[installation_id]
    assert state.app is not None, "the sandbox has no app"
    return {"action": action, "installation": b.render.installation(inst, state.app),
            "sender": b.render.user(sender or inst.account)}


def issue_comment_payload(state: SandboxState, full_name: str, issue_number: int, comment_body: str, user: str, *,
                          action: str = "created", api_url: str | None = None,
                          installation_id: int | None = None) -> Json:
    """Post a comment as `user` in the sandbox and build its issue_comment payload (e.g. "/gonogo approve ok")."""
    from github_app.sandbox.state import IssueComment

    b = _Builder(state, api_url)
    repo = state.repo(full_name)
    pr = repo.pulls.get(issue_number)
    if pr is None:
        raise ValueError(f"{full_name} has no pull request #{issue_number}; add it with add_pull_request")
    state.user(user)
    now = state.now()
    with state.lock:
        comment = IssueComment(id=state.next_id(), issue_number=issue_number, body=comment_body, user=user,
                               created_at=now, updated_at=now)
        repo.comments[comment.id] = comment
    body: Json = {"action": action, "issue": b.render.issue_of_pull(repo, pr),
                  "comment": b.render.comment(repo, comment)}
    body.update(b.envelope(repo, user, b.installation_id(repo, installation_id)))
    return body
